"""Load the demo organization and agents from fixtures/ through the services, so tokens exist only as digests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from agents.models import DEFAULT_ORG_ID, Agent, Organization, PhoneNumber
from agents.services import AgentAddresses, agent_create, organization_create

DEMO_DATA_PATH = Path(settings.BASE_DIR) / "fixtures" / "demo_data.json"


class DemoDataError(Exception):
    """The demo data file is missing or malformed."""


@dataclass(frozen=True)
class CreatedAgent:
    agent_id: str
    org_id: str
    display_name: str
    phone: str | None
    email: str | None
    token: str


@dataclass
class DemoLoadResult:
    # org id → its org token, for organizations this run created (shown once).
    created_orgs: dict[str, str] = field(default_factory=dict)
    created_agents: list[CreatedAgent] = field(default_factory=list)
    existing_agent_ids: list[str] = field(default_factory=list)

    @property
    def already_loaded(self) -> bool:
        return not self.created_orgs and not self.created_agents


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        organizations = data["organizations"]
    except FileNotFoundError:
        raise DemoDataError(f"{path} does not exist") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DemoDataError(f"{path} is not valid demo data: {exc}") from None
    if not isinstance(organizations, list):
        raise DemoDataError(f"{path}: 'organizations' must be a list")
    return organizations


def demo_data_load(*, path: Path = DEMO_DATA_PATH) -> DemoLoadResult:
    """Create whatever of the demo data is missing; never touches (or re-issues tokens for) what exists."""
    organizations = _read(path)
    try:
        return _load(organizations)
    except (KeyError, TypeError) as exc:
        # The transaction rolled back: a half-read file leaves nothing behind.
        raise DemoDataError(f"{path} is not valid demo data: missing or malformed {exc}") from None


@transaction.atomic
def _load(organizations: list[dict[str, Any]]) -> DemoLoadResult:
    result = DemoLoadResult()
    for org_data in organizations:
        org_id = org_data["id"]
        org = Organization.objects.filter(pk=org_id).first()
        if org is None and org_id == DEFAULT_ORG_ID:
            # The default org is reached with the orchestrator token, so it gets no org token of its own here.
            org = Organization.objects.create(id=org_id, name=org_data["name"])
        elif org is None:
            org, issued = organization_create(name=org_data["name"], org_id=org_id)
            result.created_orgs[org_id] = issued.token
        for agent_data in org_data.get("agents", []):
            agent_id = agent_data["id"]
            if Agent.objects.filter(pk=agent_id).exists():
                result.existing_agent_ids.append(agent_id)
                continue
            phone = agent_data.get("phone")
            email = agent_data.get("email")
            agent, issued, _callback_secret = agent_create(
                organization=org,
                agent_id=agent_id,
                display_name=agent_data["displayName"],
                addresses=AgentAddresses(phone=phone, email=email),
                greeting=agent_data.get("greeting", ""),
                system_prompt=agent_data.get("systemPrompt", ""),
                language=agent_data.get("language", ""),
            )
            if phone:
                # Sandbox numbers sit in the pool like bought ones, so pool views and release work the same.
                PhoneNumber.objects.update_or_create(number=phone, defaults={"agent": agent, "is_sandbox": True})
            result.created_agents.append(
                CreatedAgent(
                    agent_id=agent.id,
                    org_id=org.id,
                    display_name=agent.display_name,
                    phone=phone,
                    email=email,
                    token=issued.token,
                )
            )
    return result
