"""The waiting queue: events nobody could deliver wait for `waiting-messages`, and `comms_wait_for_message`
long-polls for them (contract §6.3, §7).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone

from channels_app.delivery.claims import VIA_FETCH, VIA_WAIT, erased_fields, free_q
from channels_app.models import Message
from channels_app.selectors import waiting_message_object

# Cross-process waiters poll the database this often; same-process waiters are woken at once.
WAITER_POLL_SECONDS = 0.25
WAIT_DEFAULT_SECONDS = 25
WAIT_MAX_SECONDS = 60


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


def wake_local_waiters(agent_id: str) -> None:
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
