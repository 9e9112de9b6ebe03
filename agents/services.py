"""Writes for organizations, agents and tokens. Each returns what the caller must show once."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from agents.crypto import encrypt, new_secret, new_token, token_digest
from agents.models import (
    AddressKind,
    Agent,
    AgentLimits,
    AgentStatus,
    AgentToken,
    AuthFailureWindow,
    ChannelAddress,
    Organization,
    OrgToken,
)
from orchestrator.errors import ApiError

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: int
    revoked_count: int


def _slugify_id(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "org"
    return f"{base}-{secrets.token_hex(3)}"


def validate_e164(value: str, *, field: str) -> str:
    # Shape only: sandbox numbers (555-01xx) and new ranges must pass even where libphonenumber lags.
    if not E164_RE.match(value):
        raise ApiError(400, "invalid_phone", f"{field} must be an E.164 number such as +14155550101.", field=field)
    return value


def validate_email_address(value: str, *, field: str) -> str:
    try:
        validate_email(value)
    except ValidationError:
        raise ApiError(400, "invalid_email", f"{field} is not a valid email address.", field=field) from None
    return value.lower()


def validate_identifier(value: str, *, field: str) -> str:
    if not SLUG_RE.match(value):
        raise ApiError(
            400, "invalid_request", f"{field} may use letters, digits, '-' and '_' (max 64).", field=field
        )
    return value


@transaction.atomic
def organization_create(*, name: str, org_id: str | None = None) -> tuple[Organization, IssuedToken]:
    """Create an organization and its first org token."""
    if not name.strip():
        raise ApiError(400, "invalid_request", "name must not be empty.", field="name")
    org_id = validate_identifier(org_id, field="orgId") if org_id else _slugify_id(name)
    if Organization.objects.filter(pk=org_id).exists():
        raise ApiError(409, "organization_exists", f"Organization {org_id!r} already exists.", field="orgId")
    org = Organization.objects.create(id=org_id, name=name.strip())
    return org, org_token_issue(organization=org, label="initial")


@transaction.atomic
def org_token_issue(*, organization: Organization, label: str = "", revoke_existing: bool = False) -> IssuedToken:
    """Issue an org token; with revoke_existing the previous ones stop working (regenerate)."""
    revoked = 0
    if revoke_existing:
        live = OrgToken.objects.filter(organization=organization, revoked_at__isnull=True)
        ids = list(live.values_list("pk", flat=True))
        revoked = OrgToken.objects.filter(pk__in=ids).update(revoked_at=timezone.now())
        sessions_end_on_commit({"tokenKind": "org", "tokenIds": ids})
    token = new_token("org")
    row = OrgToken.objects.create(
        organization=organization,
        digest=token_digest(token),
        display_prefix=token[:10],
        token_encrypted=encrypt(token),
        label=label,
    )
    return IssuedToken(token=token, token_id=row.pk, revoked_count=revoked)


@transaction.atomic
def agent_token_issue(*, agent: Agent, label: str = "", revoke_existing: bool = False) -> IssuedToken:
    """Issue an agent token; with revoke_existing every earlier token of the agent stops working."""
    revoked = 0
    if revoke_existing:
        revoked = agent_tokens_revoke(agent=agent)
    token = new_token("agt")
    row = AgentToken.objects.create(agent=agent, digest=token_digest(token), display_prefix=token[:10], label=label)
    return IssuedToken(token=token, token_id=row.pk, revoked_count=revoked)


def sessions_end_on_commit(selector: dict[str, Any]) -> None:
    """Once the transaction commits, end the live MCP sessions `selector` names, in every process
    (orchestrator.agent_registry.sessions_end): a revoked token or a stopped agent keeps no stream."""
    if selector.get("tokenIds") == []:
        return
    from orchestrator.agent_registry import sessions_end

    transaction.on_commit(lambda: sessions_end(selector))


def agent_tokens_revoke(*, agent: Agent) -> int:
    ids = list(AgentToken.objects.filter(agent=agent, revoked_at__isnull=True).values_list("pk", flat=True))
    sessions_end_on_commit({"tokenKind": "agent", "tokenIds": ids})
    return AgentToken.objects.filter(pk__in=ids).update(revoked_at=timezone.now())


def token_revoke(*, token_id: int, kind: str) -> bool:
    """Revoke one token by id; kind is 'agent' or 'org'. True when something was revoked."""
    model = AgentToken if kind == "agent" else OrgToken
    revoked = model.objects.filter(pk=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now()) > 0
    if revoked:
        sessions_end_on_commit({"tokenKind": "agent" if kind == "agent" else "org", "tokenIds": [token_id]})
    return revoked


def token_revoke_by_value(*, token: str) -> bool:
    """Revoke a token given as its value (e.g. one that leaked); only its digest is looked up."""
    digest = token_digest(token.strip())
    now = timezone.now()
    revoked = 0
    for model, kind in ((AgentToken, "agent"), (OrgToken, "org")):
        ids = list(model.objects.filter(digest=digest, revoked_at__isnull=True).values_list("pk", flat=True))
        revoked += model.objects.filter(pk__in=ids).update(revoked_at=now)
        sessions_end_on_commit({"tokenKind": kind, "tokenIds": ids})
    return revoked > 0


@dataclass(frozen=True)
class AgentAddresses:
    phone: str | None = None
    whatsapp: str | None = None
    email: str | None = None
    line: bool = False
    # Addresses of other kinds (a registered channel's own kind), by kind.
    others: Mapping[str, str] = field(default_factory=dict)


@transaction.atomic
def agent_create(
    *,
    organization: Organization,
    display_name: str,
    agent_id: str | None = None,
    addresses: AgentAddresses = AgentAddresses(),
    greeting: str = "",
    system_prompt: str = "",
    voice: str = "",
    language: str = "",
    callback_url: str = "",
    line_channel_access_token: str = "",
    line_channel_secret: str = "",
) -> tuple[Agent, IssuedToken, str]:
    """Create an agent with its channel addresses and limits; returns it, its token and callback secret."""
    agent_id = validate_identifier(agent_id, field="agentId") if agent_id else "agent-" + secrets.token_hex(4)
    phone = validate_e164(addresses.phone, field="phone") if addresses.phone else None
    whatsapp = validate_e164(addresses.whatsapp, field="whatsapp") if addresses.whatsapp else None
    email = validate_email_address(addresses.email, field="email") if addresses.email else None
    agent_id_check_available(agent_id=agent_id)
    callback_secret = new_secret()
    agent = Agent.objects.create(
        id=agent_id,
        organization=organization,
        display_name=display_name,
        greeting=greeting,
        system_prompt=system_prompt,
        voice=voice,
        language=language,
        callback_url=callback_url,
        callback_secret_encrypted=encrypt(callback_secret),
        line_channel_access_token_encrypted=encrypt(line_channel_access_token),
        line_channel_secret_encrypted=encrypt(line_channel_secret),
    )
    AgentLimits.objects.create(agent=agent)
    wanted = [
        (AddressKind.PHONE, phone),
        (AddressKind.WHATSAPP, whatsapp),
        (AddressKind.EMAIL, email),
        (AddressKind.LINE, agent_id if addresses.line else None),
        *addresses.others.items(),
    ]
    try:
        with transaction.atomic():
            for kind, address in wanted:
                if address:
                    ChannelAddress.objects.create(agent=agent, kind=kind, address=address)
    except IntegrityError:
        raise ApiError(409, "address_in_use", "One of the addresses already belongs to another agent.") from None
    return agent, agent_token_issue(agent=agent, label="initial"), callback_secret


def agent_id_check_available(*, agent_id: str) -> None:
    """409 when the id is taken, in the same words whichever organization holds it (docs/decisions.md)."""
    if Agent.objects.filter(pk=agent_id).exists():
        raise ApiError(
            409, "agent_exists", f"agentId {agent_id!r} already exists: choose another, or leave it out to get a "
            "generated one.", field="agentId",
        )


def default_email_address(agent_id: str) -> str:
    return f"{agent_id}@{settings.EMAIL_DEFAULT_DOMAIN}"


@transaction.atomic
def agent_deactivate(*, agent: Agent) -> int:
    """Mark an agent deprovisioned and revoke its tokens; returns how many tokens were revoked."""
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.DEPROVISIONED, deprovisioned_at=timezone.now())
    sessions_end_on_commit({"agentId": agent.pk})
    return agent_tokens_revoke(agent=agent)


def auth_failure_record(*, client_address: str) -> int:
    """Count one failed auth for the address in the current window; returns the count.

    Kept in the database so every server process sees the same count.
    """
    now = timezone.now()
    window_start_floor = now - timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    with transaction.atomic():
        updated = AuthFailureWindow.objects.filter(
            client_address=client_address, window_started_at__gt=window_start_floor
        ).update(failures=F("failures") + 1)
        if not updated:
            # No live window: start a fresh one (reset an expired one, or create the row).
            reset = AuthFailureWindow.objects.filter(client_address=client_address).update(
                window_started_at=now, failures=1
            )
            if not reset:
                try:
                    with transaction.atomic():
                        AuthFailureWindow.objects.create(client_address=client_address, window_started_at=now, failures=1)
                except IntegrityError:
                    AuthFailureWindow.objects.filter(client_address=client_address).update(failures=F("failures") + 1)
    row = AuthFailureWindow.objects.filter(client_address=client_address).first()
    return row.failures if row else 1


def auth_failure_windows_prune() -> int:
    """Delete failed-auth windows that have run out; returns how many.

    An expired window throttles nobody (the next failure resets it), so removing it changes no
    answer; without this, every address that ever failed once keeps a row for good.
    """
    expired_before = timezone.now() - timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    deleted, _ = AuthFailureWindow.objects.filter(window_started_at__lte=expired_before).delete()
    return deleted
