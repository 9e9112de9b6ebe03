"""Tenant isolation on every operation endpoint (contract §2): another agent's or org's agent is off limits."""

from __future__ import annotations

import pytest

from agents.models import Agent
from tests.ops_helpers import Api, agent_with_numbers

pytestmark = pytest.mark.django_db

# (method, path, payload) — each names agent "victim" explicitly.
AGENT_ENDPOINTS = [
    ("POST", "send-message", {"agentId": "victim", "to": "+14155550123", "body": "x"}),
    ("GET", "waiting-messages", {"agentId": "victim"}),
    ("GET", "channel-status", {"agentId": "victim"}),
    ("GET", "usage", {"agentId": "victim"}),
    ("GET", "billing", {"agentId": "victim"}),
    ("POST", "consent/record", {"agentId": "victim", "contactAddress": "+14155550123", "channel": "sms"}),
    ("POST", "consent/revoke", {"agentId": "victim", "contactAddress": "+14155550123", "channel": "sms"}),
    ("GET", "consent/check", {"agentId": "victim", "contactAddress": "+14155550123", "channel": "sms"}),
]
ADMIN_ENDPOINTS = [
    ("POST", "agent-limits", {"agentId": "victim", "limits": {"maxActionsPerMinute": 1}}),
    ("POST", "deprovision", {"agentId": "victim"}),
    ("POST", "agents/victim/regenerate-token", {}),
]


@pytest.fixture
def world(settings, make_org):
    settings.DEMO_MODE = True
    org1, org1_token = make_org("One", "org-1")
    org2, _ = make_org("Two", "org-2")
    _, attacker_token = agent_with_numbers("attacker", org1, phone="+14155550100")
    agent_with_numbers("victim", org2, phone="+14155550101")
    return {"org1": org1_token, "agent": attacker_token}


def call(api: Api, method: str, path: str, payload: dict) -> tuple[int, dict]:
    return api.post(path, payload) if method == "POST" else api.get(path, payload)


@pytest.mark.parametrize(("method", "path", "payload"), AGENT_ENDPOINTS + ADMIN_ENDPOINTS)
def test_an_agent_token_never_acts_on_another_agent(world, method, path, payload):
    status, body = call(Api(world["agent"]), method, path, payload)
    assert status == 403 and body["code"] == "forbidden", (path, body)
    assert Agent.objects.get(pk="victim").status == "active"


@pytest.mark.parametrize(("method", "path", "payload"), AGENT_ENDPOINTS + ADMIN_ENDPOINTS)
def test_an_org_token_never_reaches_another_orgs_agent(world, method, path, payload):
    status, body = call(Api(world["org1"]), method, path, payload)
    assert status in (403, 404), (path, body)
    assert body["code"] in ("forbidden", "agent_not_found")
    assert Agent.objects.get(pk="victim").status == "active"


def test_an_org_token_cannot_provision_into_another_org(world):
    status, body = Api(world["org1"]).post("provision", {"displayName": "X", "capabilities": ["sms"], "orgId": "org-2"})
    assert status == 403


@pytest.mark.parametrize(("method", "path", "payload"), AGENT_ENDPOINTS + ADMIN_ENDPOINTS)
def test_every_operation_needs_a_token(world, method, path, payload):
    status, body = call(Api(), method, path, payload)
    assert (status, body["code"]) == (401, "missing_token")


def test_an_org_token_must_name_the_agent(world):
    status, body = Api(world["org1"]).get("channel-status")
    assert (status, body["code"]) == (400, "missing_agent_id")
