"""Services for live calls: the inbound call's record, binding the voice socket, turns, the end.

Writes go through these functions (each in its own transaction); the socket consumer and the webhook
views only call them. The consumer runs them off the event loop (orchestrator.workers.run_blocking).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent, AgentStatus
from channels_app import inbound
from orchestrator.errors import ApiError
from voice.models import AnsweredBy, Call, CallStatus, CallTurn

logger = logging.getLogger(__name__)

INBOUND = "inbound"
OUTBOUND = "outbound"
# Statuses after which nothing is said on the call any more.
FINISHED_STATUSES = frozenset(
    {CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED, CallStatus.FAILED}
)
# Twilio's CallStatus values for a call that rings or talks; anything else is recorded as in progress.
_OPENING_STATUSES = {"queued", "initiated", "ringing", "in-progress"}
_PROGRESS_RANK = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3}
# Most of what a caller sees of the transcript in the admin; the turns keep everything.
MAX_TRANSCRIPT_ENTRIES = 500

VOICE_AGENT_FIELDS = (
    "id", "organization_id", "display_name", "status", "blocked_channels", "greeting", "voice", "language",
    "system_prompt", "callback_url",
)


def agent_for_voice(agent_id: str) -> Agent | None:
    return Agent.objects.only(*VOICE_AGENT_FIELDS).filter(pk=agent_id).first()


def agent_takes_calls(agent: Agent | None) -> bool:
    """An unknown or inactive agent, or one whose `voice` channel is blocked, gets an empty answer."""
    return inbound.agent_accepts(agent, "voice")


# --- TwiML time -----------------------------------------------------------------------------------


def call_start_inbound(*, agent: Agent, params: Mapping[str, str]) -> Call | None:
    """Record an inbound call as Twilio announces it (its CallSid), once: a retried webhook finds the row.

    None when the CallSid is already another agent's call (nothing to answer with)."""
    call_sid = params.get("CallSid", "")[:64]
    existing = Call.objects.filter(call_sid=call_sid).first() if call_sid else None
    if existing is not None:
        return existing if existing.agent_id == agent.pk else None
    status = params.get("CallStatus", "")
    call = Call(
        call_sid=call_sid or None,
        agent=agent,
        organization_id=agent.organization_id,
        direction=INBOUND,
        status=status if status in _OPENING_STATUSES else CallStatus.RINGING,
        from_address=params.get("From", "")[:32],
        to_address=params.get("To", "")[:32],
        greeting=agent.greeting,
        system_prompt=agent.system_prompt,
        voice=agent.voice,
        language=agent.language,
        started_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            call.save()
    except IntegrityError:
        # The same CallSid stored concurrently (a retry racing the first delivery).
        found = Call.objects.filter(call_sid=call_sid).first()
        if found is None:
            raise
        return found if found.agent_id == agent.pk else None
    return call


def call_for_outbound_twiml(*, agent: Agent, session_id: str, call_sid: str) -> Call | None:
    """The outbound call placed for `session_id` (voice-out's make-call), its CallSid recorded if missing."""
    call = Call.objects.filter(session_id=session_id, agent=agent, direction=OUTBOUND).first()
    if call is None or call.status in FINISHED_STATUSES:
        return None
    if call_sid and not call.call_sid:
        Call.objects.filter(pk=call.pk, call_sid__isnull=True).update(call_sid=call_sid[:64])
        call.call_sid = call_sid[:64]
    return call


# --- the socket -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveCall:
    """What the socket needs of a call, read once when it connects (plain values, safe to share)."""

    id: int
    session_id: str
    call_sid: str
    agent_id: str
    agent_name: str
    organization_id: str
    direction: str
    caller: str
    callee: str
    system_prompt: str

    @property
    def other_party(self) -> str:
        """The person on the line: the caller of an inbound call, the callee of an outbound one."""
        return self.caller if self.direction == INBOUND else self.callee


def call_for_socket(*, agent_id: str, session_id: str) -> LiveCall | None:
    """The agent's call for this session, if it can still be talked on and the agent takes calls."""
    call = Call.objects.select_related("agent").filter(session_id=session_id, agent_id=agent_id).first()
    if call is None or call.status in FINISHED_STATUSES or not agent_takes_calls(call.agent):
        return None
    return LiveCall(
        id=call.pk,
        session_id=call.session_id,
        call_sid=call.call_sid or "",
        agent_id=call.agent_id,
        agent_name=call.agent.display_name,
        organization_id=call.organization_id,
        direction=call.direction,
        caller=call.from_address,
        callee=call.to_address,
        system_prompt=call.system_prompt or call.agent.system_prompt,
    )


def call_bind(*, call_id: int, call_sid: str) -> bool:
    """ConversationRelay's `setup` for the call: its CallSid (when not yet known) and `in-progress`.

    False when the socket claims another call than the one its URL was signed for.
    """
    with transaction.atomic():
        call = Call.objects.select_for_update().only("pk", "call_sid", "status", "started_at").get(pk=call_id)
        if call.call_sid and call_sid and call.call_sid != call_sid:
            return False
        fields: dict[str, Any] = {}
        if call_sid and not call.call_sid:
            fields["call_sid"] = call_sid[:64]
        if _PROGRESS_RANK.get(call.status, 99) < _PROGRESS_RANK["in-progress"]:
            fields["status"] = CallStatus.IN_PROGRESS
        if call.started_at is None:
            fields["started_at"] = timezone.now()
        if fields:
            Call.objects.filter(pk=call_id).update(updated_at=timezone.now(), **fields)
    return True


@dataclass(frozen=True)
class TurnRecord:
    call_id: int
    sequence: int
    caller_text: str
    reply_text: str
    answered_by: str
    prompt_at: datetime
    first_reply_at: datetime | None = None
    completed_at: datetime | None = None
    interrupted: bool = False
    heard_text: str = ""

    def fields(self) -> dict[str, Any]:
        return {
            "caller_text": self.caller_text,
            "reply_text": self.reply_text,
            "answered_by": self.answered_by,
            "prompt_at": self.prompt_at,
            "first_reply_at": self.first_reply_at,
            "completed_at": self.completed_at,
            "interrupted": self.interrupted,
            "heard_text": self.heard_text,
        }


def call_turns_save(*, new: list[TurnRecord], changed: list[TurnRecord]) -> None:
    """Write a batch of the call's turns: `new` ones inserted, `changed` ones (written before) updated."""
    with transaction.atomic():
        CallTurn.objects.bulk_create(
            [CallTurn(call_id=turn.call_id, sequence=turn.sequence, **turn.fields()) for turn in new]
        )
        for turn in changed:
            CallTurn.objects.filter(call_id=turn.call_id, sequence=turn.sequence).update(**turn.fields())


def call_transcript_save(*, call_id: int, transcript: list[dict[str, Any]]) -> None:
    """The socket closed: keep what was said (the turns hold the details)."""
    Call.objects.filter(pk=call_id).update(transcript=transcript[-MAX_TRANSCRIPT_ENTRIES:], updated_at=timezone.now())


def voicemail_leave(*, call: LiveCall, transcript: str) -> str | None:
    """The answering machine's message, stored and delivered to the agent like any inbound message."""
    agent = Agent.objects.only(*VOICE_AGENT_FIELDS).filter(pk=call.agent_id).first()
    if agent is None or agent.status != AgentStatus.ACTIVE:
        return None
    outcome = inbound.voicemail_store(
        agent=agent,
        call_sid=call.call_sid or call.session_id,
        caller=call.other_party,
        callee=call.callee if call.direction == INBOUND else call.caller,
        transcript=transcript,
    )
    return outcome.message_id


# --- the agent's tools ----------------------------------------------------------------------------


def call_live_for_agent(*, agent_id: str, call_sid: str) -> Call:
    """The agent's own call that is still being talked on; 404 `call_not_found` otherwise."""
    call = Call.objects.filter(call_sid=call_sid, agent_id=agent_id).only("pk", "session_id", "status").first()
    if call is None:
        raise ApiError(404, "call_not_found", f"No call {call_sid} of this agent.")
    if call.status in FINISHED_STATUSES:
        raise ApiError(404, "call_not_found", f"Call {call_sid} has ended.")
    return call


__all__ = ["AnsweredBy", "LiveCall", "TurnRecord"]


# --- reaching the call's socket from any process ----------------------------------------------------


def call_group(session_id: str) -> str:
    """The channel-layer group the call's socket consumer listens on (one per call)."""
    return f"voice-call.{session_id}"


def call_message_send(*, session_id: str, message: dict[str, Any]) -> None:
    """Hand `message` to the call's socket, in whichever process holds it; in the order sent.

    Called from synchronous code (tool and REST handlers on a worker thread or the loop's own thread):
    the send is scheduled on the server's event loop and not waited for, so a handler never blocks on
    the channel layer (nor deadlocks on the loop's own thread).
    """
    from orchestrator.workers import calling_event_loop

    group = call_group(session_id)
    loop = calling_event_loop()
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(_send_in_order, group, message)
        return
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, message)


# Per event loop and group, the last send not yet finished: the next one waits for it, so pieces of a
# streamed reply reach the socket in the order the agent sent them (process-local by nature).
_last_sends: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task[None]] = {}


def _send_in_order(group: str, message: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    key = (loop, group)
    task = loop.create_task(_send_after(_last_sends.get(key), group, message))
    _last_sends[key] = task

    def forget(done: asyncio.Task[None]) -> None:
        if _last_sends.get(key) is done:
            del _last_sends[key]

    task.add_done_callback(forget)


async def _send_after(previous: asyncio.Task[None] | None, group: str, message: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    if previous is not None:
        await asyncio.wait([previous])
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.exception("Could not hand a message to the socket of %s", group)
