"""Input that used to crash the server (issue 14, item 9): each is a §3 4xx now, and nothing changes.

Over REST and over MCP: an integer beyond 64 bits, a lone surrogate, JSON nested 10,000 deep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from agents.models import AgentLimits
from channels_app.models import Message
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.ops_helpers import agent_with_numbers
from tests.orchestrator.mcp_clients import bearer

LONE_SURROGATE_BODY = '{"to": "+14155550123", "body": "\\ud800"}'
DEEP = "[" * 10_000 + "]" * 10_000
HUGE = 2**64 + 1


def post(client: Client, path: str, raw: str, token: str) -> Any:
    return client.post(f"/api/v1/{path}", raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def assert_refused(response: Any, status: int = 400) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "invalid_request"


@pytest.mark.django_db
def test_it_refuses_agent_limits_beyond_64_bits(client: Client, default_org, orchestrator_token: str) -> None:
    agent, _ = agent_with_numbers("agent-a", default_org)
    for value in (HUGE, 2**63, 2**31):
        raw = json.dumps({"agentId": "agent-a", "limits": {"maxActionsPerMinute": value}})
        response = post(client, "agent-limits", raw, orchestrator_token)
        assert_refused(response)
        assert response.json()["field"] == "limits.maxActionsPerMinute"
    assert AgentLimits.objects.get(agent=agent).max_actions_per_minute == 60


@pytest.mark.django_db
def test_it_refuses_a_lone_surrogate_in_a_message_body(client: Client, default_org, settings) -> None:
    settings.DEMO_MODE = True
    _, token = agent_with_numbers("agent-a", default_org)
    assert_refused(post(client, "send-message", LONE_SURROGATE_BODY, token))
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_it_refuses_a_nul_character_in_any_field(client: Client, default_org, settings) -> None:
    # Found by the schemathesis run on PostgreSQL, whose text columns refuse NUL: transfer-call was a 500.
    settings.DEMO_MODE = True
    _, token = agent_with_numbers("agent-a", default_org)
    response = post(client, "transfer-call", json.dumps({"callSid": "CA\u0000x", "to": "+14155550123"}), token)
    assert_refused(response)
    assert response.json()["field"] == "callSid"
    response = post(client, "send-message", json.dumps({"to": "+14155550123", "body": "a\u0000b"}), token)
    assert_refused(response)
    assert response.json()["field"] == "body"
    response = client.get("/api/v1/calls/CA%00x", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code in (400, 404) and response["Content-Type"].startswith("application/json")
    assert Message.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["send-message", "agent-limits", "provision"])
def test_it_refuses_json_nested_ten_thousand_deep(client: Client, default_org, orchestrator_token: str, path) -> None:
    raw = '{"agentId": "agent-a", "to": ' + DEEP + "}"
    assert_refused(post(client, path, raw, orchestrator_token))


# --- the same over MCP (Streamable HTTP, the SDK's client would never send these) -------------------


@asynccontextmanager
async def raw_mcp(url: str, token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Accept": "application/json, text/event-stream", **bearer(token)}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        opened = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
        assert opened.status_code == 200, opened.text
        http.headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
        http.headers["Mcp-Protocol-Version"] = "2025-11-25"
        assert (await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})).status_code == 202
        try:
            yield http
        finally:
            await http.delete("/mcp")


def tool_call(arguments: str) -> str:
    return '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "comms_send_message", "arguments": ' + arguments + "}}"


@pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)
@pytest.mark.parametrize("arguments", [LONE_SURROGATE_BODY, '{"to": ' + DEEP + "}"], ids=["surrogate", "deep"])
async def test_it_refuses_the_same_over_mcp_without_a_500(asgi_server: LiveServer, default_org, settings, arguments) -> None:
    settings.DEMO_MODE = True
    _, token = await sync_to_async(agent_with_numbers)("agent-a", default_org)
    async with raw_mcp(asgi_server.url, token) as http:
        response = await http.post("/mcp", content=tool_call(arguments), headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    body = response.json()
    # A JSON-RPC parse error (the SDK's) or a tool error result: never a stored message.
    if "error" not in body:
        assert body["result"]["isError"] is True
        assert body["result"]["structuredContent"]["code"] == "invalid_request"
    assert await sync_to_async(Message.objects.count)() == 0
