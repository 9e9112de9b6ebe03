"""Provider webhooks: verify the signature on the raw body → refuse (403) or accept → dedupe → store → 200.

Delivery to the agent happens after the commit (channels_app.delivery), so the provider is answered at once.
Unknown agents, inactive agents and blocked channels get a 200 with an empty answer, so providers stop
retrying, and nothing is processed (contract §8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import BadRequest, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from agents.crypto import decrypt
from agents.models import Agent
from channels_app import channel_registry, inbound, signatures
from channels_app.providers import resend_email, twilio_sms
from orchestrator import json_input, metrics, sql

logger = logging.getLogger(__name__)

View = Callable[[HttpRequest, str], HttpResponse]


# What the views and the inbound services read of the agent (acceptance, keyword replies, the
# organization of the stored row, the delivery route). Loading only these columns, without the
# model's default ORDER BY, makes the one read per webhook about 40 % cheaper; a field outside the
# list would still load on access, with a query of its own.
WEBHOOK_AGENT_FIELDS = (
    "id", "organization_id", "display_name", "status", "blocked_channels", "callback_url", "callback_secret_encrypted",
)


def _agent(agent_id: str, *extra_fields: str) -> Agent | None:
    # Plain SQL (orchestrator.sql): building the query cost more CPU than the rest of a webhook's reads
    # and writes together.
    return sql.agent_only(agent_id, (*WEBHOOK_AGENT_FIELDS, *extra_fields))


def _count(kind: str, outcome: str) -> None:
    metrics.labelled(metrics.WEBHOOKS_RECEIVED, type=kind, outcome=outcome).inc()


def _refuse(kind: str) -> HttpResponse:
    _count(kind, "invalid_signature")
    return JsonResponse({"error": "The webhook signature is missing or invalid.", "code": "invalid_signature"}, status=403)


def _counted(kind: str, outcome: str, response: HttpResponse) -> HttpResponse:
    _count(kind, outcome)
    return response


# Almost every answer is the empty one; rendering it with the SDK's XML builder each time cost ~0.1 ms,
# and handing HttpResponse bytes skips its charset lookup and encoding (half its cost).
_EMPTY_TWIML = str(MessagingResponse()).encode()


def twiml(reply: str | None = None) -> HttpResponse:
    if not reply:
        return HttpResponse(_EMPTY_TWIML, content_type="text/xml")
    response = MessagingResponse()
    response.message(reply)
    return HttpResponse(str(response), content_type="text/xml")


def _twilio_form(request: HttpRequest) -> list[tuple[str, str]]:
    """The posted form as (name, value) pairs, repeated names kept: what Twilio signed.

    A urlencoded body (every Twilio webhook) is parsed as HttpRequest.POST parses it, without building
    the QueryDict, which cost as much as the parse itself; other form types go through request.POST.
    """
    if request.content_type != "application/x-www-form-urlencoded":
        return [(name, value) for name, values in request.POST.lists() for value in values]
    # From here on, HttpRequest._load_post_and_files and QueryDict.__init__ (Django 5.2) step by step.
    if request.encoding is not None and request.encoding.lower() != "utf-8":
        raise BadRequest("HTTP requests with the 'application/x-www-form-urlencoded' content type must be UTF-8 encoded.")
    body = request.body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")
    try:
        return parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        )
    except ValueError as exc:
        raise TooManyFieldsSent(
            "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."
        ) from exc


def _twilio_params(request: HttpRequest) -> dict[str, str] | None:
    """The fields of a Twilio request if its signature is valid, else None (the caller answers 403).

    The form is parsed once, for the signature and for the fields. A field sent twice keeps its last
    value, as QueryDict.dict() did; the signature covers every value.
    """
    signed: list[tuple[str, str]] | str
    if request.content_type == "application/json":
        # JSON bodies are signed through the bodySHA256 query parameter (part of the signed URL).
        signed = request.body.decode("utf-8", errors="replace")
    else:
        signed = _twilio_form(request)
    # META directly: request.headers would build a mapping of every header for the two we read.
    meta = request.META
    if not signatures.twilio_signature_valid(
        url=signatures.public_url(request.get_full_path()),
        params=signed,
        signature=meta.get("HTTP_X_TWILIO_SIGNATURE", ""),
        auth_token=signatures.twilio_auth_token(),
        signature_settings=meta.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS", ""),
    ):
        return None
    if isinstance(signed, str):
        return {key: str(value) for key, value in _json(request.body).items()}
    return dict(signed)


def twilio_params(request: HttpRequest) -> dict[str, str] | None:
    """The fields of a signed Twilio request, None when its signature is missing or wrong (answer 403).

    For the other apps' Twilio webhooks (voice), so every Twilio route checks signatures one way."""
    return _twilio_params(request)


def refuse_signature(kind: str) -> HttpResponse:
    """The 403 `invalid_signature` answer of every webhook, counted."""
    return _refuse(kind)


def webhook_agent(agent_id: str, *extra_fields: str) -> Agent | None:
    """The agent a webhook is for (the columns the inbound services read, plus `extra_fields`), or None."""
    return _agent(agent_id, *extra_fields)


def counted(kind: str, outcome: str, response: HttpResponse) -> HttpResponse:
    """`response`, counted in mcp_webhook_received_total{type=kind, outcome}."""
    return _counted(kind, outcome, response)


def _twilio_message_view(channel: str) -> View:
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest, agent_id: str) -> HttpResponse:
        params = _twilio_params(request)
        if params is None:
            return _refuse(channel)
        agent = _agent(agent_id)
        if agent is None or not inbound.agent_accepts(agent, channel):
            return _counted(channel, "ignored", twiml())
        outcome = inbound.twilio_message_receive(
            agent=agent,
            channel=channel,
            params=params,
            idempotency_token=request.META.get("HTTP_I_TWILIO_IDEMPOTENCY_TOKEN", ""),
        )
        return _counted(channel, "duplicate" if outcome.duplicate else "stored", twiml(outcome.reply))

    view.__name__ = f"{channel}_webhook"
    return view


sms_webhook = _twilio_message_view("sms")
whatsapp_webhook = _twilio_message_view("whatsapp")


@csrf_exempt
@require_POST
def message_status_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Twilio StatusCallback for our outbound SMS/WhatsApp: forward-only status, failures to the agent."""
    params = _twilio_params(request)
    if params is None:
        return _refuse("message_status")
    agent = _agent(agent_id)
    if agent is None:
        return _counted("message_status", "ignored", twiml())
    update = twilio_sms.parse_status_callback(params)
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
    if agent is None or not inbound.agent_accepts(agent, "email") or event_type != "email.received":
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
    if agent is None or not inbound.agent_accepts(agent, "line"):
        return _counted("line", "ignored", HttpResponse(status=200))
    outcomes = inbound.line_events_receive(agent=agent, payload=_json(request.body))
    stored = any(outcome.message_id for outcome in outcomes)
    return _counted("line", "stored" if stored else "acknowledged", HttpResponse(status=200))


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json_input.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@csrf_exempt
def channel_webhook(request: HttpRequest, agent_id: str, route: str) -> HttpResponse:
    """/webhooks/<agentId>/<route>: the view of the channel whose registry entry declares `route`."""
    spec = channel_registry.spec_for_route(route)
    if spec is None:
        raise Http404("No such webhook.")
    view: View = channel_registry.resolve(spec.webhook_view)
    return view(request, agent_id)
