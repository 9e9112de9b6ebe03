"""Which live MCP session reaches which agent, and how to reach it from any process (contract §5).

Sessions live in the process that holds their socket; that process registers them here after the
client's `notifications/initialized`. The newest session of an agent wins, and closing an older one
never unregisters a newer one.

With `REDIS_URL` the owning process also records its channel-layer channel name under the agent in
Redis. Another process that wants to notify or sample that agent sends the request straight to that
channel (not a group broadcast) with its own channel as the reply address, and waits with a timeout.
Each process runs one listener task on its own channel, started lazily on first use (daphne sends no
ASGI lifespan). Without Redis everything works within the one process.

Ending sessions: when a token is revoked or an agent deprovisioned or suspended, `sessions_end` (sync,
any thread) ends the matching sessions in this process at once and, with `REDIS_URL`, in every other
process through a channel-layer group every link joins. A push that reaches a session is checked
against the database afterwards (`_still_authorized`): one whose token stopped being valid before the
check never counts as delivered, which covers the moment between a revocation's commit and the end
request reaching the session's process.

Public interface (other modules code against exactly these names):
`notify_agent`, `sample_agent`, `is_agent_connected`, `add_connect_listener`, `AgentNotConnected`,
`sessions_end`, `add_end_listener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

from orchestrator import metrics

if TYPE_CHECKING:
    from mcp.server.session import ServerSession
    from redis.asyncio import Redis

    from agents.principals import Principal

logger = logging.getLogger(__name__)

T = TypeVar("T")

INBOUND_LOGGER = "comms.inbound"
# The SDK warns on every send_log_message that logging is deprecated as of protocol 2026-07-28. We push only
# to handshake-era sessions (2024-11-05 … 2025-11-25), where notifications/message is how the contract
# (§5) delivers inbound messages, so the warning says nothing an operator can act on.
warnings.filterwarnings("ignore", message="The logging capability is deprecated", module=__name__)
# How long a forwarded request waits for the owning process to acknowledge it. A process that
# does not answer within this is gone (crashed, restarted); its stale record is dropped.
FORWARD_ACK_TIMEOUT = 2.0
# Owner records expire unless their process refreshes them, so a crashed process's agents read as
# disconnected after at most this long even when nobody tries to reach them.
OWNER_TTL_SECONDS = 90
OWNER_REFRESH_SECONDS = 30
OWNER_KEY_PREFIX = "comms:mcp:agent-owner:"
OWNER_CACHE_SECONDS = 2.0
# The channel-layer group every process's link joins, to hear which sessions must end.
END_GROUP = "comms.mcp.session-ends"


class AgentNotConnected(Exception):
    """The agent has no live, initialized MCP session in any process."""


class SamplingNotSupported(AgentNotConnected):
    """The agent is connected but its client did not declare the `sampling` capability.

    A subclass of AgentNotConnected so callers that only know that name fall back safely; callers
    that can do better (a `voice_prompt` notification instead of a sampled answer) catch it first.
    """


@dataclass(eq=False)
class LiveSession:
    """One initialized MCP session that can receive server-initiated messages."""

    agent_id: str
    # The SDK's session object of the `notifications/initialized` request: its notifications and requests
    # without a related request id go on the connection's standalone channel, which outlives the request.
    session: ServerSession
    transport: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Who opened the session: pushes count as delivered only while its token is still valid.
    principal: Principal | None = None

    @property
    def can_sample(self) -> bool:
        from mcp_types import ClientCapabilities, SamplingCapability

        return self.session.check_client_capability(ClientCapabilities(sampling=SamplingCapability()))


ConnectListener = Callable[[str], Awaitable[None]]

# The process-local half of the registry: the session objects themselves cannot leave the process.
# What other processes must see (who owns an agent) lives in Redis, see _Link.
_sessions: dict[str, LiveSession] = {}
_connect_listeners: list[ConnectListener] = []
_background: set[asyncio.Task[Any]] = set()


def add_connect_listener(callback: ConnectListener) -> None:
    """Call `callback(agent_id)` in the owning process each time an agent's session is registered."""
    if callback not in _connect_listeners:
        _connect_listeners.append(callback)


def remove_connect_listener(callback: ConnectListener) -> None:
    with contextlib.suppress(ValueError):
        _connect_listeners.remove(callback)


# --- registration (called by orchestrator.mcp_server) -------------------------------------------


async def register_session(session: LiveSession) -> None:
    """Make `session` the one that reaches its agent (the newest wins), then tell the listeners."""
    _sessions[session.agent_id] = session
    metrics.ACTIVE_AGENTS.set(len(_sessions))
    link = await _link()
    if link is not None:
        await link.claim(session)
    for callback in list(_connect_listeners):
        _spawn(_run_connect_listener(callback, session.agent_id))


async def unregister_session(session: LiveSession) -> None:
    """Forget `session`, unless a newer session of the same agent has replaced it."""
    if _sessions.get(session.agent_id) is session:
        del _sessions[session.agent_id]
        metrics.ACTIVE_AGENTS.set(len(_sessions))
    link = _current_link()
    if link is not None:
        await link.release(session)


def local_session(agent_id: str) -> LiveSession | None:
    return _sessions.get(agent_id)


# --- the public service functions ----------------------------------------------------------------


async def notify_agent(agent_id: str, event: dict[str, Any]) -> bool:
    """Push `event` as a `comms.inbound` log notification to the agent's live session; False if none."""
    session = _sessions.get(agent_id)
    if session is not None:
        return await _on_session_loop(session, _push_notification(session, event))
    link = await _link()
    if link is None:
        return False
    reply = await link.forward(agent_id, {"op": "notify", "event": event}, timeout=FORWARD_ACK_TIMEOUT)
    return bool(reply.get("ok"))


async def sample_agent(
    agent_id: str,
    messages: list[dict[str, Any]],
    *,
    timeout: float,
    system_prompt: str | None = None,
    max_tokens: int = 300,
) -> str:
    """Ask the agent's client to sample (`sampling/createMessage`) and return the text it answers.

    Raises AgentNotConnected quickly when no session reaches the agent (SamplingNotSupported when
    its client cannot sample) and asyncio.TimeoutError when the client does not answer in time.
    """
    session = _sessions.get(agent_id)
    if session is not None:
        return await _on_session_loop(
            session, _sample_local(session, messages, timeout=timeout, system_prompt=system_prompt, max_tokens=max_tokens)
        )
    link = await _link()
    if link is None:
        raise AgentNotConnected(agent_id)
    request = {
        "op": "sample",
        "messages": messages,
        "timeout": timeout,
        "systemPrompt": system_prompt,
        "maxTokens": max_tokens,
    }
    reply = await link.forward(agent_id, request, timeout=timeout + FORWARD_ACK_TIMEOUT)
    if reply.get("ok"):
        return str(reply["text"])
    raise _error_from_reply(agent_id, reply)


async def is_agent_connected(agent_id: str) -> bool:
    """Whether some process holds a live, initialized session for the agent."""
    if agent_id in _sessions:
        return True
    link = await _link()
    if link is None:
        return False
    reply = await link.forward(agent_id, {"op": "connected"}, timeout=FORWARD_ACK_TIMEOUT)
    return bool(reply.get("ok"))


def is_agent_connected_sync(agent_id: str) -> bool:
    """`is_agent_connected` for synchronous callers (REST views, commands): a presence read, no forwarding.

    Asking the owning process needs a channel-layer listener on the caller's event loop; a sync caller
    outside the server would have to make a throwaway loop for it, and channels_redis serves one
    receiving loop per process. The owner record is refreshed every OWNER_REFRESH_SECONDS and expires
    after OWNER_TTL_SECONDS, so a crashed process's agents read as connected for at most that long.
    """
    if agent_id in _sessions:
        return True
    if not settings.REDIS_URL:
        return False
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.exists(OWNER_KEY_PREFIX + agent_id))
    finally:
        client.close()


def connected_agent_ids_sync(agent_ids: list[str]) -> set[str]:
    """`is_agent_connected_sync` for many agents at once (the admin's agent list): one Redis round trip."""
    connected = {agent_id for agent_id in agent_ids if agent_id in _sessions}
    elsewhere = [agent_id for agent_id in agent_ids if agent_id not in connected]
    if not elsewhere or not settings.REDIS_URL:
        return connected
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipeline:
            for agent_id in elsewhere:
                pipeline.exists(OWNER_KEY_PREFIX + agent_id)
            answers = pipeline.execute()
    finally:
        client.close()
    return connected | {agent_id for agent_id, exists in zip(elsewhere, answers, strict=True) if exists}


# --- ending sessions (revoked tokens, deprovisioned or suspended agents) --------------------------

# A selector names the sessions to end, in a form that travels through the channel layer:
# {"agentId": id}: every session of the agent (its own tokens', and admin sessions registered for it);
# {"tokenKind": "agent"|"org", "tokenIds": [ids]}: every session opened with one of those tokens.
Selector = dict[str, Any]
EndListener = Callable[[Selector], None]
_end_listeners: list[EndListener] = []
# Event loops that serve MCP sessions in this process (the gate records them); ends run on each.
_serving_loops: set[asyncio.AbstractEventLoop] = set()


def add_end_listener(callback: EndListener) -> None:
    """Call `callback(selector)` on each serving event loop when sessions must end (the transport gate)."""
    if callback not in _end_listeners:
        _end_listeners.append(callback)


async def serve_here() -> None:
    """Called by the gate on each request: this loop serves MCP sessions, so it hears every end request
    (with Redis, through this loop's link, created now if it was not)."""
    loop = asyncio.get_running_loop()
    if loop in _serving_loops:
        return
    for old in [old for old in _serving_loops if old.is_closed()]:
        _serving_loops.discard(old)
    _serving_loops.add(loop)
    await _link()


def session_matches(selector: Selector, principal: Principal, agent_id: str | None) -> bool:
    from agents.principals import Role

    if "agentId" in selector:
        return selector["agentId"] in (principal.agent_id, agent_id)
    role = Role.AGENT if selector.get("tokenKind") == "agent" else Role.ORG_ADMIN
    return principal.role is role and principal.token_id in selector.get("tokenIds", ())


def session_end_selector(session: LiveSession) -> Selector:
    principal = session.principal
    if principal is None or principal.token_id is None:
        return {"agentId": session.agent_id}
    from agents.principals import Role

    return {"tokenKind": "agent" if principal.role is Role.AGENT else "org", "tokenIds": [principal.token_id]}


def end_sessions_here(selector: Selector) -> None:
    """On a serving loop: forget the matching sessions (no more pushes) and have the gate close them."""
    loop = asyncio.get_running_loop()
    for session in list(_sessions.values()):
        # Each serving loop ends its own sessions (their streams and Redis link belong to it).
        if session.loop is not loop:
            continue
        if session.principal is not None and session_matches(selector, session.principal, session.agent_id):
            del _sessions[session.agent_id]
            link = _links.get(loop)
            if link is not None:
                _spawn(link.release(session))
    metrics.ACTIVE_AGENTS.set(len(_sessions))
    for callback in list(_end_listeners):
        try:
            callback(selector)
        except Exception:
            logger.exception("Ending MCP sessions for %s failed", selector)


def sessions_end(selector: Selector) -> None:
    """End the matching sessions in every process: here at once, elsewhere through the channel layer.

    Synchronous, for services (call it after the revocation commits: `transaction.on_commit`).
    """
    for loop in list(_serving_loops):
        if not loop.is_closed():
            loop.call_soon_threadsafe(end_sessions_here, selector)
    if settings.REDIS_URL:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is not None:
            try:
                async_to_sync(layer.group_send)(END_GROUP, {"type": "mcp.end", "selector": selector})
            except Exception:
                # The post-push check still keeps anything from counting as delivered to those sessions.
                logger.exception("Could not tell the other processes to end MCP sessions for %s", selector)


# --- local delivery ------------------------------------------------------------------------------


async def _push_notification(session: LiveSession, event: dict[str, Any]) -> bool:
    if _sessions.get(session.agent_id) is not session:
        return False
    # Logging is gone at 2026-07-28; we only register handshake-era sessions, where notifications/message
    # is the contract's delivery channel and send_log_message sends on the connection's standalone channel.
    await session.session.send_log_message(level="info", data=event, logger=INBOUND_LOGGER)
    if not await _still_authorized(session):
        # Revoked (or the agent stopped) before this push went out, and the end request has not reached
        # us yet: the push does not count, the message stays for the agent's valid token.
        end_sessions_here(session_end_selector(session))
        return False
    return True


async def _still_authorized(session: LiveSession) -> bool:
    """Checked after the push: a revocation committed before this read is seen, one after it came later."""
    if session.principal is None:
        return True
    from agents.selectors import principal_session_valid
    from orchestrator.workers import run_blocking

    return await run_blocking(principal_session_valid, session.principal, agent_id=session.agent_id)


async def _sample_local(
    session: LiveSession,
    messages: list[dict[str, Any]],
    *,
    timeout: float,
    system_prompt: str | None,
    max_tokens: int,
) -> str:
    from mcp_types import (
        CreateMessageRequest,
        CreateMessageRequestParams,
        CreateMessageResult,
        SamplingMessage,
        TextContent,
    )

    if not session.can_sample:
        raise SamplingNotSupported(session.agent_id)
    request = CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[
                SamplingMessage(role=m["role"], content=TextContent(type="text", text=str(m["content"])))
                for m in messages
            ],
            system_prompt=system_prompt,
            max_tokens=max_tokens,
        )
    )
    result = await asyncio.wait_for(session.session.send_request(request, CreateMessageResult), timeout=timeout)
    content = result.content
    blocks = content if isinstance(content, list) else [content]
    return "".join(getattr(block, "text", "") for block in blocks)


async def _on_session_loop(session: LiveSession, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the event loop that owns the session's streams (they are not thread-safe)."""
    running = asyncio.get_running_loop()
    if session.loop is running:
        return await coro
    if session.loop.is_closed():
        coro.close()
        raise AgentNotConnected(session.agent_id)
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, session.loop))


async def _run_connect_listener(callback: ConnectListener, agent_id: str) -> None:
    try:
        await callback(agent_id)
    except Exception:
        logger.exception("Connect listener %r failed for agent %s", callback, agent_id)


def _spawn(coro: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _error_from_reply(agent_id: str, reply: dict[str, Any]) -> Exception:
    error = reply.get("error")
    if error == "timeout":
        return TimeoutError(f"agent {agent_id} did not answer in time")
    if error == "sampling_not_supported":
        return SamplingNotSupported(agent_id)
    if error == "not_connected":
        return AgentNotConnected(agent_id)
    return RuntimeError(f"sampling agent {agent_id} failed: {reply.get('message', error)}")


# --- cross-process forwarding (REDIS_URL) ---------------------------------------------------------


class _Link:
    """This process's presence in the channel layer: one channel, one listener task, one Redis client.

    Bound to the event loop that created it; a new loop (tests, `async_to_sync` in a worker) gets
    a new link. Requests: {"type": "mcp.request", "id", "reply", "agentId", "op", ...}; the owner
    answers {"type": "mcp.reply", "id", "ack": true} at once and then {"type": "mcp.reply", "id",
    "ok", ...} with the outcome.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, layer: Any, channel: str, redis: Redis) -> None:
        self.loop = loop
        self.layer = layer
        self.channel = channel
        self.redis = redis
        self.pending: dict[str, _Pending] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.claimed: dict[str, str] = {}
        self.owner_cache: dict[str, tuple[str, float]] = {}

    def start(self) -> None:
        for coro in (self._join_end_group(), self._listen(), self._refresh()):
            task = self.loop.create_task(coro)
            self.tasks.add(task)

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def stop_and_wait(self, *, timeout: float = 5.0) -> None:
        """Cancel the listener and refresher and wait until they have ended.

        The listener sits in channels_redis's receive(), which loops on empty BZPOPMIN reads; rarely
        (about once in ten test runs) a cancellation landing there is swallowed and the task reads on,
        which would keep the closing event loop, and with it the server's shutdown, waiting for ever.
        A cancellation that was swallowed is not repeated by asyncio, so ask again until the tasks end.
        """
        self.stop()
        pending = set(self.tasks)
        deadline = self.loop.time() + timeout
        while pending and self.loop.time() < deadline:
            _, pending = await asyncio.wait(pending, timeout=0.2)
            for task in pending:
                task.cancel()

    # registry records

    def _record(self, session: LiveSession) -> str:
        return json.dumps({"channel": self.channel, "session": session.key})

    async def claim(self, session: LiveSession) -> None:
        value = self._record(session)
        self.claimed[session.agent_id] = value
        previous = await self.redis.set(OWNER_KEY_PREFIX + session.agent_id, value, ex=OWNER_TTL_SECONDS, get=True)
        owner = _parse_record(previous) if isinstance(previous, str | bytes) else None
        if owner and owner["channel"] != self.channel:
            # The older session lives in another process: tell it that it no longer reaches the agent.
            with contextlib.suppress(Exception):
                await self.layer.send(
                    owner["channel"],
                    {"type": "mcp.superseded", "agentId": session.agent_id, "session": owner["session"]},
                )

    async def release(self, session: LiveSession) -> None:
        value = self._record(session)
        if self.claimed.get(session.agent_id) == value:
            del self.claimed[session.agent_id]
        await _compare_and_delete(self.redis, OWNER_KEY_PREFIX + session.agent_id, value)

    async def _join_end_group(self) -> None:
        with contextlib.suppress(Exception):
            await self.layer.group_add(END_GROUP, self.channel)

    # requests to other processes

    async def forward(self, agent_id: str, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        cached = self._cached_owner(agent_id)
        raw = cached if cached is not None else await self._lookup_owner(agent_id)
        if raw is None:
            return {"ok": False, "error": "not_connected"}
        reply = await self._send_to_owner(agent_id, raw, request, timeout=timeout)
        if cached is not None and reply.get("error") == "not_connected":
            # The cached owner may be stale (the agent reconnected elsewhere): look again, once.
            self.owner_cache.pop(agent_id, None)
            fresh = await self._lookup_owner(agent_id)
            if fresh is not None and fresh != cached:
                reply = await self._send_to_owner(agent_id, fresh, request, timeout=timeout)
        return reply

    def _cached_owner(self, agent_id: str) -> str | None:
        entry = self.owner_cache.get(agent_id)
        if entry is None or entry[1] < self.loop.time():
            return None
        return entry[0]

    async def _lookup_owner(self, agent_id: str) -> str | None:
        raw = await self.redis.get(OWNER_KEY_PREFIX + agent_id)
        if not isinstance(raw, str) or _parse_record(raw) is None:
            self.owner_cache.pop(agent_id, None)
            return None
        # Remembering the owner for a moment saves a Redis round trip on every call of a busy
        # voice conversation; a stale entry costs one retry (see forward).
        self.owner_cache[agent_id] = (raw, self.loop.time() + OWNER_CACHE_SECONDS)
        return raw

    async def _send_to_owner(
        self, agent_id: str, raw: str, request: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        owner = _parse_record(raw)
        assert owner is not None
        request_id = uuid.uuid4().hex
        pending = _Pending(self.loop)
        self.pending[request_id] = pending
        message = {"type": "mcp.request", "id": request_id, "reply": self.channel, "agentId": agent_id, **request}
        try:
            await self.layer.send(owner["channel"], message)
            try:
                await asyncio.wait_for(asyncio.shield(pending.acked), timeout=FORWARD_ACK_TIMEOUT)
            except TimeoutError:
                logger.warning("Process %s did not answer for agent %s; dropping its record", owner["channel"], agent_id)
                self.owner_cache.pop(agent_id, None)
                await _compare_and_delete(self.redis, OWNER_KEY_PREFIX + agent_id, raw)
                return {"ok": False, "error": "not_connected"}
            try:
                return await asyncio.wait_for(pending.done, timeout=timeout)
            except TimeoutError:
                return {"ok": False, "error": "timeout"}
        finally:
            self.pending.pop(request_id, None)

    # the listener

    async def _listen(self) -> None:
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # The channel layer (channels_redis, redis-py) can swallow a cancellation that lands
                # while a message arrives; without this check the loop would receive on and keep a
                # closing event loop waiting for ever (seen as a rare hang at loop close in tests).
                raise asyncio.CancelledError
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                if task is not None and task.cancelling():
                    # redis-py turns a cancelled read into TimeoutError; retrying would keep a closing
                    # event loop (asyncio.run under async_to_sync) waiting for this task forever.
                    raise asyncio.CancelledError from None
                logger.exception("MCP registry listener failed to receive; retrying")
                await asyncio.sleep(1)
                continue
            kind = message.get("type")
            if kind == "mcp.reply":
                pending = self.pending.get(message.get("id", ""))
                if pending is not None:
                    pending.resolve(message)
            elif kind == "mcp.request":
                _spawn(self._serve(message))
            elif kind == "mcp.end":
                end_sessions_here(message.get("selector") or {})
            elif kind == "mcp.superseded":
                session = _sessions.get(message.get("agentId", ""))
                if session is not None and session.key == message.get("session"):
                    del _sessions[session.agent_id]
                    self.claimed.pop(session.agent_id, None)
                    metrics.ACTIVE_AGENTS.set(len(_sessions))

    async def _serve(self, message: dict[str, Any]) -> None:
        reply_to = message["reply"]
        request_id = message["id"]
        # The acknowledgement travels while the work starts: it only tells the requester that this
        # process is alive, so it must not add a Redis round trip to the answer's latency.
        ack = asyncio.ensure_future(self.layer.send(reply_to, {"type": "mcp.reply", "id": request_id, "ack": True}))
        try:
            outcome = await _serve_forwarded(message)
        finally:
            await ack
        await self.layer.send(reply_to, {"type": "mcp.reply", "id": request_id, **outcome})

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(OWNER_REFRESH_SECONDS)
            # Group membership expires (group_expiry); joining again keeps this process hearing ends.
            await self._join_end_group()
            for agent_id, value in list(self.claimed.items()):
                with contextlib.suppress(Exception):
                    await _refresh_if_ours(self.redis, OWNER_KEY_PREFIX + agent_id, value, OWNER_TTL_SECONDS)


class _Pending:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.acked: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[dict[str, Any]] = loop.create_future()

    def resolve(self, message: dict[str, Any]) -> None:
        if not self.acked.done():
            self.acked.set_result(None)
        if not message.get("ack") and not self.done.done():
            self.done.set_result(message)


async def _serve_forwarded(message: dict[str, Any]) -> dict[str, Any]:
    """Answer a request another process forwarded to us, from our local sessions only."""
    agent_id = message["agentId"]
    session = _sessions.get(agent_id)
    if session is None:
        return {"ok": False, "error": "not_connected"}
    op = message.get("op")
    try:
        if op == "connected":
            return {"ok": True}
        if op == "notify":
            return {"ok": await _on_session_loop(session, _push_notification(session, message["event"]))}
        if op == "sample":
            text = await _on_session_loop(
                session,
                _sample_local(
                    session,
                    message["messages"],
                    timeout=float(message["timeout"]),
                    system_prompt=message.get("systemPrompt"),
                    max_tokens=int(message.get("maxTokens") or 300),
                ),
            )
            return {"ok": True, "text": text}
    except SamplingNotSupported:
        return {"ok": False, "error": "sampling_not_supported"}
    except AgentNotConnected:
        return {"ok": False, "error": "not_connected"}
    except TimeoutError:
        return {"ok": False, "error": "timeout"}
    except Exception as exc:
        logger.exception("Forwarded %s for agent %s failed", op, agent_id)
        return {"ok": False, "error": "error", "message": str(exc)}
    return {"ok": False, "error": "error", "message": f"unknown op {op!r}"}


_COMPARE_AND_DELETE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_REFRESH_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"


async def _compare_and_delete(redis: Redis, key: str, value: str | bytes) -> None:
    await redis.eval(_COMPARE_AND_DELETE, 1, key, value)  # type: ignore[misc]


async def _refresh_if_ours(redis: Redis, key: str, value: str, ttl: int) -> None:
    await redis.eval(_REFRESH_IF_OURS, 1, key, value, ttl)  # type: ignore[misc]


def _parse_record(raw: str | bytes) -> dict[str, str] | None:
    try:
        record = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(record, dict) or "channel" not in record or "session" not in record:
        return None
    return record


_links: dict[asyncio.AbstractEventLoop, _Link] = {}
_link_lock: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def _current_link() -> _Link | None:
    try:
        return _links.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


async def _link() -> _Link | None:
    """This loop's link to the other processes, created (with its listener) on first use."""
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    link = _links.get(loop)
    if link is not None:
        return link
    lock = _link_lock.setdefault(loop, asyncio.Lock())
    async with lock:
        link = _links.get(loop)
        if link is None:
            for old_loop in [old for old in _links if old.is_closed()]:
                _links.pop(old_loop).stop()
                _link_lock.pop(old_loop, None)
            from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
            from redis.asyncio import Redis

            # A layer instance of the link's own: channels_redis lets one event loop at a time
            # receive on an instance, and this process may run several loops (the server's, a
            # background delivery loop, tests); the shared get_channel_layer() instance then fails
            # with "Two event loops are trying to receive()".
            layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
            channel = await layer.new_channel()
            link = _Link(loop, layer, channel, Redis.from_url(settings.REDIS_URL, decode_responses=True))
            link.start()
            _links[loop] = link
    return link


async def shutdown() -> None:
    """Stop this loop's listener (tests, and the ASGI lifespan when the server sends one)."""
    link = _links.pop(asyncio.get_running_loop(), None)
    if link is not None:
        await link.stop_and_wait()
        for agent_id, value in list(link.claimed.items()):
            with contextlib.suppress(Exception):
                await _compare_and_delete(link.redis, OWNER_KEY_PREFIX + agent_id, value)
        with contextlib.suppress(Exception):
            await link.redis.aclose()
        close_pools = getattr(link.layer, "close_pools", None)
        if close_pools is not None:
            # channels_redis keeps a connection pool per event loop; this loop is about to end.
            with contextlib.suppress(Exception):
                await close_pools()
