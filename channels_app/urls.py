"""Provider webhook routes: /webhooks/<agentId>/<route> (contract §8)."""

from __future__ import annotations

from django.urls import path

from channels_app import webhooks
from voice import webhooks as voice_webhooks
from voice import webhooks_live

urlpatterns = [
    # The callbacks every channel shares, and the voice call's own steps.
    path("<str:agent_id>/message-status", webhooks.message_status_webhook, name="webhook-message-status"),
    path("<str:agent_id>/call-status", voice_webhooks.call_status_webhook, name="webhook-call-status"),
    path("<str:agent_id>/secretary", voice_webhooks.secretary_webhook, name="webhook-secretary"),
    path("<str:agent_id>/outbound-voice", webhooks_live.outbound_voice_webhook, name="webhook-outbound-voice"),
    # Each channel's inbound webhook, served by the view its registry entry names (any other route is 404).
    path("<str:agent_id>/<str:route>", webhooks.channel_webhook, name="webhook-channel"),
]
