"""Provider webhooks: verify the signature on the raw body → refuse (403) or accept → dedupe → store → 200.

Delivery to the agent happens after the commit (channels_app.delivery), so the provider is answered at once.
Unknown agents, inactive agents and blocked channels get a 200 with an empty answer, so providers stop
retrying, and nothing is processed (contract §8).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from agents.crypto import decrypt
from agents.models import Agent, Channel
from channels_app import inbound, signatures
from channels_app.providers import resend_email, twilio_sms
from orchestrator import metrics
from orchestrator.compiled import CompiledSelect

logger = logging.getLogger(__name__)

View = Callable[[HttpRequest, str], HttpResponse]


# What the views and the inbound services read of the agent (acceptance, keyword replies, the
# organization of the stored row, the delivery route). Loading only these columns, without the
# model's default ORDER BY, makes the one read per webhook about 40 % cheaper; a field outside the
# list would still load on access, with a query of its own.
WEBHOOK_AGENT_FIELDS = ("id", "organization_id", "display_name", "status", "blocked_channels", "callback_url")


# One compiled statement (orchestrator.compiled) per set of extra fields: building the query cost
# more CPU than the rest of a webhook's reads and writes together.
_WEBHOOK_AGENT_READS: dict[tuple[str, ...], CompiledSelect[Agent]] = {}


def _agent(agent_id: str, *extra_fields: str) -> Agent | None:
    statement = _WEBHOOK_AGENT_READS.get(extra_fields)
    if statement is None:
        fields = (*WEBHOOK_AGENT_FIELDS, *extra_fields)
        statement = CompiledSelect(lambda agent_id: Agent.objects.only(*fields).filter(pk=agent_id)[:1])
        _WEBHOOK_AGENT_READS[extra_fields] = statement
    return statement.first(agent_id=agent_id)


def _refuse(kind: str) -> HttpResponse:
    metrics.WEBHOOKS_RECEIVED.labels(type=kind, outcome="invalid_signature").inc()
    return JsonResponse({"error": "The webhook signature is missing or invalid.", "code": "invalid_signature"}, status=403)


def _counted(kind: str, outcome: str, response: HttpResponse) -> HttpResponse:
    metrics.WEBHOOKS_RECEIVED.labels(type=kind, outcome=outcome).inc()
    return response


# Almost every answer is the empty one; rendering it with the SDK's XML builder each time cost ~0.1 ms.
_EMPTY_TWIML = str(MessagingResponse())


def twiml(reply: str | None = None) -> HttpResponse:
    if not reply:
        return HttpResponse(_EMPTY_TWIML, content_type="text/xml")
    response = MessagingResponse()
    response.message(reply)
    return HttpResponse(str(response), content_type="text/xml")


def _twilio_verified(request: HttpRequest) -> bool:
    if request.content_type == "application/json":
        # JSON bodies are signed through the bodySHA256 query parameter (part of the signed URL).
        params: Any = request.body.decode("utf-8", errors="replace")
    else:
        params = request.POST
    return signatures.twilio_signature_valid(
        url=signatures.public_url(request.get_full_path()),
        params=params,
        signature=request.headers.get("X-Twilio-Signature", ""),
        auth_token=signatures.twilio_auth_token(),
        signature_settings=request.headers.get("X-Twilio-Webhooks-Signature-Settings", ""),
    )


def _twilio_params(request: HttpRequest) -> dict[str, str]:
    if request.content_type == "application/json":
        return {key: str(value) for key, value in _json(request.body).items()}
    return request.POST.dict()


def _twilio_message_view(channel: str) -> View:
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest, agent_id: str) -> HttpResponse:
        if not _twilio_verified(request):
            return _refuse(channel)
        agent = _agent(agent_id)
        if agent is None or not inbound.agent_accepts(agent, channel):
            return _counted(channel, "ignored", twiml())
        outcome = inbound.twilio_message_receive(
            agent=agent,
            channel=channel,
            params=_twilio_params(request),
            idempotency_token=request.headers.get("I-Twilio-Idempotency-Token", ""),
        )
        return _counted(channel, "duplicate" if outcome.duplicate else "stored", twiml(outcome.reply))

    view.__name__ = f"{channel}_webhook"
    return view


sms_webhook = _twilio_message_view(Channel.SMS)
whatsapp_webhook = _twilio_message_view(Channel.WHATSAPP)


@csrf_exempt
@require_POST
def message_status_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Twilio StatusCallback for our outbound SMS/WhatsApp: forward-only status, failures to the agent."""
    if not _twilio_verified(request):
        return _refuse("message_status")
    agent = _agent(agent_id)
    if agent is None:
        return _counted("message_status", "ignored", twiml())
    update = twilio_sms.parse_status_callback(_twilio_params(request))
    changed = update is not None and inbound.outbound_status_record(agent=agent, update=update)
    return _counted("message_status", "stored" if changed else "unchanged", twiml())


@csrf_exempt
@require_POST
def email_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Resend (Svix) events: `email.received` is stored; delivery events of the agent's own emails move their
    status forward (a bounce or failure reaches the agent as a `delivery_failure`, a spam complaint opts the
    recipient out); anything else is acknowledged."""
    if not signatures.svix_signature_valid(
        body=request.body, headers=request.headers, secret=signatures.resend_webhook_secret()
    ):
        return _refuse("email")
    agent = _agent(agent_id)
    payload = _json(request.body)
    event_type = payload.get("type")
    if agent is not None and event_type in resend_email.DELIVERY_EVENTS:
        return _email_delivery_event(agent, payload)
    if agent is None or not inbound.agent_accepts(agent, Channel.EMAIL) or event_type != "email.received":
        return _counted("email", "ignored", JsonResponse({"ok": True}))
    try:
        outcome = inbound.email_received(agent=agent, event_id=request.headers["svix-id"], payload=payload)
    except inbound.ProviderUnavailable as exc:
        # Nothing stored: Svix redelivers with backoff, so the message is fetched later instead of lost.
        logger.warning("Could not fetch received email for %s: %s", agent_id, exc)
        return _counted("email", "retry", JsonResponse({"error": "Try again later.", "code": "provider_error"}, status=503))
    return _counted("email", "duplicate" if outcome.duplicate else "stored", JsonResponse({"ok": True}))


def _email_delivery_event(agent: Agent, payload: dict[str, Any]) -> HttpResponse:
    # Reports on mail the agent already sent are recorded even for a blocked channel or a suspended
    # agent, as Twilio's status callbacks are: they describe the past, not new input.
    if payload.get("type") == "email.complained":
        email_id = str((payload.get("data") or {}).get("email_id") or "")
        changed = inbound.email_complaint_record(agent=agent, email_id=email_id)
    else:
        update = resend_email.parse_delivery_event(payload)
        changed = update is not None and inbound.outbound_status_record(agent=agent, update=update)
    return _counted("email_status", "stored" if changed else "unchanged", JsonResponse({"ok": True}))


@csrf_exempt
@require_POST
def line_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    """LINE Messaging API webhook; an empty `events` list is the console's verify button."""
    # The secret depends on the agent, so the agent is read first - but nothing is written before the check.
    agent = _agent(agent_id, "line_channel_secret_encrypted")
    secret = signatures.line_channel_secret(decrypt(agent.line_channel_secret_encrypted) if agent else "")
    if not signatures.line_signature_valid(
        body=request.body, signature=request.headers.get("X-Line-Signature", ""), secret=secret
    ):
        return _refuse("line")
    if agent is None or not inbound.agent_accepts(agent, Channel.LINE):
        return _counted("line", "ignored", HttpResponse(status=200))
    outcomes = inbound.line_events_receive(agent=agent, payload=_json(request.body))
    stored = any(outcome.message_id for outcome in outcomes)
    return _counted("line", "stored" if stored else "acknowledged", HttpResponse(status=200))


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
