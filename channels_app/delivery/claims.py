"""Claims on inbound rows: the lease every delivery path takes before it delivers, and retention.

See channels_app.delivery for the row states.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels_app.models import Direction, Message, MessageKind
from orchestrator import sql
from orchestrator.workers import run_blocking

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


def pooled(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`fn` (the ORM) on the worker pool, connection upkeep included: never on the event loop."""

    async def call(*args: Any, **kwargs: Any) -> T:
        return await run_blocking(fn, *args, **kwargs)

    return call


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


# Every push and every callback ends in this statement (plain SQL, orchestrator.sql): built by the ORM on
# each call it cost more CPU than the rest of the push (a callback's: 350 µs for 25 rows, against 70 µs).
# Longer batches go in several statements.
MARK_BATCH_SIZE = 64


def messages_mark_delivered(*, message_ids: list[str], via: str) -> int:
    """message_mark_delivered for several rows claimed by `via`, in one write transaction."""
    erase_bodies = bool(erased_fields())
    now = timezone.now()

    def mark(batch: list[str]) -> int:
        return sql.messages_mark_delivered(ids=batch, now=now, via=via, erase_bodies=erase_bodies)

    if len(message_ids) <= MARK_BATCH_SIZE:
        return mark(message_ids) if message_ids else 0
    with transaction.atomic():
        return sum(mark(message_ids[start : start + MARK_BATCH_SIZE]) for start in range(0, len(message_ids), MARK_BATCH_SIZE))


def message_release(*, message_id: str, via: str, next_callback_at: datetime | None = None) -> None:
    Message.objects.filter(pk=message_id, delivered_at__isnull=True, delivered_via=via).update(
        delivered_via="", next_callback_at=next_callback_at
    )


def message_bodies_purge(*, now: datetime | None = None) -> int:
    """Erase bodies of delivered inbound events older than MESSAGE_BODY_RETENTION_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.MESSAGE_BODY_RETENTION_DAYS)
    return (
        Message.objects.filter(delivered_at__isnull=False, delivered_at__lte=cutoff)
        .filter(Q(body__isnull=False) | Q(html__isnull=False))
        .update(body=None, html=None)
    )
