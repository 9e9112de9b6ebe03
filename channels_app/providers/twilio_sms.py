"""SMS (and MMS) through Twilio Programmable Messaging.

Quirks: every send carries StatusCallback = PUBLIC_BASE_URL/webhooks/<agentId>/message-status so delivery
reports reach us (contract §8); Twilio returns status "queued"/"accepted" and no price at creation, so the
cost is the price table's per-segment estimate until a later report says otherwise; `num_segments` comes
back as a string.
"""

from __future__ import annotations

from typing import Any

from channels_app.providers import pricing, twilio_client
from channels_app.providers.base import OutboundMessage, SendResult, StatusUpdate, webhook_url


class TwilioSmsProvider:
    name = "twilio"
    channel = "sms"

    def address(self, value: str) -> str:
        """The address as Twilio wants it on the wire for this channel."""
        return value

    def send(self, message: OutboundMessage) -> SendResult:
        client = twilio_client.client(self.channel)
        params: dict[str, Any] = {
            "to": self.address(message.to_address),
            "status_callback": status_callback_url(message),
        }
        if message.from_address.startswith("MG"):
            # A Messaging Service SID: Twilio picks the sender from the service's pool.
            params["messaging_service_sid"] = message.from_address
        else:
            params["from_"] = self.address(message.from_address)
        params.update(self.content_params(message))
        if message.media_urls:
            params["media_url"] = list(message.media_urls)
        with twilio_client.translate_errors():
            created = client.messages.create(**params)
        return self.result(message, created)

    def content_params(self, message: OutboundMessage) -> dict[str, Any]:
        return {"body": message.body}

    def result(self, message: OutboundMessage, created: Any) -> SendResult:
        provider_cost = twilio_client.parse_price(created.price)
        estimate, segments = pricing.estimate_message_cost(self.channel, message.body, len(message.media_urls))
        if created.num_segments not in (None, ""):
            segments = int(created.num_segments)
            if self.channel == "sms" and not message.media_urls:
                estimate = pricing.unit_price("sms") * segments
        return SendResult(
            external_id=str(created.sid),
            status=twilio_client.message_status(created.status),
            provider=self.name,
            cost=provider_cost if provider_cost is not None else estimate,
            cost_estimated=provider_cost is None,
            from_address=message.from_address,
            to_address=message.to_address,
            segments=segments,
        )


def status_callback_url(message: OutboundMessage) -> str | None:
    if message.status_callback_url:
        return message.status_callback_url
    if message.agent_id:
        return webhook_url(message.agent_id, "message-status")
    return None


def parse_status_callback(form: dict[str, str]) -> StatusUpdate | None:
    """A Twilio message status callback (MessageSid, MessageStatus, ErrorCode, ...) as a StatusUpdate.

    Returns None for a form without MessageSid/MessageStatus (not a message status report).
    Twilio sends ErrorCode only for failed/undelivered; `Price` is absent from message callbacks in
    practice but is honoured when present.
    """
    sid = form.get("MessageSid") or form.get("SmsSid")
    raw_status = form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not raw_status:
        return None
    return StatusUpdate(
        external_id=sid,
        status=twilio_client.message_status(raw_status),
        provider=twilio_client.PROVIDER,
        error_code=form.get("ErrorCode") or None,
        error_message=form.get("ErrorMessage") or None,
        cost=twilio_client.parse_price(form.get("Price")),
    )
