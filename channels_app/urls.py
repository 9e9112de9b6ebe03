"""Provider webhook routes: /webhooks/<agentId>/<route> (contract §8)."""

from __future__ import annotations

from django.urls import path

from channels_app import webhooks
from channels_app.channel_registry import CHANNELS, resolve
from voice import webhooks as voice_webhooks
from voice import webhooks_live

urlpatterns = [
    # Each channel's inbound webhook, as its registry entry declares it.
    *(
        path(f"<str:agent_id>/{spec.webhook_route}", resolve(spec.webhook_view), name=f"webhook-{spec.webhook_route}")
        for spec in CHANNELS
    ),
    # The callbacks every channel shares, and the voice call's own steps.
    path("<str:agent_id>/message-status", webhooks.message_status_webhook, name="webhook-message-status"),
    path("<str:agent_id>/call-status", voice_webhooks.call_status_webhook, name="webhook-call-status"),
    path("<str:agent_id>/secretary", voice_webhooks.secretary_webhook, name="webhook-secretary"),
    path("<str:agent_id>/outbound-voice", webhooks_live.outbound_voice_webhook, name="webhook-outbound-voice"),
]
