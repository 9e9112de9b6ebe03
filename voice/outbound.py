"""Outbound voice: make-call, call-on-behalf, send-voice-message, transfer-call, and the call status
callbacks that move every call forward and end it with one `call_outcome` (contract §6.1, §6.3, §8).

Every placement follows channels_app.services.message_send: the §6.2 checks that only read
(policy_check: agent active, channel not blocked, not opted out, quiet hours), then in one transaction
the Call row, its usage record at the estimated price and the limit counters (policy_reserve, which
also counts maxCallsPerDaySameNumber), then the provider call, then its outcome. A refusal before the
provider call changes nothing; a provider refusal leaves the Call row `failed` and gives the counters
and the usage record back.

In DEMO_MODE the sandbox places nothing, so the call's progress is simulated after the answer:
initiated → ringing → in-progress → completed, each through call_status_record exactly as Twilio's
callbacks would arrive, so a demo agent sees the same `call_outcome` a live one does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.utils import timezone

from agents.models import Agent, AgentLimits, AgentStatus
from agents.usage import Reservation, usage_cost_adjust, usage_record_create, usage_release, usage_reserve
from channels_app.addresses import normalize_phone
from channels_app.delivery import routing
from channels_app.models import Message, MessageKind
from channels_app.policy import policy_check, policy_reserve
from channels_app.providers import pricing
from channels_app.providers.base import (
    CALL_STATUS_RANK,
    CallStatusUpdate,
    ProviderError,
    ProviderNotConfigured,
    TelephonyProvider,
    TtsProvider,
    call_status_advances,
    webhook_url,
)
from channels_app.services import provider_api_error
from orchestrator.errors import ApiError
from orchestrator.retries import run_blocking_retried
from orchestrator.workers import calling_event_loop, with_connections
from voice import scripted_twiml
from voice.models import Call, CallStatus, VoiceAudio
from voice.selectors import agent_voice_number, call_get_of_agent

logger = logging.getLogger(__name__)
T = TypeVar("T")

VOICE = "voice"
OUTBOUND = "outbound"

PURPOSE_CONVERSATION = "conversation"
PURPOSE_ON_BEHALF = "call_on_behalf"
PURPOSE_VOICE_MESSAGE = "voice_message"

FINAL_RANK = CALL_STATUS_RANK["completed"]
# Call.context key of the call's call_outcome message: set once, when the first final report arrives.
OUTCOME_KEY = "outcomeMessageId"
# Calls that can still be transferred: not yet ended, and not already handed to someone else.
LIVE_STATUSES = (CallStatus.QUEUED, CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS)

# Voice messages: the text is synthesized in one request; the audio is kept for AUDIO_URL_LIFETIME.
MAX_VOICE_MESSAGE_CHARACTERS = 5000
MAX_AUDIO_BYTES = 10 * 1024 * 1024
AUDIO_URL_LIFETIME = timedelta(hours=24)

# DEMO_MODE: the simulated call's talk time, and the pause between its status events (a setting, so
# tests can run the whole sequence at once).
SIMULATED_TALK_SECONDS = 10
SIMULATION_STEP_SECONDS = 1.0


# --- placing a call ---------------------------------------------------------------------------------


def _telephony() -> TelephonyProvider:
    from channels_app.providers.registry import telephony_provider

    try:
        return telephony_provider()
    except ProviderNotConfigured as exc:
        raise provider_api_error(exc) from None


def _tts() -> TtsProvider:
    from channels_app.providers.registry import tts_provider

    try:
        return tts_provider()
    except ProviderNotConfigured as exc:
        raise provider_api_error(exc) from None


def _limits(agent: Agent) -> AgentLimits:
    return getattr(agent, "limits", None) or AgentLimits.objects.get_or_create(agent=agent)[0]


@dataclass
class _Opened:
    """A Call row written with its usage record and limit counters, before the provider call."""

    call: Call
    reservation: Reservation
    record_id: int


def _call_open(*, agent: Agent, to: str, from_number: str, purpose: str, action: str, cost: Decimal,
               **fields: Any) -> _Opened:
    """Check 5 of §6.2 (limits) and the record of the call, in one transaction; a refusal leaves no row."""
    limits = _limits(agent)
    with transaction.atomic():
        call = Call.objects.create(
            agent=agent,
            organization_id=agent.organization_id,
            direction=OUTBOUND,
            purpose=purpose,
            status=CallStatus.QUEUED,
            from_address=from_number,
            to_address=to,
            **fields,
        )
        record_id = usage_record_create(agent=agent, action_type=action, channel=VOICE, cost=cost,
                                        reference=call.session_id)
        reservation = policy_reserve(agent=agent, limits=limits, channel=VOICE, to=to, cost=cost)
    return _Opened(call=call, reservation=reservation, record_id=record_id)


def _call_failed(opened: _Opened, *, code: str, detail: str) -> None:
    """The call never started: the row says so, and nothing is counted or charged."""
    call = opened.call
    with transaction.atomic():
        call.context = {**call.context, "error": {"code": code[:40], "message": detail[:500]}}
        Call.objects.filter(pk=call.pk).update(status=CallStatus.FAILED, ended_at=timezone.now(),
                                               context=call.context, updated_at=timezone.now())
        usage_release(reservation=opened.reservation, record_id=opened.record_id)
    call.status = CallStatus.FAILED


def _guarded(opened: _Opened, action: Callable[[], T]) -> T:
    """Run a provider call for an opened call; a failure marks the call failed and answers as the API does."""
    try:
        return action()
    except ProviderError as exc:
        _call_failed(opened, code=exc.code or exc.reason, detail=exc.message)
        raise provider_api_error(exc) from None
    except Exception as exc:
        _call_failed(opened, code="internal_error", detail=repr(exc))
        raise


def _call_place(opened: _Opened, provider: TelephonyProvider, **create: Any) -> Call:
    """Place the opened call with the provider and record its CallSid; in demo mode, simulate its progress."""
    call = opened.call
    result = _guarded(opened, lambda: provider.create_call(
        agent_id=call.agent_id,
        from_number=call.from_address,
        to_number=call.to_address,
        status_callback_url=webhook_url(call.agent_id, "call-status"),
        **create,
    ))
    status = result.status if result.status in CALL_STATUS_RANK else CallStatus.QUEUED
    now = timezone.now()
    Call.objects.filter(pk=call.pk).update(call_sid=result.call_sid, status=status, started_at=now, updated_at=now)
    call.call_sid, call.status, call.started_at = result.call_sid, status, now
    if provider.name == "sandbox":
        talk = call.context.get("audioSeconds") or SIMULATED_TALK_SECONDS
        simulation_schedule(agent_id=call.agent_id, call_sid=result.call_sid, talk_seconds=math.ceil(talk))
    return call


def _placed(call: Call) -> dict[str, Any]:
    return {
        "success": True,
        "callSid": call.call_sid,
        "sessionId": call.session_id,
        "status": call.status,
        "from": call.from_address,
        "to": call.to_address,
    }


def _call_estimate() -> Decimal:
    """Reserved before the call: one minute. The real price replaces it when the call ends."""
    return pricing.estimate_call_cost(60)


def call_make(
    *,
    agent: Agent,
    to: str,
    greeting: str = "",
    system_prompt: str = "",
    voice: str = "",
    language: str = "",
    recipient_timezone: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Place an AI conversation call; its TwiML (ConversationRelay) is fetched from outbound-voice."""
    to = normalize_phone(to)
    policy_check(agent=agent, channel=VOICE, to=to, recipient_timezone=recipient_timezone, now=now)
    from_number = agent_voice_number(agent)
    provider = _telephony()
    opened = _call_open(
        agent=agent, to=to, from_number=from_number, purpose=PURPOSE_CONVERSATION, action="make_call",
        cost=_call_estimate(), greeting=greeting or agent.greeting, system_prompt=system_prompt or agent.system_prompt,
        voice=voice or agent.voice, language=language or agent.language,
    )
    url = f"{webhook_url(agent.pk, 'outbound-voice')}?{urlencode({'session': opened.call.session_id})}"
    return _placed(_call_place(opened, provider, url=url))


# --- call on behalf (the secretary) ------------------------------------------------------------------


def _language(agent: Agent) -> str:
    return agent.language or settings.VOICE_DEFAULT_LANGUAGE


def _script_language(agent: Agent) -> str:
    """The language of our own scripted sentences (the secretary, the voice-message disclosure), which
    are English: the agent's English variant if it speaks one (en-GB, en-AU, …), else en-US, so that
    Twilio never reads English text with another language's voice or listens for another language."""
    language = _language(agent)
    return language if language.lower().startswith("en") else "en-US"


def _secretary_action_url(call: Call, attempt: int = 1, step: str = "") -> str:
    query = {"session": call.session_id, **({"attempt": str(attempt)} if attempt > 1 else {}),
             **({"step": step} if step else {})}
    return f"{webhook_url(call.agent_id, 'secretary')}?{urlencode(query)}"


def _secretary_question(call: Call) -> str:
    ctx = call.context
    requester = ctx.get("requesterName") or "someone"
    who = "an automated assistant" if settings.VOICE_AI_DISCLOSURE else "an assistant"
    greeting = f"Hello {ctx['targetName']}. " if ctx.get("targetName") else "Hello. "
    about = f" about: {ctx['message']}." if ctx.get("message") else "."
    return (
        f"{greeting}This is {who} calling on behalf of {requester}{about} "
        f"Can you take a call from {requester} now? Say yes or press 1 to be connected. Say no or press 2."
    )


def call_on_behalf(
    *,
    agent: Agent,
    target: str,
    requester_phone: str,
    target_name: str = "",
    requester_name: str = "",
    message: str = "",
    recipient_timezone: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A scripted secretary calls `target`, asks whether they can take a call from the requester, and
    bridges the requester in on a yes; the answer becomes the call_outcome's body."""
    target = normalize_phone(target, field="target")
    requester = normalize_phone(requester_phone, field="requesterPhone")
    policy_check(agent=agent, channel=VOICE, to=target, recipient_timezone=recipient_timezone, now=now)
    from_number = agent_voice_number(agent)
    provider = _telephony()
    context = {"targetName": target_name, "requesterName": requester_name, "requesterPhone": requester,
               "message": message}
    opened = _call_open(agent=agent, to=target, from_number=from_number, purpose=PURPOSE_ON_BEHALF,
                        action="call_on_behalf", cost=_call_estimate(), language=_script_language(agent),
                        context=context)
    call = opened.call
    twiml = scripted_twiml.secretary_question(
        question=_secretary_question(call), action_url=_secretary_action_url(call), language=call.language,
        no_input="I did not hear an answer. Goodbye.",
    )
    call = _call_place(opened, provider, twiml=twiml)
    description = (
        f"Calling {target_name or target} on behalf of {requester_name or requester} to ask whether they can "
        f"take a call now; on yes, {requester} is connected."
    )
    return {**_placed(call), "description": description}


# Spoken answers. Negative phrases win over the bare affirmative words they contain ("not now, sorry,
# okay?"), except for phrases that are affirmative although they contain "no".
_AFFIRMATIVE_EXCEPTIONS = ("no problem", "why not", "no worries")
_NEGATIVE = ("no", "nope", "nah", "not now", "not right now", "can't", "cannot", "can not", "don't", "do not",
             "busy", "later", "decline", "not available", "unavailable")
_AFFIRMATIVE = ("yes", "yeah", "yep", "yup", "sure", "ok", "okay", "of course", "certainly", "absolutely",
                "go ahead", "put them through", "put him through", "put her through", "connect", "please do",
                "alright", "all right", "fine")


def secretary_reading(*, speech: str, digits: str) -> str | None:
    """'accepted', 'declined', '' (nothing said or pressed) or None (an answer we could not read)."""
    if digits:
        return {"1": "accepted", "2": "declined"}.get(digits[:1])
    if not speech.strip():
        return ""
    text = " " + re.sub(r"[^\w']+", " ", speech.lower()) + " "
    if any(f" {phrase} " in text for phrase in _AFFIRMATIVE_EXCEPTIONS):
        return "accepted"
    if any(f" {phrase} " in text for phrase in _NEGATIVE):
        return "declined"
    if any(f" {phrase} " in text for phrase in _AFFIRMATIVE):
        return "accepted"
    return None


def secretary_answer_record(*, agent_id: str, session_id: str, speech: str, digits: str, attempt: int) -> str:
    """Record the callee's answer to the secretary and return the TwiML that follows it (bridge or goodbye)."""
    with transaction.atomic():
        call = (
            Call.objects.select_for_update()
            .filter(agent_id=agent_id, session_id=session_id, purpose=PURPOSE_ON_BEHALF)
            .first()
        )
        if call is None:
            return scripted_twiml.empty()
        reading = secretary_reading(speech=speech, digits=digits)
        if reading is None and attempt < 2:
            return scripted_twiml.secretary_question(
                question="Sorry, I did not catch that. " + _secretary_question(call),
                action_url=_secretary_action_url(call, attempt=2), language=call.language,
                no_input="I did not hear an answer. Goodbye.",
            )
        answer = reading or "no_answer"
        heard = {"said": speech.strip()[:500]} if speech.strip() else ({"pressed": digits[:5]} if digits else {})
        call.context = {**call.context, "answer": answer, **heard}
        Call.objects.filter(pk=call.pk).update(context=call.context, updated_at=timezone.now())
    requester = call.context.get("requesterName") or "them"
    if answer == "accepted":
        return scripted_twiml.secretary_bridge(
            text="Thank you. Connecting you now.", requester=call.context["requesterPhone"],
            caller_id=call.from_address, language=call.language,
            action_url=_secretary_action_url(call, step=SECRETARY_BRIDGE_STEP),
        )
    if answer == "declined":
        return scripted_twiml.goodbye(text=f"No problem. I will let {requester} know. Goodbye.", language=call.language)
    return scripted_twiml.goodbye(text="I did not hear an answer. Goodbye.", language=call.language)


SECRETARY_BRIDGE_STEP = "bridge"


def secretary_bridge_record(*, agent_id: str, session_id: str, dial_status: str) -> str:
    """Record how the bridge to the requester ended (Twilio's DialCallStatus) and close the callee's side."""
    with transaction.atomic():
        call = (
            Call.objects.select_for_update()
            .filter(agent_id=agent_id, session_id=session_id, purpose=PURPOSE_ON_BEHALF)
            .first()
        )
        if call is None:
            return scripted_twiml.empty()
        status = dial_status[:20] or "unknown"
        call.context = {**call.context, "bridge": status}
        Call.objects.filter(pk=call.pk).update(context=call.context, updated_at=timezone.now())
    if status == "completed":
        return scripted_twiml.goodbye(text="Goodbye.", language=call.language)
    requester = call.context.get("requesterName") or "They"
    return scripted_twiml.goodbye(text=f"Sorry, {requester} could not be reached right now. Goodbye.",
                                  language=call.language)


# --- voice messages --------------------------------------------------------------------------------------


def audio_url(audio: VoiceAudio) -> str:
    extension = "wav" if audio.content_type in ("audio/wav", "audio/x-wav") else "mp3"
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/media/voice/{audio.token}.{extension}"


def voice_message_send(
    *, agent: Agent, to: str, text: str, voice: str = "", recipient_timezone: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Synthesize `text` (ElevenLabs; the sandbox in demo mode), store it under an unguessable expiring URL,
    and place a call that plays it."""
    to = normalize_phone(to)
    if not text.strip():
        raise ApiError(400, "invalid_request", "text must not be empty.", field="text")
    if len(text) > MAX_VOICE_MESSAGE_CHARACTERS:
        raise ApiError(400, "invalid_request", f"text is limited to {MAX_VOICE_MESSAGE_CHARACTERS} characters.",
                       field="text")
    policy_check(agent=agent, channel=VOICE, to=to, recipient_timezone=recipient_timezone, now=now)
    from_number = agent_voice_number(agent)
    provider = _telephony()
    tts = _tts()
    tts_estimate = pricing.estimate_tts_cost(len(text))
    opened = _call_open(agent=agent, to=to, from_number=from_number, purpose=PURPOSE_VOICE_MESSAGE,
                        action="send_voice_message", cost=_call_estimate() + tts_estimate,
                        voice=voice or agent.voice, language=_language(agent),
                        context={"characters": len(text)})
    call = opened.call
    synthesized = _guarded(opened, lambda: tts.synthesize(text, voice_id=call.voice or None))
    if len(synthesized.audio) > MAX_AUDIO_BYTES:
        _call_failed(opened, code="audio_too_large", detail=f"{len(synthesized.audio)} bytes")
        raise ApiError(502, "provider_error", "The synthesized audio is too large to serve; send a shorter text.",
                       provider=tts.name)
    seconds = round(synthesized.duration_seconds, 1) if synthesized.duration_seconds is not None else None
    tts_cost = synthesized.cost if synthesized.cost is not None else tts_estimate
    now = timezone.now()
    with transaction.atomic():
        # Expired audio is deleted as new audio arrives: the table never holds more than a day of it.
        VoiceAudio.objects.filter(expires_at__lte=now).delete()
        audio = VoiceAudio.objects.create(
            agent=agent, call=call, content_type=synthesized.content_type, audio=synthesized.audio,
            size_bytes=len(synthesized.audio), duration_seconds=seconds, expires_at=now + AUDIO_URL_LIFETIME,
        )
        call.context = {**call.context, "ttsCost": str(tts_cost), "audioSeconds": seconds}
        Call.objects.filter(pk=call.pk).update(context=call.context)
    url = audio_url(audio)
    disclosure = f"This is an automated voice message from {agent.display_name}." if settings.VOICE_AI_DISCLOSURE else ""
    twiml = scripted_twiml.play_message(audio_url=url, disclosure=disclosure, language=_script_language(agent))
    call = _call_place(opened, provider, twiml=twiml)
    return {
        "success": True,
        "callSid": call.call_sid,
        "status": call.status,
        "from": call.from_address,
        "to": call.to_address,
        "audioUrl": url,
        "durationSeconds": seconds,
    }


# --- transfer -----------------------------------------------------------------------------------------


def _transfer_target(agent: Agent, to: str) -> tuple[str, str | None]:
    """(E.164 number, agent id or None): `to` is a number, or another agent of the same organization."""
    value = to.strip()
    if value[:1] == "+" or value[:1].isdigit():
        return normalize_phone(value), None
    other = Agent.objects.filter(pk=value, organization_id=agent.organization_id, status=AgentStatus.ACTIVE).first()
    if other is None:
        raise ApiError(404, "agent_not_found", f"No active agent {value!r} in your organization to transfer to.",
                       field="to")
    return agent_voice_number(other, field="to"), other.pk


def call_transfer(*, agent: Agent, call_sid: str, to: str, announcement: str = "") -> dict[str, Any]:
    """Hand the agent's own live call to a number or another agent: one <Dial>, through the calls API."""
    call = call_get_of_agent(agent=agent, call_sid=call_sid)
    if call.status not in LIVE_STATUSES:
        raise ApiError(409, "call_not_live", f"Call {call_sid} is {call.status}; only a live call can be transferred.",
                       field="callSid")
    number, target_agent = _transfer_target(agent, to)
    if agent.status != AgentStatus.ACTIVE or agent.is_channel_blocked(VOICE):
        # Checks 1-2 of §6.2 come first in policy_check, so it raises the refusal any other call gets. The
        # others do not apply: the target is a colleague or a desk the caller is handed to, not a cold call.
        policy_check(agent=agent, channel=VOICE, to=number)
    provider = _telephony()
    own_number = call.from_address if call.direction == OUTBOUND else call.to_address
    twiml = scripted_twiml.transfer(to=number, caller_id=own_number, announcement=announcement,
                                    language=call.language or _language(agent))
    limits = _limits(agent)
    with transaction.atomic():
        # The transferred leg is a new call: counted against the rate limits; it is priced by the provider
        # on its own, so nothing is reserved for it here.
        record_id = usage_record_create(agent=agent, action_type="transfer_call", channel=VOICE, cost=Decimal("0"),
                                        reference=call.session_id)
        reservation = usage_reserve(agent=agent, limits=limits, organization=agent.organization, cost=Decimal("0"))
    try:
        provider.transfer_call(call.call_sid or "", twiml=twiml)
    except ProviderError as exc:
        usage_release(reservation=reservation, record_id=record_id)
        raise provider_api_error(exc) from None
    now = timezone.now()
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk)
        transfers = [*locked.context.get("transfers", []),
                     {"to": number, "agentId": target_agent, "at": now.isoformat(), "announced": bool(announcement)}]
        locked.context = {**locked.context, "transfers": transfers}
        values: dict[str, Any] = {"context": locked.context, "updated_at": now}
        if call_status_advances(locked.status, CallStatus.TRANSFERRED):
            values["status"] = CallStatus.TRANSFERRED
        Call.objects.filter(pk=call.pk).update(**values)
    return {"success": True, "callSid": call.call_sid, "transferredTo": number, "status": "transferred"}


# --- status callbacks and the call outcome --------------------------------------------------------------


def _outcome_body(call: Call) -> str:
    if call.purpose != PURPOSE_ON_BEHALF:
        return ""
    answer = call.context.get("answer") or "no_answer"
    if call.context.get("said"):
        body = f'{answer}: "{call.context["said"]}"'
    elif call.context.get("pressed"):
        body = f"{answer} (pressed {call.context['pressed']})"
    else:
        body = answer
    # On a yes, whether the requester picked up (Twilio's DialCallStatus: completed, no-answer, busy, …).
    return f"{body}; bridge: {call.context['bridge']}" if call.context.get("bridge") else body


def _call_outcome_store(call: Call, agent: Agent, update: CallStatusUpdate, route: str) -> Message:
    """The one call_outcome event of a call, stored in the caller's transaction and delivered after its
    commit like any inbound event (live session, else callbackUrl, else waiting)."""
    message = Message(
        agent=agent,
        organization_id=call.organization_id,
        direction=call.direction,
        channel=VOICE,
        kind=MessageKind.CALL_OUTCOME,
        from_address=call.from_address,
        to_address=call.to_address,
        body=_outcome_body(call),
        external_id=call.call_sid or "",
        call_sid=call.call_sid or "",
        status=call.status,
        provider=update.provider,
        cost=call.cost,
        error_code=(update.error_code or "")[:40],
        **routing.claim_at_birth(route),
    )
    message.save(force_insert=True)
    transaction.on_commit(lambda: routing.deliver_stored(message, route))
    return message


def _usage_cost(call: Call) -> Decimal | None:
    if call.cost is None:
        return None
    return call.cost + Decimal(str(call.context.get("ttsCost") or "0"))


def call_status_record(*, agent_id: str, update: CallStatusUpdate) -> bool:
    """Apply a provider's call status report: the status only moves forward; duration, end time and
    cost are recorded; the first final report stores the call's one call_outcome. Returns whether the
    status changed. Repeated and late reports change nothing (a later Price still prices the call)."""
    new_rank = CALL_STATUS_RANK.get(update.status)
    if new_rank is None or not update.call_sid:
        return False
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        return False
    # Decided before the transaction, as inbound storage does (channels_app.routing.delivery_route).
    route = routing.delivery_route(agent_id=agent.pk, channel=VOICE, callback_url=agent.callback_url)
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(agent_id=agent_id, call_sid=update.call_sid).first()
        if call is None:
            return False
        values: dict[str, Any] = {}
        advances = call_status_advances(call.status, update.status)
        # The outcome hangs on the provider's final report, not on our status: the live-voice side may
        # have recorded the end first (its socket closed), and the call must still report once. The
        # outcome's id on the call, written under the row lock, is the once-only guard.
        ends = new_rank == FINAL_RANK and not call.context.get(OUTCOME_KEY)
        if advances:
            values["status"] = update.status
        if update.duration_seconds is not None and call.duration_seconds is None:
            values["duration_seconds"] = update.duration_seconds
        if ends and call.ended_at is None:
            values["ended_at"] = now
        if update.answered_by and "answeredBy" not in call.context:
            values["context"] = {**call.context, "answeredBy": update.answered_by}
        previous_cost = _usage_cost(call)
        if update.cost is not None and update.cost != call.cost:
            values["cost"] = update.cost
        elif ends and call.cost is None:
            values["cost"] = pricing.estimate_call_cost(values.get("duration_seconds", call.duration_seconds) or 0)
        if not values and not ends:
            return False
        for name, value in values.items():
            setattr(call, name, value)
        if ends:
            outcome = _call_outcome_store(call, agent, update, route)
            call.context = values["context"] = {**call.context, OUTCOME_KEY: outcome.pk}
        Call.objects.filter(pk=call.pk).update(**values, updated_at=now)
        usage_cost = _usage_cost(call)
        if usage_cost is not None and usage_cost != previous_cost:
            usage_cost_adjust(agent=agent, reference=call.session_id, cost=usage_cost, at=call.created_at)
    return advances


# --- demo mode: simulated progress ------------------------------------------------------------------------

_simulations: set[asyncio.Task[None]] = set()


def _simulated_events(call_sid: str, talk_seconds: int) -> list[CallStatusUpdate]:
    def event(status: str, **fields: Any) -> CallStatusUpdate:
        return CallStatusUpdate(call_sid=call_sid, status=status, provider="sandbox", **fields)

    return [
        event(CallStatus.INITIATED),
        event(CallStatus.RINGING),
        event(CallStatus.IN_PROGRESS),
        event(CallStatus.COMPLETED, duration_seconds=talk_seconds,
              cost=pricing.estimate_call_cost(talk_seconds)),
    ]


def _step_seconds() -> float:
    return float(getattr(settings, "VOICE_SIMULATION_STEP_SECONDS", SIMULATION_STEP_SECONDS))


# A status event the database refused for the moment (a lock, a dropped connection) is tried again, as
# Twilio redelivers a callback we failed to take: each event is one transaction and applying it twice
# changes nothing, so a retry is safe.
SIMULATION_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)


async def _simulate(agent_id: str, events: list[CallStatusUpdate]) -> None:
    try:
        for update in events:
            await asyncio.sleep(_step_seconds())
            await run_blocking_retried(call_status_record, agent_id=agent_id, update=update,
                                       delays=SIMULATION_RETRY_DELAYS)
    except Exception:
        logger.exception("Simulated call %s stopped", events[0].call_sid)


def _simulate_in_thread(agent_id: str, events: list[CallStatusUpdate]) -> None:
    try:
        for update in events:
            time.sleep(_step_seconds())
            for delay in (*SIMULATION_RETRY_DELAYS, None):
                try:
                    with_connections(call_status_record, agent_id=agent_id, update=update)
                    break
                except OperationalError:
                    if delay is None:
                        raise
                    time.sleep(delay)
    except Exception:
        logger.exception("Simulated call %s stopped", events[0].call_sid)
    finally:
        connections.close_all()  # this thread's own connections; nothing else will close them


def simulation_schedule(*, agent_id: str, call_sid: str, talk_seconds: int) -> None:
    """Play a sandbox call's status events after the caller returns, without holding it up: on the
    server's event loop when there is one, else (commands, tests) on a thread of its own."""
    events = _simulated_events(call_sid, talk_seconds)

    def spawn() -> None:
        task = asyncio.get_running_loop().create_task(_simulate(agent_id, events))
        _simulations.add(task)
        task.add_done_callback(_simulations.discard)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = calling_event_loop()
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(spawn, context=contextvars.Context())
            return
        threading.Thread(target=_simulate_in_thread, args=(agent_id, events), name=f"sim-{call_sid[:10]}",
                         daemon=True).start()
        return
    spawn()
