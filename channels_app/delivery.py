"""Deliver each inbound event to its agent exactly once (contract §6.3, §8).

Order: a pending `comms_wait_for_message` call of the agent → a push to its live MCP session (any
process, through orchestrator.agent_registry) → a signed POST to its callbackUrl (channels_app.callbacks,
retried by every server process and by the `deliver_callbacks` worker) → it waits for `waiting-messages`.

Every path first *claims* the row with a conditional UPDATE, so two processes (or two paths in one
process) never deliver the same message twice. The claim is a lease: `delivered_via` names the path
and `next_callback_at` says until when. A path that fails releases the row; a process that dies
mid-delivery lets its lease expire and the row becomes free again (delivered at least once, never
lost). Success sets `delivered_at` - only after the event was actually sent.

A freshly stored event gets its route before its transaction (delivery_route): for an agent whose
session lives in this process the row is *inserted* claimed, so after the commit the notification
goes out with no query before it; in a single process, one for an agent with a callbackUrl and no
session is inserted claimed for the callback; for an agent nobody can reach now (no waiter, no session,
no callback, a single process) nothing runs at all. Pushes and callbacks record their delivery in batches.

Row states (for undelivered rows, `delivered_at IS NULL`):
  free       delivered_via = ''                (next_callback_at, if set, is when the next callback is due)
  in flight  delivered_via = '<path>'          until next_callback_at; after that it counts as free
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import AgentStatus
from channels_app.models import Direction, Message, MessageKind
from channels_app.selectors import waiting_message_object
from orchestrator import sql
from orchestrator.workers import calling_event_loop, run_blocking

logger = logging.getLogger(__name__)
T = TypeVar("T")

VIA_WAIT = "wait"
VIA_MCP = "mcp"
VIA_CALLBACK = "callback"
VIA_FETCH = "fetch"

# How long a claim holds a row; longer than any single delivery attempt takes.
LEASE_SECONDS = 60
# A row stored for an agent with a callbackUrl whose route is not decided in this process (several
# processes) is due for a callback this long after it is stored, unless another path takes it first.
CALLBACK_GRACE_SECONDS = 15
# Cross-process waiters poll the database this often; same-process waiters are woken at once.
WAITER_POLL_SECONDS = 0.25
WAIT_DEFAULT_SECONDS = 25
WAIT_MAX_SECONDS = 60


# --- claims ---------------------------------------------------------------------------------------


def waiting_q() -> Q:
    """Events for the agent that it has not received: inbound messages and the agent-facing kinds
    (delivery failures, call outcomes, voicemails). Outbound messages and voice prompts never wait."""
    return (
        Q(delivered_at__isnull=True)
        & (Q(direction=Direction.INBOUND) | ~Q(kind=MessageKind.MESSAGE))
        & ~Q(kind=MessageKind.VOICE_PROMPT)
    )


def free_q(now: datetime) -> Q:
    return waiting_q() & (Q(delivered_via="") | Q(next_callback_at__lt=now))


def erased_fields() -> dict[str, Any]:
    """Retention 0 (the default) erases the body at the moment of delivery; metadata stays."""
    if settings.MESSAGE_BODY_RETENTION_DAYS == 0:
        return {"body": None, "html": None}
    return {}


def message_claim(*, message_id: str, via: str) -> bool:
    now = timezone.now()
    return (
        Message.objects.filter(free_q(now), pk=message_id).update(
            delivered_via=via, next_callback_at=now + timedelta(seconds=LEASE_SECONDS)
        )
        == 1
    )


def message_mark_delivered(*, message_id: str, via: str) -> bool:
    """Record the delivery by the path that holds the claim."""
    return (
        Message.objects.filter(pk=message_id, delivered_at__isnull=True, delivered_via=via).update(
            delivered_at=timezone.now(), next_callback_at=None, **erased_fields()
        )
        == 1
    )


def message_release(*, message_id: str, via: str, next_callback_at: datetime | None = None) -> None:
    Message.objects.filter(pk=message_id, delivered_at__isnull=True, delivered_via=via).update(
        delivered_via="", next_callback_at=next_callback_at
    )


def messages_take_waiting(
    *, agent_id: str, channel: str | None = None, limit: int = 50, via: str = VIA_FETCH
) -> list[dict[str, Any]]:
    """Take (deliver and acknowledge) up to `limit` waiting events of the agent, oldest first.

    The one way to read waiting messages: `waiting-messages` and `comms_wait_for_message` both use it.
    """
    now = timezone.now()
    candidates = Message.objects.filter(free_q(now), agent_id=agent_id)
    if channel:
        candidates = candidates.filter(channel=channel)
    taken: list[dict[str, Any]] = []
    for message in candidates.order_by("created_at")[: max(1, limit)]:
        # Per-row conditional update: whoever flips delivered_at owns the row; a row another
        # process took between our read and this update is skipped.
        updated = Message.objects.filter(free_q(now), pk=message.pk).update(
            delivered_at=now, delivered_via=via, next_callback_at=None, **erased_fields()
        )
        if updated:
            taken.append(waiting_message_object(message))
    return taken


# --- pending waiters (comms_wait_for_message) -----------------------------------------------------

_local_waiters: dict[str, set[threading.Event]] = {}
_local_waiters_lock = threading.Lock()


def _waiter_key(agent_id: str, channel: str | None) -> str:
    return f"comms:waiters:{agent_id}:{channel or '*'}"


_waiter_counts: BaseCache | None = None
# Whether _waiter_counts lives in this process only (LocMemCache, the single-process setup).
_waiter_counts_local = False
# Waiter registrations of this process not yet removed: raised before a count is written to the
# cache, lowered after it is taken away, so a count in the cache implies this is above zero.
_registered_waiters = 0


def _waiters() -> BaseCache:
    """The cache holding the waiter counts: one instance for the process.

    `django.core.cache.cache` keeps its instance in a context-local; the worker pool runs every call
    in a copy of the caller's context, so each request got a new instance, and with Redis a new
    connection (connect, handshake, client setup: about 1 ms of CPU per webhook). The backends'
    clients are thread-safe (redis-py's connection pool; LocMemCache's lock and shared storage).
    """
    global _waiter_counts, _waiter_counts_local
    if _waiter_counts is None:
        counts = caches.create_connection(DEFAULT_CACHE_ALIAS)
        _waiter_counts_local = isinstance(counts, LocMemCache)
        _waiter_counts = counts
    return _waiter_counts


def waiter_pending(agent_id: str, channel: str) -> bool:
    """Whether a comms_wait_for_message call of the agent is waiting for `channel`.

    Presence lives in the cache, which is Redis (shared) whenever several processes run.
    """
    counts = _waiters()
    if _waiter_counts_local and not _registered_waiters:
        # Only this process writes a local cache, and it has no waiter: nothing to read (a cache
        # read was a tenth of an inbound webhook's own work).
        return False
    keys = [_waiter_key(agent_id, None), _waiter_key(agent_id, channel)]
    return any((count or 0) > 0 for count in counts.get_many(keys).values())


def _wake_local_waiters(agent_id: str) -> None:
    with _local_waiters_lock:
        for event in _local_waiters.get(agent_id, ()):
            event.set()


def _waiter_add(key: str, ttl: int) -> None:
    global _registered_waiters
    with _local_waiters_lock:
        _registered_waiters += 1
    counts = _waiters()
    counts.add(key, 0, ttl)
    try:
        counts.incr(key)
    except ValueError:
        counts.set(key, 1, ttl)
    counts.touch(key, ttl)


def _waiter_remove(key: str) -> None:
    global _registered_waiters
    try:
        if _waiters().decr(key) <= 0:
            _waiters().delete(key)
    except ValueError:
        pass
    finally:
        with _local_waiters_lock:
            _registered_waiters -= 1


def messages_wait(
    *, agent_id: str, channel: str | None = None, timeout: float = WAIT_DEFAULT_SECONDS, limit: int = 50
) -> list[dict[str, Any]]:
    """Long poll: return (and acknowledge) the agent's next waiting events, or [] after `timeout` seconds."""
    deadline = time.monotonic() + max(0.0, min(timeout, WAIT_MAX_SECONDS))
    key = _waiter_key(agent_id, channel)
    event = threading.Event()
    with _local_waiters_lock:
        _local_waiters.setdefault(agent_id, set()).add(event)
    _waiter_add(key, int(timeout) + 5)
    try:
        while True:
            event.clear()
            taken = messages_take_waiting(agent_id=agent_id, channel=channel, limit=limit, via=VIA_WAIT)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            event.wait(min(WAITER_POLL_SECONDS, remaining))
    finally:
        _waiter_remove(key)
        with _local_waiters_lock:
            waiters = _local_waiters.get(agent_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del _local_waiters[agent_id]


# --- the live session ----------------------------------------------------------------------------

def _db(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`fn` (the ORM) on the worker pool, connection upkeep included: never on the event loop."""

    async def call(*args: Any, **kwargs: Any) -> T:
        return await run_blocking(fn, *args, **kwargs)

    return call


def _claim_and_load(message_id: str) -> Message | None:
    """Claim the row for a push and read it in the same pool hop; None when someone else has it."""
    if not message_claim(message_id=message_id, via=VIA_MCP):
        return None
    return Message.objects.filter(pk=message_id).first()


async def _push_claimed(message: Message) -> bool:
    from orchestrator.agent_registry import notify_agent

    sent = False
    try:
        sent = await notify_agent(message.agent_id, waiting_message_object(message))
    except Exception:
        logger.exception("Pushing %s to its agent failed", message.pk)
    if sent:
        await _mark_pushed(message.pk)
    else:
        await _db(message_release)(message_id=message.pk, via=VIA_MCP)
    return sent


# Every push ends in this statement (plain SQL, orchestrator.sql): built by the ORM on each call it cost
# more CPU than the rest of the push. Longer batches go in several statements.
_MARK_BATCH_SIZE = 64


def messages_mark_pushed(*, message_ids: list[str]) -> int:
    """message_mark_delivered for several pushed rows in one write transaction."""
    erase_bodies = bool(erased_fields())
    now = timezone.now()

    def mark(batch: list[str]) -> int:
        return sql.messages_mark_pushed(ids=batch, now=now, via=VIA_MCP, erase_bodies=erase_bodies)

    largest = _MARK_BATCH_SIZE
    if len(message_ids) <= largest:
        return mark(message_ids) if message_ids else 0
    with transaction.atomic():
        return sum(mark(message_ids[start : start + largest]) for start in range(0, len(message_ids), largest))


# Per event loop: the pushed rows waiting to be marked delivered while a mark is being written.
_marks_pending: dict[asyncio.AbstractEventLoop, list[str]] = {}


async def _mark_pushed(message_id: str) -> None:
    """Record a push. Pushes that finish while a mark is being written are recorded together next:
    under load that is one pool hop and one write transaction for many rows instead of one each
    (each write waits for SQLite's one write lock). A row whose mark is lost (the process died) keeps
    its lease until it expires and is then pushed again: delivered at least once, never lost.

    The caller waits for its own mark only; marks that arrived meanwhile are written by a task of
    their own, so a caller that pushes in a loop (the backlog on connect) is never held up by others.
    """
    loop = asyncio.get_running_loop()
    pending = _marks_pending.get(loop)
    if pending is not None:
        pending.append(message_id)  # a mark is being written: ours goes with the next one
        return
    pending = _marks_pending[loop] = [message_id]
    handed_on = False
    try:
        await _write_marks(pending)
        if pending:
            _spawn(lambda: _write_all_marks(loop, pending))
            handed_on = True
    finally:
        if not handed_on:
            del _marks_pending[loop]


# A mark that cannot be written means a second push of the same message once its lease expires, so a
# transient refusal (a lock, a dropped connection) is tried again before giving up.
MARK_RETRY_DELAYS = (0.05, 0.2, 0.5)


async def _write_marks(pending: list[str]) -> None:
    batch = pending[:]
    pending.clear()
    for delay in (*MARK_RETRY_DELAYS, None):
        try:
            await _db(messages_mark_pushed)(message_ids=batch)
            return
        except OperationalError:
            if delay is None:
                logger.exception("Recording the delivery of %s failed; their leases will expire", batch)
                return
            logger.warning("Recording the delivery of %s failed; trying again in %.2f s", batch, delay)
            await asyncio.sleep(delay)
        except Exception:
            logger.exception("Recording the delivery of %s failed; their leases will expire", batch)
            return


async def _write_all_marks(loop: asyncio.AbstractEventLoop, pending: list[str]) -> None:
    try:
        while pending:
            await _write_marks(pending)
    finally:
        del _marks_pending[loop]


async def push_message(message_id: str) -> bool:
    """Push one event to the agent's live MCP session; True when it was sent (and so delivered)."""
    message = await _db(_claim_and_load)(message_id)
    return message is not None and await _push_claimed(message)


async def deliver_message(message_id: str) -> str:
    """Deliver a freshly stored event once; returns the path: wait | mcp | callback | waiting."""
    from orchestrator.agent_registry import local_session

    def plan() -> tuple[Message | None, str]:
        # One pool hop for the reads and, when the agent's session lives in this process, the claim:
        # every hop costs more than the queries, and this is the latency a connected agent sees.
        message = Message.objects.select_related("agent").filter(pk=message_id).first()
        if message is None or message.delivered_at is not None:
            return None, "gone"
        if waiter_pending(message.agent_id, message.channel):
            return message, VIA_WAIT
        if local_session(message.agent_id) is not None:
            return (message, VIA_MCP) if message_claim(message_id=message_id, via=VIA_MCP) else (None, "gone")
        return message, "other"

    message, step = await _db(plan)()
    if message is None:
        return step
    if step == VIA_WAIT:
        # The waiter takes it with its next poll; wake it now if it lives in this process.
        _wake_local_waiters(message.agent_id)
        return VIA_WAIT
    if step == VIA_MCP and await _push_claimed(message):
        return VIA_MCP
    return await _deliver_in_hand(message)


async def push_waiting_on_connect(agent_id: str) -> None:
    """Connect listener: after the client's `initialized`, push what waited for it, oldest first."""

    def free_ids() -> list[str]:
        return list(
            Message.objects.filter(free_q(timezone.now()), agent_id=agent_id)
            .order_by("created_at")
            .values_list("pk", flat=True)[:100]
        )

    from orchestrator.agent_registry import is_agent_connected

    while True:
        ids = await _db(free_ids)()
        if not ids:
            return
        pushed_any = False
        for message_id in ids:
            if await push_message(message_id):
                pushed_any = True
            elif not await is_agent_connected(agent_id):
                return
        if not pushed_any:
            return


def register_connect_listener() -> None:
    """Called once per process (ChannelsAppConfig.ready)."""
    try:
        from orchestrator.agent_registry import add_connect_listener
    except ImportError:  # pragma: no cover - the MCP registry is part of every build
        return
    add_connect_listener(push_waiting_on_connect)


# --- routing at store time ------------------------------------------------------------------------

# What delivery_route decides, besides VIA_WAIT and VIA_MCP:
ROUTE_FULL = "full"  # deliver_message after the commit: another process may hold the session, or a callback is due
# VIA_CALLBACK: a single process, no waiter or session, a callbackUrl: the row is inserted claimed for the POST.
ROUTE_NONE = "none"  # nobody to deliver to now: the row waits for waiting-messages or the agent's next connect


def delivery_route(*, agent_id: str, channel: str, callback_url: str) -> str:
    """How an event about to be stored will reach its agent, decided before its transaction starts.

    Deciding up front is what makes the common cases cheap: a message for an agent whose session lives
    in this process is inserted already claimed for the push (VIA_MCP), so after the commit the
    notification goes out with no further query; one for an agent nobody can reach now needs no
    delivery work at all. Only the cases that must ask the database or another process (ROUTE_FULL)
    take the general path. The checks here are in-process reads (the waiter count is a cache read,
    Redis when several processes run), so nothing waits on them inside the transaction.
    """
    from orchestrator.agent_registry import local_session

    if waiter_pending(agent_id, channel):
        return VIA_WAIT
    if local_session(agent_id) is not None:
        return VIA_MCP
    if settings.REDIS_URL:
        return ROUTE_FULL
    if callback_url:
        return VIA_CALLBACK
    return ROUTE_NONE


def claim_at_birth(route: str, *, callback_url: str = "") -> dict[str, Any]:
    """Fields that insert the row already claimed for its route's first attempt (a push, a callback).

    The same lease as message_claim: if this process dies before the attempt, the lease expires and
    the row is free again for a server's callback sweep, the worker, a waiter or the next connect
    (never lost). A row of the general path for an agent with a callbackUrl is free, with its callback
    due after CALLBACK_GRACE_SECONDS, so a sweep finds it if nothing else takes it.
    """
    now = timezone.now()
    if route == VIA_MCP:
        return {"delivered_via": VIA_MCP, "next_callback_at": now + timedelta(seconds=LEASE_SECONDS)}
    if route == VIA_CALLBACK:
        return {
            "delivered_via": VIA_CALLBACK,
            "next_callback_at": now + timedelta(seconds=LEASE_SECONDS),
            "callback_attempts": 1,
        }
    if route == ROUTE_FULL and callback_url:
        return {"next_callback_at": now + timedelta(seconds=CALLBACK_GRACE_SECONDS)}
    return {}


def deliver_stored(message: Message, route: str) -> None:
    """Hand a just-committed event to its route (use with transaction.on_commit, after delivery_route).

    `message` is the instance that was inserted: nothing is read back.
    """
    from orchestrator.agent_registry import local_session

    agent_id = message.agent_id
    if route == VIA_WAIT:
        # The waiter takes it with its next poll; wake it now if it lives in this process.
        _wake_local_waiters(agent_id)
        if waiter_pending(agent_id, message.channel):
            return
        # The waiter gave up during our transaction: deliver as if there had been none.
        route = ROUTE_FULL
    if route == ROUTE_NONE:
        if local_session(agent_id) is None:
            # A session registered after this check runs its connect listener after our commit, and
            # that listener pushes every free row: this one included.
            return
        # The agent connected between the route decision and the commit: take the general path.
        route = ROUTE_FULL
    if route == VIA_MCP:
        _run_delivery(lambda: _push_born_claimed(message), message.pk)
    elif route == VIA_CALLBACK:
        _run_delivery(lambda: _post_born_claimed(message), message.pk)
    else:
        _run_delivery(lambda: _deliver_in_hand(message), message.pk)


async def _push_born_claimed(message: Message) -> None:
    try:
        if await _push_claimed(message):
            return
        # The session went away between the insert and now; the row is free again (released).
        await _deliver_in_hand(message)
    except Exception:
        logger.exception("Delivering %s failed", message.pk)


async def _post_born_claimed(message: Message) -> None:
    from channels_app.callbacks import callback_post_stored

    try:
        await callback_post_stored(message)
    except Exception:
        # The lease runs out and the row is due again for the sweep.
        logger.exception("Delivering %s failed", message.pk)


async def _deliver_in_hand(message: Message) -> str:
    """deliver_message for the instance that was just inserted: the waiter check was made by
    delivery_route, so this asks only whether some process holds the agent's session, then the
    callback. Returns the path: mcp | callback | waiting."""
    from orchestrator.agent_registry import is_agent_connected

    try:
        if await is_agent_connected(message.agent_id):
            claimed = await _db(message_claim)(message_id=message.pk, via=VIA_MCP)
            if claimed and await _push_claimed(message):
                return VIA_MCP
        agent = message.agent
        if agent.callback_url and agent.status == AgentStatus.ACTIVE:
            from channels_app.callbacks import callback_attempt

            if await callback_attempt(message.pk, first=True):
                return VIA_CALLBACK
    except Exception:
        # The row is stored and free again: the worker, a waiter or the next connect picks it up.
        logger.exception("Delivering %s failed", message.pk)
    return "waiting"


# --- scheduling after commit ----------------------------------------------------------------------

_tasks: set[asyncio.Task[Any]] = set()
_fallback_loop: asyncio.AbstractEventLoop | None = None
_fallback_lock = threading.Lock()
# How long a caller outside the server (commands, Django's test client) waits for its delivery.
FALLBACK_WAIT_SECONDS = 30


def _spawn(coro_factory: Callable[[], Any]) -> None:
    task = asyncio.get_running_loop().create_task(coro_factory())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _loop_outside_the_server() -> asyncio.AbstractEventLoop:
    """One long-lived loop on a daemon thread for processes without a server loop, so the registry's
    per-loop resources (its Redis link) are made once, not once per message."""
    global _fallback_loop
    with _fallback_lock:
        if _fallback_loop is None or _fallback_loop.is_closed():
            loop = asyncio.new_event_loop()
            from channels_app.callbacks import without_sweeper

            # A sweep here would outlive the caller (a command, a test) and race its database teardown.
            without_sweeper(loop)
            threading.Thread(target=loop.run_forever, name="comms-delivery", daemon=True).start()
            _fallback_loop = loop
        return _fallback_loop


def schedule_delivery(message_id: str) -> None:
    """Start delivering `message_id` by the general path without holding up the caller.

    Stored events go through delivery_route/deliver_stored instead, which skip this path when they can.
    """
    _run_delivery(lambda: _deliver_logged(message_id), message_id)


def _run_delivery(start: Callable[[], Coroutine[Any, Any, object]], message_id: str) -> None:
    """Run a delivery coroutine without holding up the webhook's 200.

    Under the ASGI server it runs as a task on the server's event loop, where the MCP sessions live.
    Elsewhere (management commands, Django's test client) it runs on a background loop and the caller
    waits for it, so a command that stores a message has delivered it when it returns.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        _spawn(start)
        return
    # Work the server's loop handed to orchestrator.workers knows that loop; anything else (a command,
    # the test client, a thread of its own) delivers on the loop outside the server.
    main_loop = calling_event_loop()
    if main_loop is not None and main_loop.is_running():
        # A fresh context: the request's ThreadSensitiveContext must not leak into a task that outlives it.
        main_loop.call_soon_threadsafe(_spawn, start, context=contextvars.Context())
        return
    future = asyncio.run_coroutine_threadsafe(_outside_the_server(start), _loop_outside_the_server())
    try:
        future.result(timeout=FALLBACK_WAIT_SECONDS)
    except TimeoutError:
        logger.warning("Delivery of %s still running after %d s; continuing", message_id, FALLBACK_WAIT_SECONDS)


async def _outside_the_server(start: Callable[[], Coroutine[Any, Any, object]]) -> None:
    from orchestrator import agent_registry

    try:
        await start()
    finally:
        # The registry keeps a channel-layer listener per event loop. Outside a server that listener
        # would outlive the delivery and compete with a server loop of the same process (tests) for
        # the one channel layer, so it is closed after each delivery; such deliveries are rare.
        await agent_registry.shutdown()


async def _deliver_logged(message_id: str) -> None:
    try:
        await deliver_message(message_id)
    except Exception:
        # The row is stored and free again: the worker, a waiter or the next connect picks it up.
        logger.exception("Delivering %s failed", message_id)


# --- retention ------------------------------------------------------------------------------------


def message_bodies_purge(*, now: datetime | None = None) -> int:
    """Erase bodies of delivered inbound events older than MESSAGE_BODY_RETENTION_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.MESSAGE_BODY_RETENTION_DAYS)
    return (
        Message.objects.filter(delivered_at__isnull=False, delivered_at__lte=cutoff)
        .filter(Q(body__isnull=False) | Q(html__isnull=False))
        .update(body=None, html=None)
    )
