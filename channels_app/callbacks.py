"""Signed POSTs of inbound events to an agent's callbackUrl (contract §6.3, §8), on the event loop.

One attempt: claim the row (a conditional UPDATE; a row stored for a callback is inserted claimed,
channels_app.delivery.routing.claim_at_birth), POST it with a pooled keep-alive client of the destination, then
record the outcome. Success marks the row delivered (several at once under load); a failure releases it
with the time of the next attempt: up to 8 attempts, 5 s × 3ⁿ apart (5 s … about an hour), after which
the event stays in waiting-messages. A process that dies mid-attempt leaves a lease that expires, and the
row is due again: delivered at least once, never lost, and never by two attempts at once.

Who retries: every server process sweeps for due rows (CALLBACK_SWEEP_SECONDS), so a deployment that
runs only the ASGI server retries; `manage.py deliver_callbacks` does the same from a process of its own
and also picks up events whose first attempt never ran.

Where it goes: channels_app.destinations checks the URL's addresses and the connection goes to a
checked address, with the URL's own name in the Host header and for TLS (SNI and certificate). Redirects
are never followed: a 3xx is a failed attempt, so the signed body is never sent anywhere else.
At most CALLBACK_CONCURRENCY_PER_DESTINATION attempts run at once per (scheme, host, port).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import SplitResult

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from agents.crypto import decrypt
from agents.models import Agent, AgentStatus
from channels_app.callback_http import CallbackHTTPError, DestinationPool, request_lines
from channels_app.delivery.claims import LEASE_SECONDS, VIA_CALLBACK, free_q, message_release, messages_mark_delivered
from channels_app.destinations import DestinationRefused, ResolveFailed, destination_addresses
from channels_app.models import Message
from channels_app.selectors import waiting_message_object
from orchestrator.retries import run_blocking_retried
from orchestrator.workers import run_blocking

logger = logging.getLogger(__name__)
T = TypeVar("T")

CALLBACK_MAX_ATTEMPTS = 8
CALLBACK_BACKOFF_FACTOR = 3
# The worker leaves a never-attempted row alone this long, so the in-process path (or a waiter) gets it first.
WORKER_GRACE_SECONDS = 15
# Attempts waiting for a slot of one destination; beyond it a row is left to the next sweep.
QUEUED_PER_DESTINATION = 1000
# An attempt that waited this long for its slot gives the row back instead of posting near the end of its lease.
SLOT_WAIT_LIMIT_SECONDS = LEASE_SECONDS / 2
# Clients kept per event loop: a destination idle longest is closed beyond it.
DESTINATIONS_PER_LOOP = 256
SWEEP_BATCH = 100


KEYED_MACS_KEPT = 1024


@lru_cache(maxsize=KEYED_MACS_KEPT)
def _keyed_mac(secret: str) -> hmac.HMAC:
    """An HMAC already keyed with `secret`; only ever copied. A copy signs a callback (hmac.HMAC.copy, "to
    efficiently compute the digests of strings that share a common initial substring"): the one-shot
    hmac.digest has OpenSSL set a MAC up from its name on every call, which on the event loop, between
    requests, cost 43-51 µs of CPU a callback against 21-22 µs for the copy (bench/HISTORY.md, "Signing a
    callback")."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def callback_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`X-Comms-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>` (contract §8)."""
    mac = _keyed_mac(secret).copy()
    mac.update(b"%d." % timestamp)
    mac.update(body)
    return f"t={timestamp},v1={mac.hexdigest()}"


def callback_delay_seconds(attempts: int) -> float:
    """Wait after the `attempts`-th failed attempt (CALLBACK_FIRST_RETRY_SECONDS, then ×3 each time)."""
    return float(settings.CALLBACK_FIRST_RETRY_SECONDS * CALLBACK_BACKOFF_FACTOR ** max(0, attempts - 1))


# --- rows ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackJob:
    """One claimed attempt: everything the POST needs, read before it starts."""

    message_id: str
    agent_id: str
    url: str
    secret: str
    body: bytes
    attempt: int
    claimed_at: float  # time.monotonic() of the claim


_secrets: OrderedDict[str, str] = OrderedDict()


def _secret(encrypted: str) -> str:
    # Decrypting (Fernet) cost as much as a third of the POST; the secret changes only with the agent.
    secret = _secrets.get(encrypted)
    if secret is None:
        secret = _secrets[encrypted] = decrypt(encrypted)
        while len(_secrets) > 1024:
            _secrets.popitem(last=False)
    return secret


# json.dumps with separators builds an encoder per call; this one is built once (the same bytes).
_JSON = json.JSONEncoder(separators=(",", ":"))


def callback_job(message: Message, agent: Agent, *, claimed_at: float | None = None) -> CallbackJob:
    """The attempt for a row claimed for the callback (its callback_attempts already counts it)."""
    body = _JSON.encode(waiting_message_object(message)).encode()
    return CallbackJob(
        message_id=message.pk,
        agent_id=agent.pk,
        url=agent.callback_url,
        secret=_secret(agent.callback_secret_encrypted),
        body=body,
        attempt=message.callback_attempts,
        claimed_at=time.monotonic() if claimed_at is None else claimed_at,
    )


def callback_due_q(now: datetime) -> Q:
    return (
        free_q(now)
        & Q(callback_attempts__lt=CALLBACK_MAX_ATTEMPTS)
        & (Q(next_callback_at__isnull=True) | Q(next_callback_at__lte=now))
    )


def callback_claim(*, message_id: str, first: bool = False) -> CallbackJob | None:
    """Claim the row for one attempt; None when it is not ours to send (taken, not due, no URL, agent inactive).

    `first`: the attempt right after the row was stored, which may come before the due time the row was
    stored with (channels_app.delivery.routing.claim_at_birth: the time a sweep takes it up if nothing else does).
    """
    message = Message.objects.select_related("agent").filter(pk=message_id).first()
    if message is None or message.agent.status != AgentStatus.ACTIVE or not message.agent.callback_url:
        return None
    now = timezone.now()
    due = callback_due_q(now)
    if first:
        due |= free_q(now) & Q(callback_attempts=0)
    # Conditions on this row only: an UPDATE whose WHERE reaches another table becomes `id IN (subquery)`,
    # and PostgreSQL re-checks a concurrently updated row against the outer condition only, so two
    # racing claims could both succeed. Checked on the row, the loser sees the winner's claim.
    claimed = Message.objects.filter(due, pk=message_id).update(
        delivered_via=VIA_CALLBACK,
        next_callback_at=now + timedelta(seconds=LEASE_SECONDS),
        callback_attempts=F("callback_attempts") + 1,
    )
    if not claimed:
        return None
    message.refresh_from_db(fields=["callback_attempts", "delivered_via", "next_callback_at"])
    return callback_job(message, message.agent)


def callbacks_mark_delivered(*, message_ids: list[str]) -> int:
    """Record successful attempts (rows still claimed by the callback) in one write transaction."""
    return messages_mark_delivered(message_ids=message_ids, via=VIA_CALLBACK)


def callback_failed(*, job: CallbackJob, outcome: str, permanent: bool = False) -> None:
    """Give the row back with the time of its next attempt; none after the last, or after a refusal."""
    retry_at = None
    if not permanent and job.attempt < CALLBACK_MAX_ATTEMPTS:
        retry_at = timezone.now() + timedelta(seconds=callback_delay_seconds(job.attempt))
    if permanent:
        Message.objects.filter(pk=job.message_id, delivered_at__isnull=True, delivered_via=VIA_CALLBACK).update(
            callback_attempts=CALLBACK_MAX_ATTEMPTS
        )
    logger.info(
        "Callback for %s to agent %s failed (%s), attempt %d/%d%s",
        job.message_id,
        job.agent_id,
        outcome,
        job.attempt,
        CALLBACK_MAX_ATTEMPTS,
        f", next at {retry_at:%H:%M:%S.%f}" if retry_at else "; it stays in waiting-messages",
    )
    message_release(message_id=job.message_id, via=VIA_CALLBACK, next_callback_at=retry_at)


def callback_deferred(*, job: CallbackJob) -> None:
    """Give back a claimed row that was never posted (its destination's queue was full): not an attempt."""
    Message.objects.filter(pk=job.message_id, delivered_at__isnull=True, delivered_via=VIA_CALLBACK).update(
        delivered_via="",
        next_callback_at=timezone.now() + timedelta(seconds=callback_delay_seconds(1)),
        callback_attempts=F("callback_attempts") - 1,
    )


def callbacks_due(*, limit: int = SWEEP_BATCH, include_never_tried: bool = False) -> list[str]:
    """Rows whose next attempt is due: retries, and rows whose lease expired (their process died).

    With `include_never_tried` (deliver_callbacks) also rows no attempt was ever scheduled for, once
    the in-process path has had WORKER_GRACE_SECONDS; that scans every undelivered row, so the server's
    frequent sweep leaves it out and reads only rows with a due time (the message_callback_due index).
    """
    now = timezone.now()
    due = Q(next_callback_at__lte=now)
    if include_never_tried:
        due |= Q(next_callback_at__isnull=True, callback_attempts=0, created_at__lte=now - timedelta(seconds=WORKER_GRACE_SECONDS))
    return list(
        Message.objects.filter(callback_due_q(now), due, agent__status=AgentStatus.ACTIVE)
        .exclude(agent__callback_url="")
        .order_by("next_callback_at", "created_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- the POST ------------------------------------------------------------------------------------


class _Destination:
    """The connections and the concurrency bound of one (scheme, host, port) on one event loop."""

    def __init__(self, scheme: str, host: str, port: int, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.users = 0  # attempts holding or waiting for a slot
        self.pool = DestinationPool(scheme=scheme, host=host, port=port, size=limit)


_destinations: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[tuple[str, str, int, int], _Destination]]
_destinations = weakref.WeakKeyDictionary()


def _destination(scheme: str, host: str, port: int) -> _Destination:
    loop = asyncio.get_running_loop()
    per_loop = _destinations.get(loop)
    if per_loop is None:
        per_loop = _destinations[loop] = OrderedDict()
    limit = settings.CALLBACK_CONCURRENCY_PER_DESTINATION
    key = (scheme, host.lower(), port, limit)
    destination = per_loop.get(key)
    if destination is None:
        destination = per_loop[key] = _Destination(scheme, host, port, limit)
        for old_key in [k for k, d in per_loop.items() if d.users == 0][: max(0, len(per_loop) - DESTINATIONS_PER_LOOP)]:
            per_loop.pop(old_key).pool.close()
    per_loop.move_to_end(key)
    return destination


async def callback_clients_close() -> None:
    """Close this event loop's kept-alive connections (server shutdown, end of deliver_callbacks)."""
    per_loop = _destinations.pop(asyncio.get_running_loop(), None)
    for destination in (per_loop or {}).values():
        destination.pool.close()


@lru_cache(maxsize=DESTINATIONS_PER_LOOP)
def _request_lines(parts: SplitResult, host: str) -> bytes:
    """What every callback to this URL sends first: the request line and the headers but the signature and
    the length (quoting the path and building the lines cost more than signing the body)."""
    return request_lines(parts, host=host, headers={
        "Content-Type": "application/json", "User-Agent": f"agent-comms-orchestrator/{settings.VERSION}",
    })


class _Deferred(Exception):
    """Not attempted now: the destination is saturated, or the claim is too old to post under."""


async def _post(job: CallbackJob) -> tuple[bool, str]:
    """POST the job; (delivered, outcome). Raises DestinationRefused, ResolveFailed or _Deferred."""
    parts, host, port, addresses = await destination_addresses(job.url)
    destination = _destination(parts.scheme, host, port)
    if destination.users >= QUEUED_PER_DESTINATION:
        raise _Deferred
    destination.users += 1
    try:
        async with destination.slots:
            if time.monotonic() - job.claimed_at > SLOT_WAIT_LIMIT_SECONDS:
                raise _Deferred
            signature = callback_signature(secret=job.secret, timestamp=int(time.time()), body=job.body)
            head = b"%sX-Comms-Signature: %s\r\nContent-Length: %d\r\n\r\n" % (
                _request_lines(parts, host), signature.encode(), len(job.body)
            )
            try:
                status = await destination.pool.post(addresses, head, job.body, settings.CALLBACK_TIMEOUT_SECONDS)
            except TimeoutError:
                return False, f"no answer within {settings.CALLBACK_TIMEOUT_SECONDS} s"
            except CallbackHTTPError as exc:
                return False, str(exc)
    finally:
        destination.users -= 1
    if 200 <= status < 300:
        return True, f"HTTP {status}"
    if 300 <= status < 400:
        # Never followed: the signed body would go to a place nobody checked.
        return False, f"HTTP {status} (redirects are not followed)"
    return False, f"HTTP {status}"


async def callback_post(job: CallbackJob) -> bool:
    """Make the claimed attempt and record its outcome; True when the agent's server took the event."""
    ensure_sweeper()
    try:
        delivered, outcome = await _post(job)
    except _Deferred:
        await _record(callback_deferred, job=job)
        return False
    except DestinationRefused as exc:
        await _record(callback_failed, job=job, outcome=f"refused: {exc}", permanent=True)
        return False
    except ResolveFailed as exc:
        delivered, outcome = False, str(exc)
    except Exception as exc:
        logger.exception("Callback for %s failed unexpectedly", job.message_id)
        delivered, outcome = False, f"{type(exc).__name__}"
    if delivered:
        await _mark_delivered(job.message_id)
    else:
        await _record(callback_failed, job=job, outcome=outcome)
    return delivered


async def callback_post_stored(message: Message) -> bool:
    """callback_post for a row that was inserted claimed for its callback, from the instance in hand."""
    agent = message.agent
    if {"callback_url", "callback_secret_encrypted"} & agent.get_deferred_fields():
        agent = await run_blocking(Agent.objects.get, pk=agent.pk)
    return await callback_post(callback_job(message, agent))


async def callback_attempt(message_id: str, *, first: bool = False) -> bool | None:
    """Claim and make one attempt. True: delivered; False: failed (retry scheduled, or it stays waiting);
    None: not ours to send (taken, not due, no URL). `first`: see callback_claim."""
    job = await run_blocking(callback_claim, message_id=message_id, first=first)
    if job is None:
        return None
    return await callback_post(job)


# --- recording outcomes ----------------------------------------------------------------------------

# An outcome that cannot be written means a second POST once the lease expires, so a transient
# refusal (a lock, a dropped connection) is tried again before giving up.
RECORD_RETRY_DELAYS = (0.05, 0.2, 0.5)
MARK_GATHER_SECONDS = 0.05


async def _record(function: Callable[..., T], **kwargs: Any) -> T:
    return await run_blocking_retried(function, delays=RECORD_RETRY_DELAYS, **kwargs)


# Per event loop: delivered rows waiting for the statement that records them.
_marks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[str]] = weakref.WeakKeyDictionary()


async def _mark_delivered(message_id: str) -> None:
    """Record a delivery. Deliveries that finish while a mark is being written go in the next one: under
    load one statement for many rows. A mark lost with the process lets the lease expire, and the row is
    posted again: at least once, never lost."""
    loop = asyncio.get_running_loop()
    pending = _marks.get(loop)
    if pending is not None:
        pending.append(message_id)
        return
    pending = _marks[loop] = [message_id]
    try:
        # Gather the deliveries of the next moments into the same statement: with one webhook at a
        # time a write per callback cost a third of the webhook's CPU; a recorded delivery is only
        # needed before the lease runs out (a minute), and a row marked later is never posted twice.
        await asyncio.sleep(MARK_GATHER_SECONDS)
        while pending:
            batch = pending[:]
            pending.clear()
            try:
                await _record(callbacks_mark_delivered, message_ids=batch)
            except Exception:
                logger.exception("Recording the callbacks of %s failed; their leases will expire", batch)
    finally:
        del _marks[loop]


# --- the sweep -----------------------------------------------------------------------------------

_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()
_tasks: set[asyncio.Task[Any]] = set()
_no_sweeper_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _spawn(factory: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
    async def run() -> Any:
        return await factory()

    task = asyncio.get_running_loop().create_task(run())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


def without_sweeper(loop: asyncio.AbstractEventLoop) -> None:
    """Never start a sweeper on `loop` (a helper loop outside the server: deliver_callbacks sweeps itself)."""
    _no_sweeper_loops.add(loop)


def ensure_sweeper() -> None:
    """Start this server loop's retry sweep, once (lifespan start-up, or the first callback under daphne)."""
    loop = asyncio.get_running_loop()
    if settings.CALLBACK_SWEEP_SECONDS <= 0 or loop in _no_sweeper_loops:
        return
    task = _sweepers.get(loop)
    if task is not None and not task.done():
        return
    _sweepers[loop] = loop.create_task(_sweep_forever())

    from orchestrator.lifespan import on_shutdown

    on_shutdown(_stop_sweeper)


async def _stop_sweeper() -> None:
    task = _sweepers.pop(asyncio.get_running_loop(), None)
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    await callback_clients_close()


async def callbacks_sweep(*, include_never_tried: bool = False, in_flight: set[str] | None = None) -> int:
    """Start an attempt for each due row (not waiting for them); returns how many were started."""
    in_flight = set() if in_flight is None else in_flight
    due = await run_blocking(callbacks_due, limit=SWEEP_BATCH, include_never_tried=include_never_tried)
    started = 0
    for message_id in due:
        if message_id in in_flight:
            continue
        in_flight.add(message_id)
        _spawn(lambda message_id=message_id: _attempt_tracked(message_id, in_flight))  # type: ignore[misc]
        started += 1
    return started


async def _attempt_tracked(message_id: str, in_flight: set[str]) -> bool | None:
    try:
        return await callback_attempt(message_id)
    except Exception:
        logger.exception("Callback attempt for %s failed", message_id)
        return None
    finally:
        in_flight.discard(message_id)


async def _sweep_forever() -> None:
    in_flight: set[str] = set()
    while settings.CALLBACK_SWEEP_SECONDS > 0:
        try:
            if len(in_flight) < SWEEP_BATCH:
                await callbacks_sweep(in_flight=in_flight)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A database hiccup must not end the sweep; the next one retries.
            logger.exception("Callback sweep failed")
        await asyncio.sleep(settings.CALLBACK_SWEEP_SECONDS)


async def run_worker(*, interval: float, once: bool, on_pass: Callable[[], Awaitable[None]] | None = None,
                     stopping: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """deliver_callbacks' loop: sweep (first attempts included) every `interval` seconds.

    With `once`, one sweep whose attempts are all awaited; returns (due, delivered) of that sweep.
    """
    without_sweeper(asyncio.get_running_loop())
    try:
        if once:
            due = await run_blocking(callbacks_due, limit=SWEEP_BATCH, include_never_tried=True)
            results = await asyncio.gather(*(callback_attempt(message_id) for message_id in due))
            if on_pass is not None:
                await on_pass()
            return len(due), sum(1 for result in results if result)
        in_flight: set[str] = set()
        while not stopping():
            try:
                if len(in_flight) < SWEEP_BATCH:
                    await callbacks_sweep(include_never_tried=True, in_flight=in_flight)
                if on_pass is not None:
                    await on_pass()
            except Exception:
                logger.exception("Delivery pass failed")
            await asyncio.sleep(interval)
        return 0, 0
    finally:
        loop = asyncio.get_running_loop()
        mine = [task for task in _tasks if task.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)
        await callback_clients_close()
