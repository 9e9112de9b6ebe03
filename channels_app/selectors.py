"""Reads over messages: the waiting-message object (contract §6.3) and the WhatsApp 24-hour window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from channels_app.models import Direction, Message
from orchestrator.timestamps import iso_utc


def waiting_message_object(message: Message) -> dict[str, Any]:
    """The contract §6.3 shape: what is pushed, POSTed to a callbackUrl, or returned by waiting-messages."""
    return {
        "id": message.id,
        "agentId": message.agent_id,
        "channel": message.channel,
        "kind": message.kind,
        "direction": message.direction,
        "from": message.from_address,
        "to": message.to_address,
        "subject": message.subject or None,
        "body": message.body,
        "mediaUrls": list(message.media_urls or []),
        "externalId": message.external_id or None,
        "callSid": message.call_sid or None,
        "status": message.status,
        "reason": message.error_code or None,
        "createdAt": iso_utc(message.created_at),
    }


def contact_last_inbound_at(*, agent_id: str, channel: str, contact: str) -> datetime | None:
    """When `contact` last wrote to the agent on `channel`; WhatsApp free text is allowed within 24 h of it.

    `contact` is the bare address (E.164 for WhatsApp, without the `whatsapp:` prefix): inbound
    webhooks store it that way.
    """
    return (
        Message.objects.filter(
            agent_id=agent_id, channel=channel, direction=Direction.INBOUND, from_address=contact
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
