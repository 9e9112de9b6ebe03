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
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp_types import (
    CallToolRequestParams,
    DiscoverResult,
    EmptyResult,
    ListToolsResult,
    NotificationParams,
    PaginatedRequestParams,
    RequestParams,
    SetLevelRequestParams,
    Tool,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from agents.principals import Principal
from channels_app import channel_registry
from orchestrator import agent_registry, metrics
from orchestrator.errors import ApiError
from orchestrator.operations import Operation, operations_by_tool, render_text
from orchestrator.workers import run_blocking, run_long

logger = logging.getLogger(__name__)

BINDING_SCOPE_KEY = "comms.binding"
SESSION_SCOPE_KEY = "comms.session_id"
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


# The tools' schemas enumerate the registry's channels: a channel registered later is listed too.
channel_registry.on_change(_tool_list.cache_clear)


def tool_result(body: dict[str, Any], *, is_error: bool = False) -> dict[str, Any]:
    """A `CallToolResult` as the SDK dumps one (camelCase, `resultType`, which handshake-era versions drop).

    The SDK validates a handler's result against the session's protocol version and shapes it for the
    wire either way; given the model, it would first dump it to this same dict, so building the model
    only added a validation and a dump to every tool call (tests/orchestrator/test_mcp_tool_calls.py
    checks both come out the same for every protocol version)."""
    return {
        "content": [{"type": "text", "text": render_text(body)}],
        "structuredContent": body,
        "isError": is_error,
        "resultType": "complete",
    }


async def _list_tools(ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None) -> ListToolsResult:
    return _tool_list()


async def _call_tool(ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> dict[str, Any]:
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


async def run_operation(operation: Operation, principal: Principal, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run an operation (its validation and its synchronous service) off the event loop, whatever it
    does: a slow provider call, a locked database or a long poll of one agent must not stall every other
    session. Long polls go to their own pool (orchestrator.workers.long_pool)."""
    if operation.long_running:
        return await run_long(operation.run, principal, arguments)
    return await run_blocking(operation.run, principal, arguments)


# --- session lifecycle ---------------------------------------------------------------------------


def binding_of(ctx: ServerRequestContext[Any, Any]) -> Binding | None:
    request = ctx.request
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return None
    binding = scope.get(BINDING_SCOPE_KEY)
    return binding if isinstance(binding, Binding) else None


def session_id_of(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The transport's id of the session this request belongs to, as the gate found it."""
    scope = getattr(ctx.request, "scope", None)
    session_id = scope.get(SESSION_SCOPE_KEY) if isinstance(scope, dict) else None
    return session_id if isinstance(session_id, str) else None


async def _on_initialized(ctx: ServerRequestContext[Any, Any], params: NotificationParams) -> None:
    binding = binding_of(ctx)
    session_id = session_id_of(ctx)
    if binding is None or binding.agent_id is None or session_id is None:
        return
    # ctx.session sends what it is not given a request id for on the connection's standalone channel,
    # which lives as long as the session: it is how the registry reaches the agent later.
    live = agent_registry.LiveSession(
        agent_id=binding.agent_id, session=ctx.session, transport=binding.transport, principal=binding.principal
    )
    if binding.transport == TRANSPORT_SSE:
        # The SSE stream is open for the session's whole life: it is reachable now, and until the gate's
        # stream ends (streams.ended).
        streams.sessions[session_id] = live
        await agent_registry.register_session(live)
    else:
        # Streamable HTTP reaches a client only while it holds its GET stream open.
        await streams.attach(session_id, live)


async def _set_logging_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
    # Accepted for the client's benefit; inbound events are always sent at `info`, because they are the
    # agent's mail, not diagnostics a client may turn down.
    return EmptyResult()


class StreamTracker:
    """Streamable HTTP: a session is registered for its agent only while a GET stream is open.

    Without that stream the server cannot push anything, so the registry must not send there;
    when the client drops the stream (or dies), the agent reads as disconnected at once.
    """

    def __init__(self) -> None:
        self.open_streams: dict[str, int] = {}
        # Initialized sessions bound to an agent, by the transport's session id, until they end.
        self.sessions: dict[str, agent_registry.LiveSession] = {}

    async def attach(self, session_id: str, session: agent_registry.LiveSession) -> None:
        if len(self.sessions) >= MAX_TRACKED_SESSIONS:
            # Sessions the SDK ended on its own (idle timeout) without a request from their client since:
            # none of them holds a stream.
            for stale in [key for key in self.sessions if not self.open_streams.get(key)]:
                del self.sessions[stale]
        self.sessions[session_id] = session
        if self.open_streams.get(session_id, 0) > 0:
            await agent_registry.register_session(session)

    async def ended(self, session_id: str) -> None:
        """The session is over (its SSE stream closed, a DELETE, or the SDK no longer knows it)."""
        self.open_streams.pop(session_id, None)
        session = self.sessions.pop(session_id, None)
        if session is not None:
            await agent_registry.unregister_session(session)

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


MAX_TRACKED_SESSIONS = 10_000
streams = StreamTracker()


@cache
def get_server() -> Server[Any]:
    """The one MCP server of the process, shared by the SSE and Streamable HTTP transports."""
    server: Server[Any] = Server(
        "agent-comms-orchestrator",
        version=settings.VERSION,
        instructions=INSTRUCTIONS,
        on_list_tools=_list_tools,
    )
    if not settings.MCP_OTEL_SPANS:
        # The SDK's only default middleware is its OpenTelemetry span per message ("drop it from this list
        # to opt out", Server.middleware).
        server.middleware.clear()
    # Registered as a plain request handler, which may return the result's wire dict (tool_result);
    # `on_call_tool` is typed to return the model. Same validation of params and result either way.
    server.add_request_handler("tools/call", CallToolRequestParams, _call_tool)
    # Registering logging/setLevel is what declares the `logging` capability (contract §5). Added
    # here rather than as a constructor argument, which warns that 2026-07-28 drops logging: our
    # push delivery is a handshake-era feature by design (docs/mcp-protocol-eras.md).
    server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_logging_level)
    server.add_notification_handler("notifications/initialized", NotificationParams, _on_initialized)
    server.add_request_handler("server/discover", RequestParams, _discover_handshake_era)
    return server


async def _discover_handshake_era(ctx: ServerRequestContext[Any, Any], params: RequestParams) -> DiscoverResult:
    """Steer clients that can speak both eras (the SDK's default `mode="auto"`) to the handshake era.

    Only a session opened with `initialize` can receive what this server pushes: inbound messages
    as log notifications and voice turns as `sampling/createMessage`; 2026-07-28 forbids both
    outside a request. An auto-mode client that sees no modern version here falls back to
    `initialize`. A client pinned to 2026-07-28 skips this probe and is still served on the
    per-request path, where every tool works (docs/mcp-protocol-eras.md).
    """
    return DiscoverResult(
        supported_versions=list(HANDSHAKE_PROTOCOL_VERSIONS),
        capabilities=get_server().get_capabilities(protocol_version=ctx.protocol_version),
        instructions=INSTRUCTIONS,
    )
