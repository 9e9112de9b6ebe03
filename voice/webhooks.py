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

import json
import math
from urllib.parse import parse_qsl

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from agents.models import Agent, AgentStatus
from channels_app import signatures
from channels_app.providers.twilio_voice import parse_call_status
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


def _verified_twilio_params(request: HttpRequest) -> dict[str, str] | None:
    """The request's fields if Twilio signed it, else None. Form bodies are signed with their fields;
    JSON bodies through the bodySHA256 query parameter, which is part of the signed URL."""
    signed: list[tuple[str, str]] | str
    if request.content_type == "application/json":
        signed = request.body.decode("utf-8", errors="replace")
    else:
        signed = parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    if not signatures.twilio_signature_valid(
        url=signatures.public_url(request.get_full_path()),
        params=signed,
        signature=request.META.get("HTTP_X_TWILIO_SIGNATURE", ""),
        auth_token=signatures.twilio_auth_token(),
        signature_settings=request.META.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS", ""),
    ):
        return None
    if isinstance(signed, str):
        try:
            payload = json.loads(signed)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in payload.items()} if isinstance(payload, dict) else {}
    return dict(signed)


def _refuse(kind: str) -> JsonResponse:
    _count(kind, "invalid_signature")
    return JsonResponse({"error": "The webhook signature is missing or invalid.", "code": "invalid_signature"},
                        status=403)


@csrf_exempt
@require_POST
def call_status_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    params = _verified_twilio_params(request)
    if params is None:
        return _refuse("call_status")
    update = parse_call_status(params)
    changed = update is not None and call_status_record(agent_id=agent_id, update=update)
    return _twiml(scripted_twiml.empty(), "call_status", "stored" if changed else "unchanged")


@csrf_exempt
@require_POST
def secretary_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    params = _verified_twilio_params(request)
    if params is None:
        return _refuse("secretary")
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
