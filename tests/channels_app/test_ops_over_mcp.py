"""The same operations as MCP tools, with the SDK's real clients against the live server: same results
as REST (contract §6.1, §7)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from agents.models import Organization
from channels_app.models import Message
from tests.live_server import LiveServer
from tests.ops_helpers import agent_with_numbers
from tests.orchestrator.mcp_clients import bearer, sse_session, streamable_session

pytestmark = pytest.mark.django_db(transaction=True)

TO = "+14155550123"


@pytest.fixture
def demo(settings):
    settings.DEMO_MODE = True


@pytest.fixture(autouse=True)
def close_connections_after_each_request(monkeypatch):
    """Django serves each live-server request in its own thread; with CONN_MAX_AGE those threads' database
    connections outlive the test and PostgreSQL then refuses to drop the test database."""
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


async def make_agent_async(agent_id: str = "agent-a") -> str:
    def make() -> str:
        org = Organization.objects.get_or_create(pk="default", defaults={"name": "Default organization"})[0]
        return agent_with_numbers(agent_id, org, phone="+14155550100")[1]

    return await sync_to_async(make)()


async def rest(server: LiveServer, token: str, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    async with httpx.AsyncClient(base_url=f"{server.url}/api/v1/", headers=bearer(token), timeout=10) as client:
        if method == "GET":
            response = await client.get(path, params=payload)
        else:
            response = await client.post(path, json=payload)
    return response.status_code, response.json()


async def tool(session: Any, name: str, arguments: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    result = await session.call_tool(name, arguments)
    return bool(result.is_error), dict(result.structured_content or {})


async def test_send_message_as_a_tool_and_over_rest_give_the_same_result(demo, asgi_server: LiveServer):
    token = await make_agent_async()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        is_error, sent = await tool(session, "comms_send_message",
                                    {"to": TO, "body": "Tom & cat; 🐱\r\nשלום", "idempotencyKey": "same"})
        assert not is_error, sent
        assert sent["success"] is True and sent["externalId"].startswith("SM")
        status, replay = await rest(asgi_server, token, "POST", "send-message",
                                    {"to": TO, "body": "Tom & cat; 🐱\r\nשלום", "idempotencyKey": "same"})
        assert (status, replay) == (200, sent)
    assert await sync_to_async(Message.objects.count)() == 1
    body = await sync_to_async(lambda: Message.objects.get().body)()
    assert body == "Tom & cat; 🐱\r\nשלום"


@pytest.mark.parametrize(
    ("name", "method", "path", "arguments"),
    [
        ("comms_send_message", "POST", "send-message", {"to": "0123", "body": "x"}),
        ("comms_send_message", "POST", "send-message", {"to": "a@b", "body": "x", "channel": "email", "subject": "s"}),
        ("comms_send_message", "POST", "send-message", {"to": TO, "body": "x", "channel": "fax"}),
        ("comms_send_message", "POST", "send-message", {"to": "ana@example.com", "body": "x", "channel": "email"}),
        ("comms_send_message", "POST", "send-message", {"agentId": "someone-else", "to": TO, "body": "x"}),
        ("comms_set_agent_limits", "POST", "agent-limits", {"agentId": "agent-a", "limits": {"maxActionsPerDay": 1}}),
        ("comms_provision_channels", "POST", "provision", {"displayName": "X", "capabilities": ["sms"]}),
    ],
)
async def test_refusals_are_the_same_error_body_over_both_faces(demo, asgi_server: LiveServer, name, method, path,
                                                                arguments):
    token = await make_agent_async()
    async with sse_session(f"{asgi_server.url}/sse?token={token}") as session:
        is_error, body = await tool(session, name, arguments)
    status, rest_body = await rest(asgi_server, token, method, path, arguments)
    assert is_error is True and status >= 400
    assert body == rest_body
    assert set(body) >= {"error", "code"}


async def test_reads_match_over_both_faces_and_show_the_live_session(demo, asgi_server: LiveServer):
    token = await make_agent_async()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        await tool(session, "comms_send_message", {"to": TO, "body": "x"})
        for name, path, arguments in [
            ("comms_get_channel_status", "channel-status", {}),
            ("comms_get_usage_dashboard", "usage", {"period": "today"}),
            ("comms_get_billing_summary", "billing", {"period": "month"}),
            ("comms_check_consent", "consent/check", {"contactAddress": TO, "channel": "sms"}),
            ("comms_get_waiting_messages", "waiting-messages", {}),
        ]:
            is_error, body = await tool(session, name, arguments)
            status, rest_body = await rest(asgi_server, token, "GET", path, arguments)
            assert not is_error and status == 200, (name, body, rest_body)
            assert body == rest_body, name
        _, status_body = await tool(session, "comms_get_channel_status", {})
        assert status_body["connected"] is True
        assert status_body["channels"]["phone"] == {"number": "+14155550100", "status": "active"}


async def test_consent_tools_record_check_and_revoke(demo, asgi_server: LiveServer):
    token = await make_agent_async()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        is_error, recorded = await tool(session, "comms_record_consent", {
            "contactAddress": TO, "channel": "sms", "consentType": "express", "source": "web form"})
        assert not is_error and recorded["consentType"] == "express" and recorded["source"] == "web form"
        _, checked = await tool(session, "comms_check_consent", {"contactAddress": TO, "channel": "sms"})
        assert checked["hasConsent"] is True
        _, revoked = await tool(session, "comms_revoke_consent", {"contactAddress": TO, "channel": "sms"})
        assert revoked["revoked"] == 1
        is_error, refused = await tool(session, "comms_send_message", {"to": TO, "body": "x"})
        assert is_error and refused["code"] == "opted_out"


async def test_admin_tools_provision_limit_and_deprovision_with_the_orchestrator_token(
    demo, asgi_server: LiveServer, orchestrator_token
):
    await make_agent_async("someone")  # also recreates the default organization the flush removed
    async with sse_session(f"{asgi_server.url}/sse?token={orchestrator_token}") as session:
        is_error, provisioned = await tool(session, "comms_provision_channels", {
            "agentId": "mcp-bot", "displayName": "MCP bot", "capabilities": ["sms", "email"]})
        assert not is_error, provisioned
        assert provisioned["channels"]["phone"]["number"].startswith("+1202555")
        is_error, limited = await tool(session, "comms_set_agent_limits",
                                       {"agentId": "mcp-bot", "limits": {"maxActionsPerMinute": 1}})
        assert not is_error and limited["limits"]["maxActionsPerMinute"] == 1
        agent_token = provisioned["securityToken"]
        assert (await rest(asgi_server, agent_token, "POST", "send-message", {"to": TO, "body": "1"}))[0] == 200
        status, body = await rest(asgi_server, agent_token, "POST", "send-message", {"to": TO, "body": "2"})
        assert (status, body["code"], body["limitType"]) == (429, "rate_limited", "per_minute")
        is_error, gone = await tool(session, "comms_deprovision_channels", {"agentId": "mcp-bot"})
        assert not is_error and gone["status"] == "deprovisioned"
        _, status_body = await tool(session, "comms_get_channel_status", {"agentId": "mcp-bot"})
        assert status_body["status"] == "deprovisioned"
    assert (await rest(asgi_server, agent_token, "GET", "channel-status", {}))[0] == 401


async def test_the_tool_list_has_every_operation_but_regenerate_token(asgi_server: LiveServer):
    token = await make_agent_async()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        names = {t.name for t in (await session.list_tools()).tools}
    assert {
        "comms_send_message", "comms_get_waiting_messages", "comms_get_channel_status", "comms_get_usage_dashboard",
        "comms_get_billing_summary", "comms_provision_channels", "comms_deprovision_channels",
        "comms_set_agent_limits", "comms_record_consent", "comms_revoke_consent", "comms_check_consent",
    } <= names
    assert not any("regenerate" in name for name in names)
