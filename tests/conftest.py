from __future__ import annotations

import pytest
from django.conf import settings

from agents.models import Organization
from agents.services import AgentAddresses, agent_create, organization_create


@pytest.fixture
def orchestrator_token() -> str:
    return settings.ORCHESTRATOR_TOKEN


@pytest.fixture
def default_org(db: None) -> Organization:
    # get_or_create: transactional tests (the live server ones) flush the migration's row.
    return Organization.objects.get_or_create(pk="default", defaults={"name": "Default organization"})[0]


@pytest.fixture
def make_org(db: None):
    def make(name: str = "Acme", org_id: str | None = None) -> tuple[Organization, str]:
        org, issued = organization_create(name=name, org_id=org_id)
        return org, issued.token

    return make


@pytest.fixture
def make_agent(db: None, default_org: Organization):
    def make(agent_id: str = "agent-a", org: Organization | None = None, **kwargs):
        agent, issued, _secret = agent_create(
            organization=org or default_org,
            display_name=kwargs.pop("display_name", agent_id.title()),
            agent_id=agent_id,
            addresses=kwargs.pop("addresses", AgentAddresses(phone=None, email=f"{agent_id}@agents.example.com")),
            **kwargs,
        )
        return agent, issued.token

    return make


# Real-socket server fixtures (uvicorn in the test's loop; a second process for the Redis tests) and the
# loopback fake of the provider HTTP APIs (tests/fake_providers.py).
from tests.fake_providers import fake_provider_server, fake_providers, live_provider_settings  # noqa: E402, F401
from tests.live_server import asgi_server, second_asgi_server  # noqa: E402,F401
