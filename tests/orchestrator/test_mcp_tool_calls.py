"""Streamable HTTP tool calls the transport gate answers itself, and the ones it leaves to the SDK.

The gate's answer must be the one the SDK would give: the same JSON-RPC envelope, the same result
shaped for the session's negotiated protocol version, the same headers, and the session's idle clock
held while the call runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from orchestrator import mcp_transport
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


@pytest.fixture
def answered_by_gate(monkeypatch: pytest.MonkeyPatch) -> list[int | str]:
    """The ids of the tool calls the gate answered itself."""
    answered: list[int | str] = []
    respond = mcp_transport._tool_call_response

    def spy(request_id: int | str, *args: Any) -> bytes:
        answered.append(request_id)
        return respond(request_id, *args)

    monkeypatch.setattr(mcp_transport, "_tool_call_response", spy)
    return answered


def only_through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_transport, "served_without_dispatch", lambda name: False)


@pytest.mark.parametrize("version", ["2025-11-25", "2025-03-26"])
async def test_it_answers_a_tool_call_as_the_sdk_would(
    asgi_server: LiveServer, make_agent, monkeypatch: pytest.MonkeyPatch, answered_by_gate: list[int | str], version: str
) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, version) as http:
        by_gate = await http.post("/mcp", json=call(REFUSED_SEND, "call-1"))
        ping = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}))
        only_through_the_sdk(monkeypatch)
        by_sdk = await http.post("/mcp", json=call(REFUSED_SEND, "call-1"))
    assert answered_by_gate == ["call-1", 7]
    assert by_gate.status_code == by_sdk.status_code == 200
    assert by_gate.content == by_sdk.content
    for header in ("content-type", "mcp-session-id", "content-length"):
        assert by_gate.headers[header] == by_sdk.headers[header]
    result = by_gate.json()["result"]
    assert result["isError"] is True
    assert ping.json()["id"] == 7
    assert ping.json()["result"]["isError"] is False


async def test_it_holds_the_sessions_idle_clock_while_it_answers(
    asgi_server: LiveServer, make_agent, answered_by_gate: list[int | str]
) -> None:
    from orchestrator.asgi import application

    token = await agent_token(make_agent)
    gate = application.application_mapping["http"].app.mounts["/mcp"]
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        (manager,) = gate._managers.values()
        transport = manager._server_instances[http.headers["Mcp-Session-Id"]]
        assert transport.idle_scope is not None
        transport.idle_scope.deadline = anyio.current_time() + 60
        answered = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}))
        deadline = transport.idle_scope.deadline
    assert answered_by_gate == [7]
    assert answered.status_code == 200
    assert transport._requests_in_flight == 0
    assert deadline > anyio.current_time() + manager.session_idle_timeout - 60


@pytest.mark.parametrize(
    "params",
    [
        {"name": "comms_ping", "arguments": {}, "_meta": {"progressToken": 1}},
        # A long poll stays where notifications/cancelled can end it.
        {"name": "comms_wait_for_message", "arguments": {"timeoutSeconds": 1}},
    ],
    ids=["meta", "long-poll"],
)
async def test_it_leaves_calls_with_more_than_a_name_and_arguments_and_long_polls_to_the_sdk(
    asgi_server: LiveServer, make_agent, answered_by_gate: list[int | str], params: dict[str, Any]
) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        answered = await http.post("/mcp", json=call(params))
    assert answered.status_code == 200, answered.text
    assert answered.json()["id"] == 7
    assert "result" in answered.json()
    assert answered_by_gate == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Content-Type": "text/plain"}, 400), ({"Accept": "text/event-stream"}, 406)],
    ids=["content-type", "accept"],
)
async def test_it_leaves_requests_the_sdk_refuses_to_the_sdk(
    asgi_server: LiveServer, make_agent, answered_by_gate: list[int | str], headers: dict[str, str], status: int
) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        refused = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}), headers=headers)
    assert refused.status_code == status
    assert answered_by_gate == []


async def test_it_leaves_malformed_calls_and_sessions_not_yet_initialized_to_the_sdk(
    asgi_server: LiveServer, make_agent, answered_by_gate: list[int | str]
) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        malformed = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": "none"}))
        not_json = await http.post("/mcp", content=b"{", headers={"Content-Type": "application/json"})
    async with raw_session(asgi_server.url, token, "2025-11-25", initialized=False) as http:
        early = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}))
    assert answered_by_gate == []
    assert malformed.json()["error"]["code"] == -32602
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == -32700
    # initialize was answered, so the SDK serves the call (its gate is `initialize`, not `initialized`).
    assert early.json()["result"]["isError"] is False


async def test_it_answers_404_for_a_deleted_session(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with raw_session(asgi_server.url, token, "2025-11-25") as http:
        session_headers = dict(http.headers)
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=session_headers, timeout=10) as http:
        gone = await http.post("/mcp", json=call({"name": "comms_ping", "arguments": {}}))
    assert gone.status_code in (401, 404)


async def test_it_answers_the_sdk_clients_tool_calls(
    asgi_server: LiveServer, make_agent, answered_by_gate: list[int | str]
) -> None:
    token = await agent_token(make_agent)
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        result = await session.call_tool("comms_ping", {})
    assert result.structured_content is not None
    assert result.structured_content["agentId"] == "agent-a"
    assert len(answered_by_gate) == 1
