"""Outbound messages: send (policy → persist → provider → outcome) and delivery status reports.

A send writes its Message row, its usage record (at the estimated cost) and its limit counters in one
transaction before the provider call, and the outcome after, so a crash in between leaves a `pending`
row that says so. The outcome is one UPDATE unless the provider's price differs from the estimate. A
provider refusal leaves a `failed` row, gives back the counters and deletes the usage record: nothing
is charged or counted as sent. Demo mode's sandbox goes through the same steps, so demo sends exercise
(and benchmarks measure) the path live sends take.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import Field

from agents.consent import opt_out_channels, opt_out_record
from agents.crypto import decrypt
from agents.models import Agent, AgentLimits
from agents.usage import Reservation, usage_record_create, usage_release, usage_reprice
from channels_app.addresses import normalize_recipient
from channels_app.channel_registry import BY_NAME, message_channels, resolve
from channels_app.models import Direction, Message, MessageStatus
from channels_app.policy import policy_check, policy_reserve
from channels_app.providers.base import (
    OutboundMessage,
    ProviderError,
    ProviderNotConfigured,
    SendResult,
)
from orchestrator import metrics, sql
from orchestrator.errors import ApiError
from orchestrator.operations import OperationInput, one_of

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# MessageStatus.values builds a new list on every read.
MESSAGE_STATUSES = frozenset(MessageStatus.values)


if TYPE_CHECKING:
    MessageChannel = str
else:
    # The registry's names, so the REST, MCP and OpenAPI schemas enumerate exactly those.
    MessageChannel = one_of(message_channels)


class SendMessageInput(OperationInput):
    agent_id: str | None = Field(default=None, description="Optional with an agent token (taken from it).")
    to: str = Field(description="E.164 number (sms, whatsapp), email address, or LINE user id.")
    body: str = Field(description="The text, sent byte-exact.")
    channel: MessageChannel = "sms"
    subject: str | None = Field(default=None, description="Required for email.")
    html: str | None = None
    template_id: str | None = Field(default=None, description="WhatsApp template (Content SID); needed outside "
                                    "the 24-hour window.")
    template_vars: dict[str, Any] | None = None
    media_urls: list[str] | None = Field(default=None, description="Media by http(s) URL.")
    media_url: str | None = Field(default=None, description="A single media URL (same as mediaUrls: [url]).")
    idempotency_key: str | None = Field(default=None, max_length=200, description="Same key within 24 h: the "
                                        "first result is returned and nothing is sent again.")

    def all_media_urls(self) -> tuple[str, ...]:
        """mediaUrls and mediaUrl together, in that order."""
        return (*(self.media_urls or ()), *((self.media_url,) if self.media_url else ()))


def send_result(message: Message) -> dict[str, Any]:
    """The send-message success body (contract §6.1); replayed as-is for a repeated idempotencyKey."""
    return {
        "success": True,
        "messageId": message.pk,
        "externalId": message.external_id or None,
        "status": message.status,
        "channel": message.channel,
        "from": message.from_address,
        "to": message.to_address,
        "cost": float(message.cost) if message.cost is not None else None,
    }


def provider_api_error(error: ProviderNotConfigured | ProviderError) -> ApiError:
    """A provider failure as the API answers it (contract §1, §3)."""
    if isinstance(error, ProviderNotConfigured):
        return ApiError(503, "provider_not_configured", str(error), hint=f"Set {', '.join(error.variables)}.")
    if error.reason == "recipient_opted_out":
        return ApiError(403, "opted_out", "The recipient has opted out at the provider (replied STOP).",
                        providerCode=error.code, hint="The contact can opt back in by replying START.")
    if error.reason == "whatsapp_window_closed":
        return ApiError(409, "whatsapp_window_closed", error.message, providerCode=error.code,
                        hint="Send an approved template instead: give templateId and templateVars.")
    return ApiError(
        502,
        "provider_error",
        f"{error.provider} refused the request: {error.message}",
        provider=error.provider,
        providerCode=error.code,
        providerStatus=error.status,
        permanent=error.permanent,
    )


def _validate(request: SendMessageInput) -> SendMessageInput:
    """The request checked, in the form the rest of the send reads: recipient normalised, absent optional
    fields as empty values, mediaUrl folded into mediaUrls."""
    if request.channel not in message_channels():
        raise ApiError(400, "invalid_request", f"Unknown channel {request.channel!r}; use one of "
                       f"{', '.join(message_channels())}.", field="channel")
    media = request.all_media_urls()
    if request.channel == "email" and not (request.subject or "").strip():
        raise ApiError(400, "invalid_request", "An email needs a subject.", field="subject")
    if not request.body and not media and not request.template_id:
        raise ApiError(400, "invalid_request", "body must not be empty.", field="body")
    for index, url in enumerate(media):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError(400, "invalid_request", f"Media travels by http(s) URL; {url!r} is not one.",
                           field=f"mediaUrls.{index}")
    to = normalize_recipient(request.channel, request.to)
    return request.model_copy(update={
        "to": to, "subject": request.subject or "", "template_vars": request.template_vars or {},
        "media_urls": list(media), "media_url": None, "idempotency_key": request.idempotency_key or "",
    })


def sender_address(agent: Agent, channel: str) -> str:
    """The agent's own address on the channel (its number, WhatsApp sender, email, LINE bot)."""
    if channel == "line":
        return agent.pk
    return _sender_address_from(agent, channel, sql.sender_address(agent.pk, BY_NAME[channel].address_kind))


def _sender_address_from(agent: Agent, channel: str, found: str | None) -> str:
    """sender_address() given the value of the agent's address row for the channel (None: no row)."""
    spec = BY_NAME[channel]
    if found:
        return found
    if spec.default_address:
        return str(resolve(spec.default_address)(agent.pk))
    raise ApiError(400, "channel_not_provisioned", f"Agent {agent.pk!r} has no {channel} number.",
                   field="channel", hint=f"Provision the agent with the {channel!r} capability.")


def line_credentials(agent: Agent) -> dict[str, str]:
    token = decrypt(agent.line_channel_access_token_encrypted)
    if not token:
        return {}
    return {"channel_access_token": token, "channel_secret": decrypt(agent.line_channel_secret_encrypted)}


def _idempotent_replay(agent: Agent, key: str) -> Message | None:
    """The first message sent with this key in the last 24 hours; an older one frees the key."""
    previous = Message.objects.filter(agent=agent, idempotency_key=key).first()
    if previous is None:
        return None
    if previous.created_at >= timezone.now() - IDEMPOTENCY_WINDOW:
        return previous
    Message.objects.filter(pk=previous.pk, idempotency_key=key).update(idempotency_key="")
    return None


def message_send(*, agent: Agent, request: SendMessageInput) -> dict[str, Any]:
    """Send one message after the §6.2 policy checks; returns the §6.1 send-message body."""
    from channels_app.providers.registry import messaging_provider

    request = _validate(request)
    media = request.all_media_urls()
    idempotency_key = request.idempotency_key or ""
    if idempotency_key:
        previous = _idempotent_replay(agent, idempotency_key)
        if previous is not None:
            return send_result(previous)
    if request.channel == "line":
        policy_check(agent=agent, channel=request.channel, to=request.to)
        from_address = agent.pk
    else:  # the two reads of every send as one statement (orchestrator.sql)
        found, opted_out = sql.sender_address_and_opted_out(
            agent.pk, BY_NAME[request.channel].address_kind, opt_out_channels(request.channel), request.to)
        policy_check(agent=agent, channel=request.channel, to=request.to, opted_out=opted_out)
        from_address = _sender_address_from(agent, request.channel, found)
    credentials = line_credentials(agent) if request.channel == "line" else {}
    try:
        provider = messaging_provider(request.channel, credentials=credentials or None)
    except ProviderNotConfigured as exc:
        raise provider_api_error(exc) from None
    from channels_app.providers.pricing import estimate_message_cost

    estimate, _segments = estimate_message_cost(request.channel, request.body, len(media))
    limits = getattr(agent, "limits", None) or AgentLimits.objects.get_or_create(agent=agent)[0]
    try:
        with transaction.atomic():
            # The rows first, the limit counters last: on PostgreSQL the counters' row locks (shared by every
            # send of the agent and of its organization) are then held only until the commit just after.
            message = sql.insert(Message(
                agent=agent,
                organization_id=agent.organization_id,
                direction=Direction.OUTBOUND,
                channel=request.channel,
                from_address=from_address,
                to_address=request.to,
                subject=request.subject or "",
                body=request.body,
                html=request.html,
                media_urls=list(media),
                status=MessageStatus.PENDING,
                provider=provider.name,
                idempotency_key=idempotency_key,
            ))
            record_id = usage_record_create(agent=agent, action_type="send_message", channel=request.channel,
                                            cost=estimate, reference=message.pk)
            reservation = policy_reserve(agent=agent, limits=limits, channel=request.channel, to=request.to,
                                         cost=estimate, template_id=request.template_id)
    except IntegrityError:
        # A concurrent request with the same idempotencyKey won the insert: answer with its message.
        previous = Message.objects.filter(agent=agent, idempotency_key=idempotency_key).first()
        if previous is None:
            raise
        return send_result(previous)

    outbound = OutboundMessage(
        channel=request.channel,
        from_address=from_address,
        to_address=request.to,
        body=request.body,
        subject=request.subject or "",
        html=request.html,
        media_urls=media,
        template_id=request.template_id,
        template_vars=request.template_vars or {},
        agent_id=agent.pk,
        # Our message id doubles as the provider's idempotency key, so a provider-side retry sends once.
        idempotency_key=message.pk,
        credentials=credentials,
    )
    try:
        result = provider.send(outbound)
    except ProviderError as exc:
        _record_refusal(message, reservation, record_id, code=exc.code or exc.reason, detail=exc.message)
        if exc.reason == "recipient_opted_out":
            opt_out_record(agent=agent, channel=request.channel, contact=request.to, keyword="PROVIDER")
        raise provider_api_error(exc) from None
    except ProviderNotConfigured as exc:
        _record_refusal(message, reservation, record_id, code="provider_not_configured", detail=str(exc))
        raise provider_api_error(exc) from None
    except Exception as exc:
        _record_refusal(message, reservation, record_id, code="internal_error", detail=repr(exc))
        raise
    return _record_sent(message, reservation, record_id, result)


def _record_refusal(message: Message, reservation: Reservation, record_id: int, *, code: str, detail: str) -> None:
    """The provider refused: the row says failed, the usage reservation and record are given back, the key is
    freed so that a retry with the same idempotencyKey sends again."""
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(
            status=MessageStatus.FAILED, error_code=code[:40], error_message=detail, idempotency_key="",
            updated_at=timezone.now(),
        )
        usage_release(reservation=reservation, record_id=record_id)


def _record_sent(message: Message, reservation: Reservation, record_id: int, result: SendResult) -> dict[str, Any]:
    status = result.status if result.status in MESSAGE_STATUSES else MessageStatus.QUEUED
    cost = result.cost if result.cost is not None else reservation.spend
    def record() -> None:
        sql.message_sent(message_id=message.pk, status=status, external_id=result.external_id, cost=cost,
                         provider=result.provider, updated_at=timezone.now())

    if cost == reservation.spend:
        # The usage record and counters written with the reservation already hold this cost: one statement.
        record()
    else:
        with transaction.atomic():
            record()
            usage_reprice(reservation=reservation, record_id=record_id, cost=cost)
    metrics.labelled(metrics.MESSAGES_SENT, channel=message.channel).inc()
    message.status, message.external_id, message.cost = status, result.external_id, cost
    return send_result(message)
