"""Twilio's callbacks for outbound calls and the voice-message audio route (contract §8).

- POST /webhooks/<agentId>/call-status: Twilio's call status callback; the status only moves forward and
  the report that ends a call produces its one call_outcome. Answers `<Response/>`, also to repeats and
  to calls we do not know (so Twilio stops retrying). Like message-status, reports are recorded even
  for a suspended agent or a blocked voice channel: they describe calls already made.
- POST /webhooks/<agentId>/secretary?session=…: the call-on-behalf secretary's <Gather> action, and
  (`&step=bridge`) the <Dial> action that says whether the requester picked up.
- GET /media/voice/<token>.<mp3|wav>: the audio a voice message's <Play> fetches; 404 once expired.

Both Twilio routes check X-Twilio-Signature on the raw request, over PUBLIC_BASE_URL + path + query,
before anything is read or written; a bad or missing signature is 403.
"""

from __future__ import annotations

import math

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from agents.models import Agent, AgentStatus
from channels_app.providers.twilio_voice import parse_call_status
from channels_app.webhooks import refuse_signature, twilio_params
from orchestrator import metrics
from voice import scripted_twiml
from voice.outbound import (
    SECRETARY_BRIDGE_STEP,
    VOICE,
    call_status_record,
    secretary_answer_record,
    secretary_bridge_record,
)
from voice.selectors import voice_audio_get_live


def _count(kind: str, outcome: str) -> None:
    metrics.labelled(metrics.WEBHOOKS_RECEIVED, type=kind, outcome=outcome).inc()


def _twiml(document: str, kind: str, outcome: str) -> HttpResponse:
    _count(kind, outcome)
    return HttpResponse(document, content_type="text/xml")


@csrf_exempt
@require_POST
def call_status_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    params = twilio_params(request)
    if params is None:
        return refuse_signature("call_status")
    update = parse_call_status(params)
    changed = update is not None and call_status_record(agent_id=agent_id, update=update)
    return _twiml(scripted_twiml.empty(), "call_status", "stored" if changed else "unchanged")


@csrf_exempt
@require_POST
def secretary_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    params = twilio_params(request)
    if params is None:
        return refuse_signature("secretary")
    agent = Agent.objects.filter(pk=agent_id).only("status", "blocked_channels").first()
    if agent is None or agent.status != AgentStatus.ACTIVE or agent.is_channel_blocked(VOICE):
        return _twiml(scripted_twiml.empty(), "secretary", "ignored")
    session_id = request.GET.get("session", "")
    if request.GET.get("step") == SECRETARY_BRIDGE_STEP:
        document = secretary_bridge_record(agent_id=agent_id, session_id=session_id,
                                           dial_status=params.get("DialCallStatus", ""))
        return _twiml(document, "secretary", "stored")
    try:
        attempt = int(request.GET.get("attempt", "1"))
    except ValueError:
        attempt = 1
    document = secretary_answer_record(
        agent_id=agent_id,
        session_id=session_id,
        speech=params.get("SpeechResult", ""),
        digits=params.get("Digits", ""),
        attempt=attempt,
    )
    return _twiml(document, "secretary", "stored")


@require_safe
def voice_audio(request: HttpRequest, token: str, extension: str) -> HttpResponse:
    """Public (Twilio fetches <Play> URLs without credentials): the unguessable token is the access."""
    audio = voice_audio_get_live(token=token)
    if audio is None:
        return JsonResponse({"error": "No such audio, or its URL has expired.", "code": "not_found"}, status=404)
    response = HttpResponse(bytes(audio.audio), content_type=audio.content_type)
    remaining = math.floor((audio.expires_at - timezone.now()).total_seconds())
    response["Cache-Control"] = f"private, max-age={max(0, remaining)}"
    response["Content-Length"] = str(audio.size_bytes)
    return response
