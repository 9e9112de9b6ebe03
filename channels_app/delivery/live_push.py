"""Live push: an event goes to the agent's MCP session as a `comms.inbound` notification (contract §5),
in this process or through the channel layer (orchestrator.agent_registry); pushes record their
delivery in batches. Also what waited for an agent is pushed when it connects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from channels_app.delivery.claims import (
    VIA_MCP,
    free_q,
    message_claim,
    message_release,
    messages_mark_delivered,
    pooled,
)
from channels_app.models import Message
from channels_app.selectors import waiting_message_object
from orchestrator.retries import run_blocking_retried

logger = logging.getLogger(__name__)

_tasks: set[asyncio.Task[Any]] = set()


def spawn(coro_factory: Callable[[], Any]) -> None:
    """Run a coroutine as a task of the running loop, kept referenced until it ends."""
    task = asyncio.get_running_loop().create_task(coro_factory())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _claim_and_load(message_id: str) -> Message | None:
    """Claim the row for a push and read it in the same pool hop; None when someone else has it."""
    if not message_claim(message_id=message_id, via=VIA_MCP):
        return None
    return Message.objects.filter(pk=message_id).first()


async def push_claimed(message: Message) -> bool:
    from orchestrator.agent_registry import notify_agent

    sent = False
    try:
        sent = await notify_agent(message.agent_id, waiting_message_object(message))
    except Exception:
        logger.exception("Pushing %s to its agent failed", message.pk)
    if sent:
        await _mark_pushed(message.pk)
    else:
        await pooled(message_release)(message_id=message.pk, via=VIA_MCP)
    return sent


def messages_mark_pushed(*, message_ids: list[str]) -> int:
    """message_mark_delivered for several pushed rows in one write transaction."""
    return messages_mark_delivered(message_ids=message_ids, via=VIA_MCP)


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
            spawn(lambda: _write_all_marks(loop, pending))
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
    try:
        await run_blocking_retried(messages_mark_pushed, message_ids=batch, delays=MARK_RETRY_DELAYS)
    except Exception:
        logger.exception("Recording the delivery of %s failed; their leases will expire", batch)


async def _write_all_marks(loop: asyncio.AbstractEventLoop, pending: list[str]) -> None:
    try:
        while pending:
            await _write_marks(pending)
    finally:
        del _marks_pending[loop]


async def push_message(message_id: str) -> bool:
    """Push one event to the agent's live MCP session; True when it was sent (and so delivered)."""
    message = await pooled(_claim_and_load)(message_id)
    return message is not None and await push_claimed(message)


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
        ids = await pooled(free_ids)()
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
