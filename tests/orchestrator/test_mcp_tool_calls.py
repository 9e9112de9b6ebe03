"""Streamable HTTP tool calls over a raw session: the gate checks the caller and hands every request to
the SDK's transport as shipped, which answers with its JSON-RPC envelope for the negotiated version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from orchestrator.mcp_server import streams
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import agent_token, bearer, streamable_session

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)

ACCEPT = {"Accept": "application/json, text/event-stream"}
# A refusal is deterministic to the byte: the same call must read the same through either path.
REFUSED_SEND = {"name": "comms_send_message", "arguments": {"to": "+14155550123"}}


@asynccontextmanager
async def raw_session(url: str, token: str, version: str, *, initialized: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """A Streamable HTTP session opened by hand; the client carries its headers."""
    async with httpx.AsyncClient(base_url=url, headers={**ACCEPT, **bearer(token)}, timeout=10) as http:
        opened = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
        assert opened.status_code == 200, opened.text
        http.headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
        http.headers["Mcp-Protocol-Version"] = version
        if initialized:
            sent = await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            assert sent.status_code == 202
        try:
            yield http
        finally:
            await http.delete("/mcp")


def call(params: dict[str, Any], request_id: int | str = 7) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


@pytest.mark.parametrize("version", ["2025-11-25", "2025-03-26"])
async def test_it_answers_tool_calls_in_one_json_body(asgi_server: LiveServer, make_agent, version: str) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, version) as http:
        refused = await http.post("/mcp", json=call(REFUSED_SEND, "call-1"))
        again = await http.post("/mcp", json=call(REFUSED_SEND, "call-1"))
        ping = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}))
        session_id = http.headers["Mcp-Session-Id"]
    assert refused.status_code == 200
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.headers["mcp-session-id"] == session_id
    assert refused.content == again.content  # a refusal is deterministic to the byte
    assert refused.json()["id"] == "call-1"
    assert refused.json()["result"]["isError"] is True
    assert refused.json()["result"]["structuredContent"]["field"] == "body"
    assert ping.json()["id"] == 7
    assert ping.json()["result"]["isError"] is False


async def test_it_answers_calls_with_meta_and_long_polls(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        with_meta = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}, "_meta": {"progressToken": 1}}))
        long_poll = await http.post("/mcp", json=call({"name": "comms_wait_for_message", "arguments": {"timeoutSeconds": 1}}))
    for answered in (with_meta, long_poll):
        assert answered.status_code == 200, answered.text
        assert answered.json()["id"] == 7
        assert "result" in answered.json()


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Content-Type": "text/plain"}, 400), ({"Accept": "text/event-stream"}, 406)],
    ids=["content-type", "accept"],
)
async def test_it_refuses_requests_with_the_wrong_media_types(
    asgi_server: LiveServer, make_agent, headers: dict[str, str], status: int
) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        refused = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}), headers=headers)
    assert refused.status_code == status


async def test_it_answers_malformed_calls_with_json_rpc_errors(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        malformed = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": "none"}))
        not_json = await http.post("/mcp", content=b"{", headers={"Content-Type": "application/json"})
    async with raw_session(asgi_server.url, token, "2025-11-25", initialized=False) as http:
        early = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}))
    assert malformed.json()["error"]["code"] == -32602
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == -32700
    # initialize was answered, so the SDK serves the call (its gate is `initialize`, not `initialized`).
    assert early.json()["result"]["isError"] is False


async def test_it_answers_404_for_a_deleted_session_and_forgets_it(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        session_headers = dict(http.headers)
        assert session_headers["mcp-session-id"] in streams.sessions  # initialized, bound to agent-a
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=session_headers, timeout=10) as http:
        gone = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}))
    assert gone.status_code in (401, 404)
    assert session_headers["mcp-session-id"] not in streams.sessions


async def test_it_answers_the_sdk_clients_tool_calls(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        result = await session.call_tool("comms_ping", {})
    assert result.structured_content is not None
    assert result.structured_content["agentId"] == "agent-a"


@pytest.mark.parametrize("is_error", [False, True])
def test_it_shapes_tool_results_as_the_sdk_shapes_its_result_model_for_every_protocol_version(is_error: bool) -> None:
    from mcp_types import CallToolResult, TextContent
    from mcp_types.methods import serialize_server_result
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

    from orchestrator.mcp_server import tool_result
    from orchestrator.operations import render_text

    body = {"success": not is_error, "cost": 0.0079, "externalId": None, "to": "Zoë 😀", "nested": {"list": [1, None]}}
    model = CallToolResult(content=[TextContent(type="text", text=render_text(body))], structured_content=body,
                           is_error=is_error)
    as_model = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    for version in (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS):
        wire = serialize_server_result("tools/call", version, tool_result(body, is_error=is_error))
        assert wire == serialize_server_result("tools/call", version, as_model), version


def test_it_renders_tool_results_as_indented_json() -> None:
    import json

    from orchestrator.operations import render_text

    body = {"success": True, "to": "Zoë 😀", "cost": 0.0079, "externalId": None, "tags": [], "nested": {"a": [1, "b"]}}
    assert render_text(body) == json.dumps(body, ensure_ascii=False, indent=2)


@pytest.mark.parametrize("spans", [True, False])
def test_it_wraps_mcp_messages_in_the_sdks_opentelemetry_spans_unless_turned_off(settings, spans: bool) -> None:
    from orchestrator.mcp_server import get_server

    settings.MCP_OTEL_SPANS = spans
    get_server.cache_clear()
    try:
        middleware = [type(layer).__name__ for layer in get_server().middleware]
    finally:
        get_server.cache_clear()
    assert middleware == (["OpenTelemetryMiddleware"] if spans else [])
