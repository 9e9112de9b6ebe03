"""A Telegram channel, added the way docs/architecture.md ("Adding a channel") tells a contributor to:
this one provider module plus one registry entry (SPEC). test_adding_a_channel.py registers it.

It talks to the loopback fake (tests/fake_providers.py, service `telegram`): `sendMessage` of the Bot
API. Telegram signs a webhook by echoing the secret token given to `setWebhook` in the
`X-Telegram-Bot-Api-Secret-Token` header.
"""

from __future__ import annotations

import hmac
import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from channels_app import inbound, webhooks
from channels_app.channel_registry import ChannelSpec
from channels_app.providers import registry, sandbox
from channels_app.providers.base import (
    MessagingProvider,
    OutboundMessage,
    ProviderError,
    ProviderNotConfigured,
    SendResult,
)
from orchestrator.errors import ApiError

NAME = "telegram"
HERE = __name__

SPEC = ChannelSpec(
    name=NAME,
    label="Telegram",
    capability=NAME,
    address_kind=NAME,
    price_key=NAME,
    price="0.0021",
    webhook_route=NAME,
    webhook_view=f"{HERE}.telegram_webhook",
    provider_factory=f"{HERE}.telegram_provider",
    recipient=f"{HERE}.normalize_chat_id",
    address_factory=f"{HERE}.bot_address",
)


class TelegramProvider:
    name = NAME

    def __init__(self, *, base_url: str, token: str) -> None:
        self.url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"

    def send(self, message: OutboundMessage) -> SendResult:
        payload = json.dumps({"chat_id": message.to_address, "text": message.body}).encode()
        request = urllib.request.Request(self.url, data=payload, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the configured API URL
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            error = json.load(exc)
            raise ProviderError(str(error.get("description")), provider=NAME, permanent=exc.code < 500,
                                code=str(error.get("error_code")), status=exc.code) from None
        # The Bot API does not price messages: the registry's price is what usage records.
        return SendResult(external_id=str(answer["result"]["message_id"]), status="sent", provider=NAME,
                          from_address=message.from_address, to_address=message.to_address)


def telegram_provider(*, credentials: dict[str, str] | None = None) -> MessagingProvider:
    if settings.DEMO_MODE:
        return sandbox.SandboxMessagingProvider(NAME)
    token = getattr(settings, "TELEGRAM_BOT_TOKEN", "")
    if not token:
        raise ProviderNotConfigured(NAME, ("TELEGRAM_BOT_TOKEN",))
    return registry.live(TelegramProvider(base_url=settings.TELEGRAM_API_BASE_URL, token=token))


def normalize_chat_id(value: str, *, field: str = "to") -> str:
    """A chat id is an integer (negative for groups)."""
    text = value.strip()
    if not text.lstrip("-").isdigit():
        raise ApiError(400, "invalid_request", f"{value!r} is not a Telegram chat id.", field=field)
    return text


def bot_address(*, agent_id: str, request: Any) -> str:
    """The agent's bot, by username."""
    return f"{agent_id.replace('-', '_')}_bot"


@csrf_exempt
@require_POST
def telegram_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    """An Update from the Bot API: verify → store once (update_id) → 200."""
    secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(secret.encode(), settings.TELEGRAM_WEBHOOK_SECRET.encode()):
        return webhooks.refuse_signature(NAME)
    agent = webhooks.webhook_agent(agent_id)
    if agent is None or not inbound.agent_accepts(agent, NAME):
        return webhooks.counted(NAME, "ignored", JsonResponse({"ok": True}))
    update = json.loads(request.body)
    message = update.get("message") or {}
    outcome = inbound.message_receive(
        agent=agent,
        channel=NAME,
        provider=NAME,
        event_id=str(update.get("update_id", "")),
        from_address=str((message.get("chat") or {}).get("id", "")),
        to_address=bot_address(agent_id=agent.pk, request=None),
        body=str(message.get("text") or ""),
        external_id=str(message.get("message_id", "")),
    )
    return webhooks.counted(NAME, "duplicate" if outcome.duplicate else "stored", JsonResponse({"ok": True}))
