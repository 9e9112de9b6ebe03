"""The MCP transports over real sockets, with the SDK's real clients (contract §5)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async
from mcp.client import Client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from orchestrator import agent_registry
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import agent_token, bearer, org_token, sse_session, streamable_session

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


async def test_it_serves_tools_over_sse_with_a_query_token_only(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with sse_session(f"{asgi_server.url}/sse?token={token}") as session:
        tools = await session.list_tools()
        result = await session.call_tool("comms_ping", {})
    assert "comms_ping" in [tool.name for tool in tools.tools]
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["status"] == "ok"
    assert result.structured_content["agentId"] == "agent-a"
    assert '"status": "ok"' in result.content[0].text


async def test_it_serves_tools_over_sse_with_a_bearer_header(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with sse_session(f"{asgi_server.url}/sse", headers=bearer(token)) as session:
        result = await session.call_tool("comms_ping", {})
    assert result.structured_content is not None
    assert result.structured_content["identity"] == {"role": "agent", "orgId": "default", "agentId": "agent-a"}


async def test_it_serves_tools_over_streamable_http(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        tools = await session.list_tools()
        result = await session.call_tool("comms_ping", {})
    ping = next(tool for tool in tools.tools if tool.name == "comms_ping")
    assert ping.input_schema["type"] == "object"
    assert result.structured_content is not None
    assert result.structured_content["agentId"] == "agent-a"


async def test_it_refuses_a_wrong_token_with_401(asgi_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=asgi_server.url) as http:
        sse = await http.get("/sse?token=agt_wrong_wrong_wrong_wrong_wrong")
        mcp = await http.post("/mcp", headers=bearer("agt_nope_nope_nope_nope_nope"), json={})
    assert sse.status_code == 401
    assert sse.json()["code"] == "invalid_token"
    assert mcp.status_code == 401
    assert mcp.json() == {"error": "The token is not valid or has been revoked.", "code": "invalid_token"}


async def open_raw_sse(http: httpx.AsyncClient, url: str, **kwargs) -> tuple[httpx.Response, str]:
    """Open GET /sse by hand and read the `endpoint` event: (streaming response, POST path)."""
    request = http.build_request("GET", url, **kwargs)
    response = await http.send(request, stream=True)
    assert response.status_code == 200, await response.aread()
    # Keep the line iterator alive on the response: a finalized iterator closes the stream.
    lines = response.aiter_lines()
    response.extensions["test_lines"] = lines
    while True:
        line = await lines.__anext__()
        if line.startswith("data: "):
            return response, line[len("data: "):]


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
PING_CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "comms_ping", "arguments": {}}}


async def test_it_lets_a_query_token_session_post_without_a_header_but_refuses_another_principal(
    asgi_server: LiveServer, make_agent
) -> None:
    token_a = await agent_token(make_agent, "agent-a")
    token_b = await agent_token(make_agent, "agent-b")
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        stream, endpoint = await open_raw_sse(http, f"/sse?token={token_a}")
        try:
            assert endpoint.startswith("/messages?session_id=")
            anonymous = await http.post(endpoint, json=INITIALIZE)
            same = await http.post(endpoint, json=INITIALIZED, headers=bearer(token_a))
            hijack = await http.post(endpoint, json=PING_CALL, headers=bearer(token_b))
            with_slash = await http.post(endpoint.replace("/messages", "/messages/"), json=PING_CALL)
        finally:
            await stream.aclose()
    assert anonymous.status_code == 202
    assert same.status_code == 202
    assert with_slash.status_code == 202, with_slash.text
    assert hijack.status_code == 403
    assert hijack.json()["code"] == "forbidden"


async def test_it_refuses_a_streamable_http_request_for_another_principals_session(
    asgi_server: LiveServer, make_agent
) -> None:
    token_a = await agent_token(make_agent, "agent-a")
    token_b = await agent_token(make_agent, "agent-b")
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        opened = await http.post("/mcp", json=INITIALIZE, headers={**accept, **bearer(token_a)})
        session_id = opened.headers["mcp-session-id"]
        hijack = await http.post(
            "/mcp", json=PING_CALL, headers={**accept, **bearer(token_b), "Mcp-Session-Id": session_id}
        )
        anonymous = await http.post("/mcp", json=PING_CALL, headers={**accept, "Mcp-Session-Id": session_id})
        await http.delete("/mcp", headers={**bearer(token_a), "Mcp-Session-Id": session_id})
    assert opened.status_code == 200
    assert hijack.status_code == 403
    assert hijack.json()["code"] == "forbidden"
    assert anonymous.status_code == 401


async def test_it_refuses_an_agent_id_of_another_organization(asgi_server: LiveServer, make_agent, make_org) -> None:
    _, acme_token = await org_token(make_org, "Acme")
    await agent_token(make_agent, "default-agent")
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        sse = await http.get(f"/sse?token={acme_token}&agentId=default-agent")
        mcp = await http.post("/mcp?agentId=default-agent", json=INITIALIZE, headers=bearer(acme_token))
    assert sse.status_code == 404
    assert sse.json()["code"] == "agent_not_found"
    assert mcp.status_code == 404


async def test_it_refuses_an_agent_token_naming_another_agent(asgi_server: LiveServer, make_agent) -> None:
    token_a = await agent_token(make_agent, "agent-a")
    await agent_token(make_agent, "agent-b")
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        response = await http.get(f"/sse?token={token_a}&agentId=agent-b")
    assert response.status_code == 403
    assert response.json() == {
        "error": "An agent token connects only as its own agent.",
        "code": "forbidden",
        "field": "agentId",
    }


async def test_it_lets_an_org_token_connect_as_its_own_agent(
    asgi_server: LiveServer, make_agent, make_org
) -> None:
    org, acme_token = await org_token(make_org, "Acme")
    await agent_token(make_agent, "acme-bot", org=org)
    async with sse_session(f"{asgi_server.url}/sse?token={acme_token}&agentId=acme-bot") as session:
        result = await session.call_tool("comms_ping", {})
    assert result.structured_content is not None
    assert result.structured_content["identity"]["role"] == "org_admin"


@pytest.mark.parametrize(
    "headers",
    [{"Host": "evil.example.com"}, {"Origin": "http://evil.example.com"}, {"Host": "rebind.localhost.evil.com:3100"}],
)
async def test_it_refuses_foreign_hosts_and_origins(asgi_server: LiveServer, make_agent, headers) -> None:
    token = await agent_token(make_agent)
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        sse = await http.get(f"/sse?token={token}", headers=headers)
        mcp = await http.post("/mcp", json=INITIALIZE, headers={**headers, **bearer(token)})
    assert sse.status_code == 403
    assert sse.json()["code"] == "forbidden"
    assert mcp.status_code == 403


async def test_it_accepts_the_public_host_and_local_origins_on_any_port(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        response = await http.post(
            "/mcp",
            json=INITIALIZE,
            headers={**accept, **bearer(token), "Host": "localhost:8123", "Origin": "http://127.0.0.1:5173"},
        )
    assert response.status_code == 200


async def test_it_throttles_repeated_failed_auth(asgi_server: LiveServer, settings) -> None:
    statuses = []
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        for _ in range(settings.AUTH_FAILURE_LIMIT + 1):
            response = await http.get("/sse?token=agt_not_a_real_token_at_all_000")
            statuses.append(response.status_code)
    assert statuses[:-1] == [401] * settings.AUTH_FAILURE_LIMIT
    assert statuses[-1] == 429
    assert response.json()["code"] == "too_many_auth_failures"
    assert int(response.headers["Retry-After"]) > 0


async def test_it_serves_clients_pinned_to_the_2026_protocol(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with Client(f"{asgi_server.url}/mcp?token={token}", mode="2026-07-28") as client:
        tools = await client.list_tools()
        result = await client.call_tool("comms_ping", {})
        refused = await client.call_tool("comms_no_such_tool", {})
        assert client.session.protocol_version == "2026-07-28"
    assert "comms_ping" in [tool.name for tool in tools.tools]
    assert result.structured_content is not None
    assert result.structured_content["agentId"] == "agent-a"
    assert refused.is_error is True


async def test_it_steers_auto_mode_clients_to_the_handshake_era_where_pushes_work(
    asgi_server: LiveServer, make_agent
) -> None:
    from tests.orchestrator.test_mcp_registry import Inbox, answering, connected, eventually

    token = await agent_token(make_agent)
    inbox = Inbox()
    async with Client(
        f"{asgi_server.url}/mcp?token={token}", logging_callback=inbox, sampling_callback=answering("Auto")
    ) as client:
        assert client.session.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        result = await client.call_tool("comms_ping", {})
        await eventually(connected("agent-a"))
        assert await agent_registry.notify_agent("agent-a", {"id": "pushed"}) is True
        text = await agent_registry.sample_agent("agent-a", [{"role": "user", "content": "hi"}], timeout=5)
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert result.structured_content is not None
    assert text == "Auto (hi)"
    assert inbox.events[0].data == {"id": "pushed"}


async def test_it_reports_refusals_as_error_results_with_the_contract_body(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with sse_session(f"{asgi_server.url}/sse?token={token}") as session:
        result = await session.call_tool("comms_no_such_tool", {})
    assert result.is_error is True
    assert result.structured_content == {"error": "No tool named 'comms_no_such_tool'.", "code": "not_found"}


def test_it_redacts_query_tokens_from_request_log_lines() -> None:
    import logging

    from orchestrator.mcp_transport import install_request_log_redaction

    install_request_log_redaction()
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    handler = Collect()
    access.addHandler(handler)
    try:
        access.warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/sse?token=agt_secretsecretsecret123&x=1", "1.1", 200)
    finally:
        access.removeHandler(handler)
    assert records == ['127.0.0.1:5 - "GET /sse?token=[redacted]&x=1 HTTP/1.1" 200']


async def test_it_counts_tool_calls_by_tool_and_outcome(asgi_server: LiveServer, make_agent) -> None:
    from prometheus_client import REGISTRY

    def count(tool: str, outcome: str) -> float:
        return REGISTRY.get_sample_value("mcp_tool_calls_total", {"tool": tool, "outcome": outcome}) or 0.0

    token = await agent_token(make_agent)
    ok_before, error_before = count("comms_ping", "success"), count("unknown", "error")
    async with sse_session(f"{asgi_server.url}/sse?token={token}") as session:
        await session.call_tool("comms_ping", {})
        await session.call_tool("comms_nope", {})
    assert count("comms_ping", "success") == ok_before + 1
    assert count("unknown", "error") == error_before + 1


async def test_it_forgets_a_streamable_http_session_once_it_is_closed(asgi_server: LiveServer, make_agent) -> None:
    from orchestrator.asgi import application

    token = await agent_token(make_agent)
    gate = application.application_mapping["http"].app.mounts["/mcp"]
    earlier = set(gate.http_pins)
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)):
        assert len(set(gate.http_pins) - earlier) == 1
    for _ in range(100):
        if not set(gate.http_pins) - earlier:
            break
        await asyncio.sleep(0.02)
    assert set(gate.http_pins) - earlier == set()


async def test_it_stops_a_live_session_whose_token_was_revoked(
    asgi_server: LiveServer, make_agent, monkeypatch
) -> None:
    from agents.services import token_revoke_by_value
    from orchestrator import mcp_transport

    token = await agent_token(make_agent)
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=10) as http:
        stream, endpoint = await open_raw_sse(http, f"/sse?token={token}")
        try:
            assert (await http.post(endpoint, json=INITIALIZE)).status_code == 202
            await sync_to_async(token_revoke_by_value)(token=token)
            monkeypatch.setattr(mcp_transport, "PIN_RECHECK_SECONDS", 0.0)
            refused = await http.post(endpoint, json=PING_CALL)
        finally:
            await stream.aclose()
    # The revocation ends the session at once (test_mcp_session_revocation.py): its pin is either still
    # there, marked revoked, or already gone with the stream.
    assert (refused.status_code, refused.json()["code"]) in ((401, "invalid_token"), (404, "not_found"))


async def test_it_ignores_a_session_closing_after_its_last_response_was_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that posts `initialized` and at once deletes its session: the SDK fails to hand the
    message over after answering 202 and tries to answer again. The client has its answer; the gate
    neither sends a second response nor reports a crash."""
    import anyio

    from orchestrator.mcp_transport import McpGate

    async def answered_then_closed(self: McpGate, scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]
        await send({"type": "http.response.start", "status": 500, "headers": []})  # type: ignore[operator]
        raise anyio.ClosedResourceError

    monkeypatch.setattr(McpGate, "_dispatch", answered_then_closed)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await McpGate()({"type": "http", "path": "/mcp"}, None, send)
    assert [message.get("status") for message in sent if message["type"] == "http.response.start"] == [202]


async def test_it_still_reports_a_closed_stream_before_any_response(monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    from orchestrator.mcp_transport import McpGate

    async def closed_early(self: McpGate, scope: dict, receive: object, send: object) -> None:
        raise anyio.ClosedResourceError

    monkeypatch.setattr(McpGate, "_dispatch", closed_early)

    async def send(message: dict) -> None:
        pass

    with pytest.raises(anyio.ClosedResourceError):
        await McpGate()({"type": "http", "path": "/mcp"}, None, send)
