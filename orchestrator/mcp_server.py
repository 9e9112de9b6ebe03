"""The MCP server: one tool per operation of `orchestrator.operations`, sessions bound to a principal.

Built on the SDK's low-level `mcp.server.lowlevel.Server`, the engine that the high-level
`MCPServer` wraps. `MCPServer` derives a tool's schema and argument validation from a Python
function signature; ours come from the operation registry's pydantic models (the same ones REST
validates with), and a refusal must come back as an `isError` result carrying the contract §3 body
with `structuredContent`. The low-level server takes `tools/list` and `tools/call` handlers directly,
so nothing is defined twice.

Who is calling comes from the transport gate (`orchestrator.mcp_transport`): it authenticates each
HTTP request (or finds the principal its session is pinned to) and puts a `Binding` in the ASGI
scope, which the SDK hands to every handler as `ctx.request`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    DiscoverResult,
    EmptyResult,
    ListToolsResult,
    NotificationParams,
    PaginatedRequestParams,
    RequestParams,
    SetLevelRequestParams,
    TextContent,
    Tool,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from agents.principals import Principal
from orchestrator import agent_registry, metrics
from orchestrator.errors import ApiError
from orchestrator.operations import Operation, operations_by_tool, render_text, runs_on_the_loop
from orchestrator.workers import run_blocking, run_local, run_long

logger = logging.getLogger(__name__)

BINDING_SCOPE_KEY = "comms.binding"
TRANSPORT_SSE = "sse"
TRANSPORT_STREAMABLE = "streamable-http"

INSTRUCTIONS = (
    "Communication channels for this agent: SMS, email, WhatsApp, LINE and voice. "
    "Tools are named comms_<verb>. Inbound messages arrive as log notifications "
    "(logger 'comms.inbound') while this session is open; otherwise fetch them with "
    "comms_get_waiting_messages."
)


@dataclass(frozen=True)
class Binding:
    """Who a session (or one stateless request) acts as, and which agent it registers for."""

    principal: Principal
    agent_id: str | None
    transport: str


# --- tools ---------------------------------------------------------------------------------------


@cache
def _tools() -> dict[str, Operation]:
    return operations_by_tool()


@cache
def _tool_list() -> ListToolsResult:
    tools = [
        Tool(
            name=name,
            description=op.description,
            input_schema=op.input_model.model_json_schema(by_alias=True),
        )
        for name, op in sorted(_tools().items())
    ]
    return ListToolsResult(tools=tools)


def tool_result(body: dict[str, Any], *, is_error: bool = False) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=render_text(body))],
        structured_content=body,
        is_error=is_error,
    )


async def _list_tools(ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None) -> ListToolsResult:
    return _tool_list()


def tool_result_wire(body: dict[str, Any], *, is_error: bool = False) -> dict[str, Any]:
    """`tool_result` as the dict it dumps to, for a caller that serializes it itself."""
    return {"content": [{"type": "text", "text": render_text(body)}], "structuredContent": body, "isError": is_error}


async def _call_tool(ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> CallToolResult:
    body, is_error = await call_tool(binding_of(ctx), params.name, params.arguments)
    return tool_result(body, is_error=is_error)


async def call_tool(binding: Binding | None, name: str, raw_arguments: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """One tool call as `binding`: (result body, is_error); a refusal or a failure is an error body, never an exception."""
    operation = _tools().get(name)
    if operation is None:
        metrics.TOOL_CALLS.labels(tool="unknown", outcome="error").inc()
        return {"error": f"No tool named {name!r}.", "code": "not_found"}, True
    arguments = dict(raw_arguments or {})
    try:
        if binding is None:
            raise ApiError(401, "missing_token", "Send Authorization: Bearer <token>.")
        if binding.agent_id and binding.principal.is_admin and "agentId" not in arguments:
            # An org/orchestrator session registered for one agent acts on that agent by default.
            arguments["agentId"] = binding.agent_id
        result = await run_operation(operation, binding.principal, arguments)
    except ApiError as exc:
        metrics.TOOL_CALLS.labels(tool=name, outcome="error").inc()
        return exc.body(), True
    except Exception:
        logger.exception("Tool %s failed", name)
        metrics.TOOL_CALLS.labels(tool=name, outcome="error").inc()
        return {"error": "Internal server error.", "code": "internal_error"}, True
    metrics.labelled(metrics.TOOL_CALLS, tool=name, outcome="success").inc()
    return result, False


def served_without_dispatch(name: str) -> bool:
    """Whether the transport gate may answer a `tools/call` of `name` itself (see mcp_transport).

    Only short tools: a long poll stays with the SDK's dispatcher, where `notifications/cancelled`
    can end it. Only while the server has no middleware (tracing) and no cache hint for the method,
    which would have to see or shape the call.
    """
    operation = _tools().get(name)
    if operation is None or operation.long_running:
        return False
    server = get_server()
    return not server.middleware and "tools/call" not in server.cache_hints


# Operations that neither touch the database nor do other I/O run on the event loop: for them the
# hop to a worker thread costs more than the call (see bench/README.md).
NON_BLOCKING_TOOLS = frozenset({"comms_ping"})

async def run_operation(operation: Operation, principal: Principal, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run an operation's synchronous service (the ORM) off the event loop: a long poll or a slow
    provider call of one agent must not stall every other session. Operations that wait on nothing but
    the database go through run_local (on the loop's own thread when LOCAL_WORK_ON_LOOP)."""
    if operation.tool in NON_BLOCKING_TOOLS:
        return operation.run(principal, arguments)
    if operation.long_running:
        return await run_long(operation.run, principal, arguments)
    if runs_on_the_loop(operation):
        return await run_local(operation.run, principal, arguments)
    return await run_blocking(operation.run, principal, arguments)


# --- session lifecycle ---------------------------------------------------------------------------


def binding_of(ctx: ServerRequestContext[Any, Any]) -> Binding | None:
    request = ctx.request
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return None
    binding = scope.get(BINDING_SCOPE_KEY)
    return binding if isinstance(binding, Binding) else None


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # The per-request ServerSession wraps the connection-scoped Connection, whose standalone
    # channel carries server-initiated messages after the request is gone. The SDK does not
    # expose it on the low-level context (only MCPServer's Context has `.connection`).
    return ctx.session._connection  # noqa: SLF001


async def _on_initialized(ctx: ServerRequestContext[Any, Any], params: NotificationParams) -> None:
    binding = binding_of(ctx)
    connection = connection_of(ctx)
    if connection.session_id:
        # Streamable HTTP: when the session ends (DELETE, idle timeout, crash) forget its pin.
        streams.connections[connection.session_id] = connection
        connection.exit_stack.callback(streams.forget, connection.session_id)
    if binding is None or binding.agent_id is None:
        return
    session = agent_registry.LiveSession(agent_id=binding.agent_id, connection=connection, transport=binding.transport)
    connection.state["comms.live_session"] = session
    connection.exit_stack.push_async_callback(agent_registry.unregister_session, session)
    if binding.transport == TRANSPORT_SSE:
        # The SSE stream is open for the session's whole life: it is reachable now.
        await agent_registry.register_session(session)
    else:
        # Streamable HTTP reaches a client only while it holds its GET stream open.
        await streams.attach(connection.session_id, session)


async def _set_logging_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
    # Recorded for the client's benefit; inbound events are always sent at `info`, because they
    # are the agent's mail, not diagnostics a client may turn down.
    connection_of(ctx).state["comms.log_level"] = params.level
    return EmptyResult()


class StreamTracker:
    """Streamable HTTP: a session is registered for its agent only while a GET stream is open.

    Without that stream the server cannot push anything, so the registry must not send there;
    when the client drops the stream (or dies), the agent reads as disconnected at once.
    """

    def __init__(self) -> None:
        self.open_streams: dict[str, int] = {}
        self.sessions: dict[str, agent_registry.LiveSession] = {}
        # Every initialized session's connection, for the gate's tool-call path (its negotiated
        # protocol version); dropped when the session ends.
        self.connections: dict[str, Connection] = {}
        # Called with the session id when a Streamable HTTP session ends (the gate drops its pin).
        self.forget_listeners: list[Callable[[str], object]] = []

    async def attach(self, session_id: str | None, session: agent_registry.LiveSession) -> None:
        if session_id is None:
            return
        self.sessions[session_id] = session
        if self.open_streams.get(session_id, 0) > 0:
            await agent_registry.register_session(session)

    def forget(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.connections.pop(session_id, None)
        self.open_streams.pop(session_id, None)
        for listener in self.forget_listeners:
            listener(session_id)

    async def opened(self, session_id: str) -> None:
        self.open_streams[session_id] = self.open_streams.get(session_id, 0) + 1
        session = self.sessions.get(session_id)
        if session is not None and self.open_streams[session_id] == 1:
            await agent_registry.register_session(session)

    async def closed(self, session_id: str) -> None:
        remaining = self.open_streams.get(session_id, 0) - 1
        if remaining > 0:
            self.open_streams[session_id] = remaining
            return
        self.open_streams.pop(session_id, None)
        session = self.sessions.get(session_id)
        if session is not None:
            await agent_registry.unregister_session(session)


streams = StreamTracker()


@cache
def get_server() -> Server[Any]:
    """The one MCP server of the process, shared by the SSE and Streamable HTTP transports."""
    server: Server[Any] = Server(
        "agent-comms-orchestrator",
        version=settings.VERSION,
        instructions=INSTRUCTIONS,
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
    )
    # Registering logging/setLevel is what declares the `logging` capability (contract §5). Added
    # here rather than as a constructor argument, which warns that 2026-07-28 drops logging: our
    # push delivery is a handshake-era feature by design (see bench/README.md).
    server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_logging_level)
    server.add_notification_handler("notifications/initialized", NotificationParams, _on_initialized)
    server.add_request_handler("server/discover", RequestParams, _discover_handshake_era)
    if not _tracing_configured():
        # The SDK wraps every message in an OpenTelemetry span. With no tracer provider set up the
        # spans go nowhere, yet cost a few percent of each tool call's CPU (bench/README.md).
        server.middleware[:] = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    return server


async def _discover_handshake_era(ctx: ServerRequestContext[Any, Any], params: RequestParams) -> DiscoverResult:
    """Steer clients that can speak both eras (the SDK's default `mode="auto"`) to the handshake era.

    Only a session opened with `initialize` can receive what this server pushes: inbound messages
    as log notifications and voice turns as `sampling/createMessage`; 2026-07-28 forbids both
    outside a request. An auto-mode client that sees no modern version here falls back to
    `initialize`. A client pinned to 2026-07-28 skips this probe and is still served on the
    per-request path, where every tool works (see bench/README.md, "Protocol eras").
    """
    return DiscoverResult(
        supported_versions=list(HANDSHAKE_PROTOCOL_VERSIONS),
        capabilities=get_server().get_capabilities(protocol_version=ctx.protocol_version),
        instructions=INSTRUCTIONS,
    )


def _tracing_configured() -> bool:
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
