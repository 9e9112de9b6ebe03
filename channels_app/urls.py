"""Provider webhook routes: /webhooks/<agentId>/<route> (contract §8)."""

from __future__ import annotations

from django.urls import path

from channels_app import webhooks
from voice import webhooks as voice_webhooks
from voice import webhooks_live

urlpatterns = [
    path("<str:agent_id>/sms", webhooks.sms_webhook, name="webhook-sms"),
    path("<str:agent_id>/whatsapp", webhooks.whatsapp_webhook, name="webhook-whatsapp"),
    path("<str:agent_id>/email", webhooks.email_webhook, name="webhook-email"),
    path("<str:agent_id>/line", webhooks.line_webhook, name="webhook-line"),
    path("<str:agent_id>/message-status", webhooks.message_status_webhook, name="webhook-message-status"),
    path("<str:agent_id>/call-status", voice_webhooks.call_status_webhook, name="webhook-call-status"),
    path("<str:agent_id>/secretary", voice_webhooks.secretary_webhook, name="webhook-secretary"),
    path("<str:agent_id>/voice", webhooks_live.voice_webhook, name="webhook-voice"),
    path("<str:agent_id>/outbound-voice", webhooks_live.outbound_voice_webhook, name="webhook-outbound-voice"),
]
