"""WhatsApp through Twilio's Messaging API.

Quirks: both addresses carry the `whatsapp:` prefix on the wire (we store plain E.164); templates are
Twilio Content API templates (ContentSid `HX…` + ContentVariables as a JSON object string) and replace
the body; free text outside the 24-hour session fails with 63016, mapped to reason
"whatsapp_window_closed". WhatsApp messages report "read" as a final status.

Inbound routing: a pooled sender's incoming-message webhook lives on the sender itself (Senders API,
messaging.twilio.com/v2/Channels/Senders/XE…, JSON body), not on a phone number. Assigning a sender to an
agent points it at that agent's webhooks. Senders registered the legacy way have no `XE` SID and must be
pointed at us in the Twilio console.
"""

from __future__ import annotations

import json
from typing import Any

from twilio.rest.messaging.v2.channels_sender import ChannelsSenderList

from channels_app.providers import twilio_client
from channels_app.providers.base import OutboundMessage, webhook_url
from channels_app.providers.twilio_sms import TwilioSmsProvider

PREFIX = "whatsapp:"


def wire_address(value: str) -> str:
    return value if value.startswith(PREFIX) else PREFIX + value


def plain_address(value: str) -> str:
    """Strip the prefix from an address Twilio sends us (inbound `From`, status callbacks)."""
    return value[len(PREFIX) :] if value.startswith(PREFIX) else value


class TwilioWhatsAppProvider(TwilioSmsProvider):
    channel = "whatsapp"

    def address(self, value: str) -> str:
        return wire_address(value)

    def content_params(self, message: OutboundMessage) -> dict[str, Any]:
        if message.template_id:
            params: dict[str, Any] = {"content_sid": message.template_id}
            if message.template_vars:
                params["content_variables"] = json.dumps(
                    {str(k): str(v) for k, v in message.template_vars.items()}, ensure_ascii=False
                )
            return params
        return {"body": message.body}


def configure_sender(sender_sid: str, *, agent_id: str) -> bool:
    """Point a WhatsApp sender's inbound and status webhooks at the agent; False when the SID is not a
    Senders API sender (nothing to configure through the API)."""
    if not sender_sid.startswith("XE"):
        return False
    update = ChannelsSenderList.MessagingV2ChannelsSenderRequestsUpdate(
        {
            "webhook": {
                "callback_url": webhook_url(agent_id, "whatsapp"),
                "callback_method": "POST",
                "status_callback_url": webhook_url(agent_id, "message-status"),
                "status_callback_method": "POST",
            }
        }
    )
    client = twilio_client.client("whatsapp")
    with twilio_client.translate_errors():
        client.messaging.v2.channels_senders(sender_sid).update(update)
    return True
