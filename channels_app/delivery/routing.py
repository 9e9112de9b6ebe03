"""Routing: how an inbound event will reach its agent, decided before it is stored, and the hand-off after
its commit (contract §6.3: a pending wait, else the live session, else the callback, else it waits).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from agents.models import AgentStatus
from channels_app.delivery.claims import (
    CALLBACK_GRACE_SECONDS,
    LEASE_SECONDS,
    VIA_CALLBACK,
    VIA_MCP,
    VIA_WAIT,
    message_claim,
    pooled,
)
from channels_app.delivery.live_push import push_claimed, spawn
from channels_app.delivery.waiting import waiter_pending, wake_local_waiters
from channels_app.models import Message
from orchestrator.workers import call_soon_after_call, calling_event_loop

logger = logging.getLogger(__name__)

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
        wake_local_waiters(agent_id)
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
        if await push_claimed(message):
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
            claimed = await pooled(message_claim)(message_id=message.pk, via=VIA_MCP)
            if claimed and await push_claimed(message):
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

    message, step = await pooled(plan)()
    if message is None:
        return step
    if step == VIA_WAIT:
        # The waiter takes it with its next poll; wake it now if it lives in this process.
        wake_local_waiters(message.agent_id)
        return VIA_WAIT
    if step == VIA_MCP and await push_claimed(message):
        return VIA_MCP
    return await _deliver_in_hand(message)


# --- scheduling after commit ----------------------------------------------------------------------

_fallback_loop: asyncio.AbstractEventLoop | None = None
_fallback_lock = threading.Lock()
# How long a caller outside the server (commands, Django's test client) waits for its delivery.
FALLBACK_WAIT_SECONDS = 30


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
        spawn(start)
        return
    # Work the server's loop handed to orchestrator.workers knows that loop; anything else (a command,
    # the test client, a thread of its own) delivers on the loop outside the server. Within a pool call
    # (a webhook) the delivery goes back to the loop with the call's result: one wake-up of the loop's
    # thread for both, and the call ends right after its commit.
    if call_soon_after_call(spawn, start):
        return
    main_loop = calling_event_loop()
    if main_loop is not None and main_loop.is_running():
        # A fresh context: the request's ThreadSensitiveContext must not leak into a task that outlives it.
        main_loop.call_soon_threadsafe(spawn, start, context=contextvars.Context())
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
