"""agents, blocked-channels, my-token, regenerate-token, organizations, whatsapp-senders (contract §9),
each scoped to the caller's organization."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agents.models import AgentStatus, StaffMembership, WhatsAppSender
from agents.selectors import principal_from_token
from tests.admin_ui.conftest import Tenant, bearer, csrf_headers, session_client

pytestmark = pytest.mark.django_db


def post(client: Client, path: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(path, body, content_type="application/json", **headers)


def test_agents_lists_the_callers_agents_with_addresses_and_connection(client: Client, tenants: dict[str, Tenant],
                                                                      orchestrator_token: str) -> None:
    body = client.get("/admin/api/agents", **bearer(tenants["b"].token)).json()
    assert body == {"agents": [{
        "agentId": "agent-b",
        "displayName": "Agent-B",
        "orgId": "org-b",
        "phoneNumber": "+14155550202",
        "whatsappNumber": None,
        "emailAddress": "agent-b@agents.example.com",
        "status": "active",
        "channels": ["sms", "email", "voice"],
        "blockedChannels": [],
        "connected": False,
    }]}
    everyone = client.get("/admin/api/agents", **bearer(orchestrator_token)).json()["agents"]
    assert [agent["agentId"] for agent in everyone] == ["agent-a", "agent-b"]


def test_agents_leaves_deprovisioned_agents_out(client: Client, tenants: dict[str, Tenant]) -> None:
    tenants["a"].agent.status = AgentStatus.DEPROVISIONED
    tenants["a"].agent.save()
    assert client.get("/admin/api/agents", **bearer(tenants["a"].token)).json() == {"agents": []}


def test_agents_shows_a_live_mcp_session_as_connected(client: Client, tenants: dict[str, Tenant],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator import agent_registry

    # A registered session is what the registry reads; the session object itself is never used here.
    monkeypatch.setitem(agent_registry._sessions, "agent-a", object())  # type: ignore[arg-type]
    agents = client.get("/admin/api/agents", **bearer(tenants["a"].token)).json()["agents"]
    assert agents[0]["connected"] is True


@pytest.mark.parametrize(("given", "stored"), [
    (["voice", "SMS", "sms"], ["sms", "voice"]),
    (["*"], ["*"]),
    (["email", "*"], ["*"]),
    ([], []),
])
def test_blocked_channels_are_stored_normalised(client: Client, tenants: dict[str, Tenant], given: list[str],
                                               stored: list[str]) -> None:
    response = post(client, "/admin/api/agents/agent-a/blocked-channels", {"blockedChannels": given},
                    **bearer(tenants["a"].token))
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "agentId": "agent-a", "blockedChannels": stored}
    tenants["a"].agent.refresh_from_db()
    assert tenants["a"].agent.blocked_channels == stored


@pytest.mark.parametrize("body", [{"blockedChannels": ["fax"]}, {"blockedChannels": "sms"}, {},
                                  {"blockedChannels": [1]}])
def test_blocked_channels_refuses_unknown_names_with_400_and_changes_nothing(client: Client, tenants: dict[str, Tenant],
                                                                             body: dict[str, Any]) -> None:
    response = post(client, "/admin/api/agents/agent-a/blocked-channels", body, **bearer(tenants["a"].token))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["field"].startswith("blockedChannels")
    tenants["a"].agent.refresh_from_db()
    assert tenants["a"].agent.blocked_channels == []


def test_blocked_channels_of_another_orgs_or_an_unknown_agent_are_404(client: Client,
                                                                     tenants: dict[str, Tenant]) -> None:
    for agent_id in ("agent-b", "agent-nobody"):
        response = post(client, f"/admin/api/agents/{agent_id}/blocked-channels", {"blockedChannels": ["sms"]},
                        **bearer(tenants["a"].token))
        assert response.status_code == 404
        assert response.json()["code"] == "agent_not_found"
    tenants["b"].agent.refresh_from_db()
    assert tenants["b"].agent.blocked_channels == []


def test_blocked_channels_refuses_sends_on_them(client: Client, tenants: dict[str, Tenant], settings: Any) -> None:
    settings.DEMO_MODE = True
    post(client, "/admin/api/agents/agent-a/blocked-channels", {"blockedChannels": ["sms"]},
         **bearer(tenants["a"].token))
    response = post(client, "/api/v1/send-message", {"to": "+14155550123", "body": "hi"},
                    **bearer(tenants["a"].agent_token))
    assert response.status_code == 403
    assert response.json()["code"] == "channel_blocked"


def test_my_token_shows_the_org_token_to_its_token_and_its_staff(client: Client, tenants: dict[str, Tenant],
                                                                staff_a: User) -> None:
    assert client.get("/admin/api/my-token", **bearer(tenants["a"].token)).json() == {"token": tenants["a"].token}
    assert session_client(staff_a).get("/admin/api/my-token").json() == {"token": tenants["a"].token}


def test_my_token_of_a_superuser_without_an_organization_is_404(tenants: dict[str, Tenant], superuser: User,
                                                                orchestrator_token: str) -> None:
    response = session_client(superuser).get("/admin/api/my-token")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert Client().get("/admin/api/my-token", **bearer(orchestrator_token)).status_code == 404
    StaffMembership.objects.create(user=superuser, organization=tenants["b"].org)
    assert session_client(superuser).get("/admin/api/my-token").json() == {"token": tenants["b"].token}


def test_my_token_of_another_org_is_refused_to_an_org_token(client: Client, tenants: dict[str, Tenant],
                                                            orchestrator_token: str) -> None:
    response = client.get("/admin/api/my-token?orgId=org-b", **bearer(tenants["a"].token))
    assert response.status_code == 403
    assert client.get("/admin/api/my-token?orgId=org-b", **bearer(orchestrator_token)).json() == {
        "token": tenants["b"].token}


def test_regenerate_token_replaces_the_org_token_at_once(client: Client, tenants: dict[str, Tenant]) -> None:
    old = tenants["a"].token
    response = post(client, "/admin/api/regenerate-token", {}, **bearer(old))

    assert response.status_code == 200
    new = response.json()["token"]
    assert response.json()["success"] is True and new.startswith("org_") and new != old
    assert principal_from_token(old) is None
    assert client.get("/admin/api/agents", **bearer(old)).status_code == 401
    assert client.get("/admin/api/my-token", **bearer(new)).json() == {"token": new}
    assert principal_from_token(tenants["b"].token) is not None  # another org's token is untouched


def test_regenerate_token_from_a_staff_session_needs_csrf(tenants: dict[str, Tenant], staff_a: User) -> None:
    client = session_client(staff_a)
    assert post(client, "/admin/api/regenerate-token", {}).status_code == 403
    assert principal_from_token(tenants["a"].token) is not None
    response = post(client, "/admin/api/regenerate-token", {}, **csrf_headers(client))
    assert response.status_code == 200
    assert principal_from_token(tenants["a"].token) is None


def test_organizations_creates_an_org_whose_token_works(client: Client, orchestrator_token: str,
                                                        default_org: Any) -> None:
    response = post(client, "/admin/api/organizations", {"name": "  Zed Corp "}, **bearer(orchestrator_token))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["name"] == "Zed Corp" and body["orgId"].startswith("zed-corp-")
    assert client.get("/admin/api/agents", **bearer(body["token"])).json() == {"agents": []}

    assert post(client, "/admin/api/organizations", {"name": ""}, **bearer(orchestrator_token)).json()["field"] == "name"
    again = post(client, "/admin/api/organizations", {"name": "Z", "orgId": body["orgId"]}, **bearer(orchestrator_token))
    assert again.status_code == 409


def test_whatsapp_senders_adds_a_free_sender_to_the_pool(client: Client, orchestrator_token: str, db: None) -> None:
    sid = "XE" + "ab" * 16
    response = post(client, "/admin/api/whatsapp-senders", {"phoneNumber": "+14155550999", "senderSid": sid},
                    **bearer(orchestrator_token))
    assert response.json() == {"success": True, "phoneNumber": "+14155550999"}
    sender = WhatsAppSender.objects.get(phone_number="+14155550999")
    assert (sender.sender_sid, sender.agent_id) == (sid, None)

    duplicate = post(client, "/admin/api/whatsapp-senders", {"phoneNumber": "+14155550999"}, **bearer(orchestrator_token))
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "sender_exists")
    bad = post(client, "/admin/api/whatsapp-senders", {"phoneNumber": "555"}, **bearer(orchestrator_token))
    assert (bad.status_code, bad.json()["code"], bad.json()["field"]) == (400, "invalid_phone", "phoneNumber")
    assert WhatsAppSender.objects.count() == 1
