"""The MCP transports over real sockets, with the SDK's real clients (contract §5)."""

from __future__ import annotations

import httpx
import pytest

from tests.live_server import LiveServer
from tests.orchestrator.mcp_clients import agent_token, bearer, sse_session, streamable_session

pytestmark = pytest.mark.django_db(transaction=True)


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
