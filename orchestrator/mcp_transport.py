"""MCP transports mounted in the ASGI application (contract §5).

`GET /sse` + `POST /messages` (HTTP+SSE) and `/mcp` (Streamable HTTP) are the SDK's transports
behind one gate that, before anything reaches the MCP layer:

1. refuses a `Host`/`Origin` outside the public host, localhost and 127.0.0.1 (DNS rebinding);
2. authenticates `Authorization: Bearer` or `?token=` with the same selector as REST, throttled;
3. pins each session to the principal that opened it: a request for the session carrying another
   principal gets 403, while an SSE POST with no credentials rides on the session's binding (the
   Claude Desktop style `?token=` URL config);
4. resolves `agentId` for org and orchestrator tokens to one of their own agents;

and then hands the request to the SDK's transport, as shipped.

Refusals here are contract §3 JSON bodies. The Streamable HTTP session manager needs a running
task group; daphne sends no ASGI lifespan, so it is started lazily on the first `/mcp` request.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from django.conf import settings
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Message

from agents.authentication import authenticate_token, bearer_from_header, client_address_from
from agents.principals import Principal, Role
from agents.selectors import agent_get_for_principal
from orchestrator import agent_registry
from orchestrator.errors import ApiError
from orchestrator.lifespan import on_shutdown
from orchestrator.logging import RedactTokensFilter
from orchestrator.mcp_server import (
    BINDING_SCOPE_KEY,
    SESSION_SCOPE_KEY,
    TRANSPORT_SSE,
    TRANSPORT_STREAMABLE,
    Binding,
    get_server,
    streams,
)
from orchestrator.workers import run_blocking

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Any
Send = Any

SSE_PATH = "/sse"
MESSAGES_PATH = "/messages"
STREAMABLE_PATH = "/mcp"
MAX_BODY_BYTES = 1024 * 1024
SESSION_HEADER = b"mcp-session-id"


# Loggers that write request lines (paths with their query strings). A filter on the logger itself
# runs before any handler, including the ones uvicorn and daphne install after Django configured
# logging, and survives their dictConfig calls.
REQUEST_LINE_LOGGERS = ("uvicorn.access", "uvicorn.error", "daphne.server", "daphne.http_protocol",
                        "django.channels.server", "django.server", "django.request")


def install_request_log_redaction() -> None:
    """Tokens given as `?token=` never reach a log line (contract §5)."""
    for name in REQUEST_LINE_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactTokensFilter) for f in target.filters):
            target.addFilter(RedactTokensFilter())
    # daphne's own CLI writes its access log straight to stdout, past `logging`: docs/deployment.md runs
    # it with -v 0 (no access log). `manage.py runserver` logs requests through `logging`, filtered above.


def mcp_http_mounts() -> dict[str, Any]:
    install_request_log_redaction()
    gate = McpGate()
    return {SSE_PATH: gate, MESSAGES_PATH: gate, MESSAGES_PATH + "/": gate, STREAMABLE_PATH: gate}


# --- host and origin (DNS rebinding) -------------------------------------------------------------


def allowed_hostnames() -> frozenset[str]:
    return _allowed_hostnames(settings.PUBLIC_HOST)


@functools.cache
def _allowed_hostnames(public_host: str) -> frozenset[str]:
    return frozenset({public_host.lower(), "localhost", "127.0.0.1"})


def _hostname(host_header: str) -> str:
    return (urlsplit(f"//{host_header}").hostname or "").lower()


def host_allowed(host: str | None, origin: str | None) -> bool:
    """Host must name an allowed host (any port); an Origin, when present, too (any port)."""
    # Every MCP request asks this with the same few Host/Origin pairs; parsing them costs more than
    # remembering the answer. Bounded, since both headers come from the client.
    return _host_allowed(host, origin, settings.PUBLIC_HOST)


@functools.lru_cache(maxsize=256)
def _host_allowed(host: str | None, origin: str | None, public_host: str) -> bool:
    allowed = _allowed_hostnames(public_host)
    if not host or _hostname(host) not in allowed:
        return False
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and (parts.hostname or "").lower() in allowed


def sdk_security_settings() -> TransportSecuritySettings:
    """The SDK's own check, kept on as a second line; it must accept what the gate accepts."""
    hosts = sorted(allowed_hostnames())
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[h for host in hosts for h in (host, f"{host}:*")],
        allowed_origins=[o for host in hosts for scheme in ("http", "https") for o in (f"{scheme}://{host}", f"{scheme}://{host}:*")],
    )


# --- session pins --------------------------------------------------------------------------------


# How often a live session's token is looked up again, so that revoking it (regenerate-token,
# deprovision) also stops sessions opened before: at most this many seconds later.
PIN_RECHECK_SECONDS = 30.0


@dataclass
class Pin:
    """The principal a session is bound to, and the token that opened it (kept in memory only)."""

    binding: Binding
    token: str
    token_bytes: bytes
    verified_at: float
    # The event loop serving the session; set once its token is revoked (every later request: 401).
    loop: asyncio.AbstractEventLoop | None = None
    revoked: bool = False


@dataclass(eq=False)
class _OpenSseStream:
    pin: Pin
    cancel_scope: anyio.CancelScope
    loop: asyncio.AbstractEventLoop


class _ResponseGuard:
    """A client that posts a notification and at once ends its session (DELETE) can close the session's
    stream between the SDK's 202 and its hand-over of the message; the SDK then tries to answer 500 on
    the finished response and raises, which the server reports as a crashed application. The client
    already has its 202: whatever follows a finished response is dropped, and so is that error."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.finished = False

    async def __call__(self, message: Message) -> None:
        if self.finished:
            return
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)


class _LateNotificationFilter(logging.Filter):
    """The SDK logs the race above as an error with a traceback; it is a client that left, not a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == "Error handling POST request" and record.exc_info:
            error = record.exc_info[1]
            if isinstance(error, anyio.ClosedResourceError | anyio.BrokenResourceError):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


logging.getLogger("mcp.server.streamable_http").addFilter(_LateNotificationFilter())


class McpGate:
    """The ASGI app behind every MCP path: checks, then the SDK transport."""

    def __init__(self) -> None:
        self.sse = SseServerTransport(
            MESSAGES_PATH, security_settings=sdk_security_settings(), max_request_body_size=MAX_BODY_BYTES
        )
        self.sse_pins: dict[str, Pin] = {}
        self.http_pins: dict[str, Pin] = {}
        self._managers: dict[asyncio.AbstractEventLoop, StreamableHTTPSessionManager] = {}
        self._manager_lock: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._manager_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._sse_streams: set[_OpenSseStream] = set()
        self._terminations: set[asyncio.Task[None]] = set()
        agent_registry.add_end_listener(self._end_sessions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = _ResponseGuard(send)
        try:
            await self._dispatch(scope, receive, guard)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            if not guard.finished:
                raise
            logger.debug("MCP session closed while its last request finished", exc_info=True)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        await agent_registry.serve_here()
        headers = _headers(scope)
        if not host_allowed(headers.get("host"), headers.get("origin")):
            await send_error(send, ApiError(403, "forbidden", "This Host or Origin may not use the MCP endpoints."))
            return
        path = scope["path"]
        method = scope["method"]
        try:
            if path == SSE_PATH:
                if method != "GET":
                    raise ApiError(405, "method_not_allowed", "Open the SSE stream with GET.")
                await self._serve_sse(scope, receive, send, headers)
            elif path == STREAMABLE_PATH:
                await self._serve_streamable(scope, receive, send, headers)
            else:
                await self._serve_sse_post(scope, receive, send, headers)
        except ApiError as error:
            await send_error(send, error)

    # HTTP+SSE

    async def _serve_sse(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        query = _query(scope)
        token = bearer_from_header(headers.get("authorization")) or query.get("token")
        principal = await _authenticate(scope, headers, token)
        agent_id = await resolve_session_agent(principal, query.get("agentId"))
        binding = Binding(principal=principal, agent_id=agent_id, transport=TRANSPORT_SSE)
        pin = _pin(binding, token)
        session_ids: list[str] = []

        async def send_and_pin(message: Message) -> None:
            if not session_ids and message["type"] == "http.response.body":
                # The first event names the session (`endpoint`: /messages?session_id=<hex>); pin
                # it before the client can read it and post.
                session_id = _session_id_from_endpoint_event(message.get("body", b""))
                if session_id:
                    session_ids.append(session_id)
                    self.sse_pins[session_id] = pin
            await send(message)

        scope[BINDING_SCOPE_KEY] = binding
        server = get_server()
        stream = _OpenSseStream(pin, anyio.CancelScope(), asyncio.get_running_loop())
        self._sse_streams.add(stream)
        try:
            with stream.cancel_scope:
                async with self.sse.connect_sse(scope, receive, send_and_pin) as (read_stream, write_stream):
                    await server.run(read_stream, write_stream, server.create_initialization_options())
        except ValueError:
            # connect_sse has already answered a request its own checks refused.
            logger.debug("SSE connection refused by the transport")
        finally:
            self._sse_streams.discard(stream)
            for session_id in session_ids:
                self.sse_pins.pop(session_id, None)
                await streams.ended(session_id)
        if stream.cancel_scope.cancelled_caught:
            # Ended because its token was revoked: finish the response (the guard drops this if it was).
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _serve_sse_post(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        session_id = _query(scope).get("session_id", "")
        pin = self.sse_pins.get(session_id.replace("-", "").lower())
        if pin is None:
            raise ApiError(404, "not_found", "No open MCP session with that session_id; open GET /sse first.")
        await _check_pin(scope, headers, pin, token=bearer_from_header(headers.get("authorization")) or _query(scope).get("token"))
        scope[BINDING_SCOPE_KEY] = pin.binding
        scope[SESSION_SCOPE_KEY] = session_id.replace("-", "").lower()
        await self.sse.handle_post_message(scope, receive, send)

    # Streamable HTTP

    async def _serve_streamable(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        query = _query(scope)
        token = bearer_from_header(headers.get("authorization")) or query.get("token")
        session_id = headers.get("mcp-session-id")
        manager = await self._manager()
        if session_id is not None and session_id in self.http_pins:
            pin = self.http_pins[session_id]
            await _check_pin(scope, headers, pin, token=token, required=True)
            scope[BINDING_SCOPE_KEY] = pin.binding
            scope[SESSION_SCOPE_KEY] = session_id
            await self._serve_pinned(manager, session_id, scope, receive, send)
            return
        principal = await _authenticate(scope, headers, token)
        agent_id = await resolve_session_agent(principal, query.get("agentId"))
        binding = Binding(principal=principal, agent_id=agent_id, transport=TRANSPORT_STREAMABLE)
        scope[BINDING_SCOPE_KEY] = binding
        pin = _pin(binding, token)

        async def send_and_pin(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == SESSION_HEADER and not pin.revoked:
                        self.http_pins[value.decode("latin-1")] = pin
            await send(message)

        await manager.handle_request(scope, receive, send_and_pin)

    async def _serve_pinned(
        self, manager: StreamableHTTPSessionManager, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope["method"] == "GET":
            await self._serve_get_stream(manager, session_id, scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await manager.handle_request(scope, receive, watch)
        if scope["method"] == "DELETE" or (status and status[0] == 404):
            # Ended by its client, or gone from the SDK (idle timeout): forget it.
            self.http_pins.pop(session_id, None)
            await streams.ended(session_id)

    async def _serve_get_stream(
        self, manager: StreamableHTTPSessionManager, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The GET stream is the session's only way to receive server-initiated messages.

        The agent reads as connected only once the SDK can carry a push on it. A push into the
        gap before that is dropped by the SDK yet reported as sent, so the inbound message it
        carried would be marked delivered and never arrive. A refused GET (a second stream: 409)
        never registers.
        """
        opened = False

        async def send_then_register(message: Message) -> None:
            nonlocal opened
            await send(message)
            if message["type"] == "http.response.start" and message["status"] == 200 and not opened:
                opened = True
                # sse_starlette sends these headers from the first task of its task group and
                # installs the SDK's stream writer from a later one of the same group; one turn of
                # the loop lets that writer claim the session's GET stream before we announce it.
                await asyncio.sleep(0)
                await streams.opened(session_id)

        try:
            await manager.handle_request(scope, receive, send_then_register)
        finally:
            if opened:
                await streams.closed(session_id)

    # ending sessions whose token was revoked (agent_registry.sessions_end)

    def _end_sessions(self, selector: agent_registry.Selector) -> None:
        """On each serving loop: close this loop's SSE streams and Streamable HTTP sessions that match.

        Their pins turn revoked first, so nothing the session's client sends is served any more (401).
        """
        loop = asyncio.get_running_loop()
        for stream in list(self._sse_streams):
            binding = stream.pin.binding
            if stream.loop is loop and agent_registry.session_matches(selector, binding.principal, binding.agent_id):
                stream.pin.revoked = True
                stream.cancel_scope.cancel()
        for session_id, pin in list(self.http_pins.items()):
            binding = pin.binding
            if pin.loop is loop and agent_registry.session_matches(selector, binding.principal, binding.agent_id):
                pin.revoked = True
                task = loop.create_task(self._terminate(session_id))
                self._terminations.add(task)
                task.add_done_callback(self._terminations.discard)

    async def _terminate(self, session_id: str) -> None:
        """End a Streamable HTTP session as its client's DELETE would: the SDK closes its streams."""
        manager = self._managers.get(asyncio.get_running_loop())
        if manager is None:
            return
        scope: Scope = {
            "type": "http", "method": "DELETE", "path": STREAMABLE_PATH, "raw_path": STREAMABLE_PATH.encode(),
            "root_path": "", "query_string": b"", "scheme": "http", "http_version": "1.1",
            "server": ("localhost", 80), "client": ("127.0.0.1", 0),
            "headers": [(b"host", b"localhost"), (SESSION_HEADER, session_id.encode("latin-1"))],
        }

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(message: Message) -> None:
            return None

        try:
            await manager.handle_request(scope, receive, discard)
        except Exception:
            logger.exception("Could not end MCP session %s after its token was revoked", session_id)
        finally:
            self.http_pins.pop(session_id, None)

    async def _manager(self) -> StreamableHTTPSessionManager:
        """This event loop's session manager, started on first use (daphne sends no lifespan)."""
        loop = asyncio.get_running_loop()
        manager = self._managers.get(loop)
        if manager is not None:
            return manager
        lock = self._manager_lock.setdefault(loop, asyncio.Lock())
        async with lock:
            manager = self._managers.get(loop)
            if manager is None:
                for old in [old for old in self._managers if old.is_closed()]:
                    del self._managers[old]
                    self._manager_lock.pop(old, None)
                    self._manager_tasks.pop(old, None)
                manager = StreamableHTTPSessionManager(
                    app=get_server(),
                    security_settings=sdk_security_settings(),
                    max_request_body_size=MAX_BODY_BYTES,
                    # A POST's answer is one JSON body, not an SSE stream of its own (both are in the
                    # spec; clients must accept either). Per-request streams cost about half the server
                    # CPU of a tool call. Nothing is lost: what the server starts on its own (inbound
                    # messages, sampling) travels on the session's GET stream, never on a request's.
                    json_response=True,
                )
                started = asyncio.Event()
                stop = asyncio.Event()

                async def run_manager() -> None:
                    async with manager.run():
                        started.set()
                        await stop.wait()

                task = loop.create_task(run_manager())
                await started.wait()
                self._managers[loop] = manager

                async def stop_manager() -> None:
                    stop.set()
                    await task

                on_shutdown(stop_manager)
                # Keep a reference so the task is not garbage-collected while it runs.
                self._manager_tasks[loop] = task
        return manager


# --- helpers -------------------------------------------------------------------------------------


async def _authenticate(scope: Scope, headers: dict[str, str], token: str | None) -> Principal:
    client = scope.get("client")
    address = client_address_from(client[0] if client else None, headers.get("x-forwarded-for"))
    return await run_blocking(authenticate_token, token, client_address=address)


def _pin(binding: Binding, token: str | None) -> Pin:
    return Pin(binding, token or "", (token or "").encode(), time.monotonic(), loop=asyncio.get_running_loop())


async def _check_pin(scope: Scope, headers: dict[str, str], pin: Pin, *, token: str | None, required: bool = False) -> None:
    """A request for a pinned session must carry no credentials (SSE only) or the same principal's."""
    if pin.revoked:
        raise ApiError(401, "invalid_token", "The token of this MCP session has been revoked.")
    if token is None:
        if required:
            raise ApiError(401, "missing_token", "Send Authorization: Bearer <token>.")
    elif not hmac.compare_digest(token.encode(), pin.token_bytes):
        principal = await _authenticate(scope, headers, token)
        if principal.key != pin.binding.principal.key:
            raise ApiError(403, "forbidden", "This MCP session belongs to another identity.")
    if time.monotonic() - pin.verified_at > PIN_RECHECK_SECONDS:
        # Raises 401 invalid_token once the session's token has been revoked.
        await _authenticate(scope, headers, pin.token)
        pin.verified_at = time.monotonic()


async def resolve_session_agent(principal: Principal, agent_id: str | None) -> str | None:
    """The agent a session registers for: an agent token's own; an admin token's named agent."""
    if principal.role is Role.AGENT:
        if agent_id and agent_id != principal.agent_id:
            raise ApiError(403, "forbidden", "An agent token connects only as its own agent.", field="agentId")
        return principal.agent_id
    if not agent_id:
        return None
    agent = await run_blocking(agent_get_for_principal, principal, agent_id)
    return str(agent.pk)


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    if not raw:
        return {}
    return {key: values[0] for key, values in parse_qs(raw).items() if values}


def _session_id_from_endpoint_event(body: bytes) -> str | None:
    marker = b"session_id="
    start = body.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = start
    while end < len(body) and chr(body[end]) in "0123456789abcdef":
        end += 1
    return body[start:end].decode() or None


async def send_error(send: Send, error: ApiError) -> None:
    payload = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(key.lower().encode(), value.encode()) for key, value in error.headers().items()]
    if error.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mcp"'))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
