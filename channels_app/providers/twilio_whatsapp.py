"""WhatsApp through Twilio's Messaging API.

Quirks: both addresses carry the `whatsapp:` prefix on the wire (we store plain E.164); templates are
Twilio Content API templates (ContentSid `HX…` + ContentVariables as a JSON object string) and replace
the body; free text outside the 24-hour session fails with 63016, mapped to reason
"whatsapp_window_closed". WhatsApp messages report "read" as a final status.
"""

from __future__ import annotations

import json
from typing import Any

from channels_app.providers.base import OutboundMessage
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
