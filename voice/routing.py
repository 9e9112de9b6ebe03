"""WebSocket routes of the voice app (mounted by orchestrator.routing)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from voice.consumers import VoiceSocketConsumer

websocket_urlpatterns: list[Any] = [
    path("webhooks/<str:agent_id>/voice-ws", VoiceSocketConsumer.as_asgi()),
]
