"""Two organizations with an agent each, their tokens, and staff users of each kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from agents.models import Agent, Organization, StaffMembership
from agents.services import AgentAddresses


@dataclass
class Tenant:
    org: Organization
    token: str
    agent: Agent
    agent_token: str


@pytest.fixture
def tenants(db: None, make_org: Any, make_agent: Any) -> dict[str, Tenant]:
    found = {}
    for key, name, phone in (("a", "Acme", "+14155550101"), ("b", "Bolt", "+14155550202")):
        org, token = make_org(name, org_id=f"org-{key}")
        agent, agent_token = make_agent(f"agent-{key}", org=org,
                                        addresses=AgentAddresses(phone=phone, email=f"agent-{key}@agents.example.com"))
        found[key] = Tenant(org, token, agent, agent_token)
    return found


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.com", "pw-root-123456")


@pytest.fixture
def staff_a(tenants: dict[str, Tenant]) -> User:
    """A staff member of org A with every model permission, so only tenant scoping can hold them back."""
    user = User.objects.create_user("alice", "alice@example.com", "pw-alice-123456", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    StaffMembership.objects.create(user=user, organization=tenants["a"].org)
    return user


def session_client(user: User, *, csrf: bool = True) -> Client:
    """A logged-in browser; with csrf, the CSRF check is enforced as a real browser meets it."""
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csrf_headers(client: Client) -> dict[str, str]:
    """Fetch a page that sets the csrftoken cookie, then return the header a browser's script would send."""
    client.get("/admin/")
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}
