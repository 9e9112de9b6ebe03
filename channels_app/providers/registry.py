"""Which provider serves a channel: the sandbox set in DEMO_MODE, else the configured real provider.

Live mode never falls back to the sandbox: an unconfigured channel raises ProviderNotConfigured, which the
API answers with 503 `provider_not_configured` (contract §1). Adapters are stateless and cheap to build;
the expensive parts (HTTP sessions) are cached inside the adapter modules. Adapter modules are imported
lazily so that a process that never sends email never imports the Resend SDK.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar, cast

from django.conf import settings

from channels_app.channel_registry import BY_NAME, resolve
from channels_app.providers import sandbox
from channels_app.providers.base import (
    EmailProvider,
    LineProvider,
    MessagingProvider,
    ProviderNotConfigured,
    TelephonyProvider,
    TtsProvider,
)
from orchestrator.workers import cpu_turn_released

A = TypeVar("A")


class _WaitsOffTurn:
    """A live adapter whose calls give their worker thread's CPU turn to another request while they wait
    on the provider's API (orchestrator.workers.cpu_turn_released). It passes for the adapter itself
    (attributes, isinstance); the sandbox set does no I/O and is returned as it is."""

    def __init__(self, adapter: object) -> None:
        object.__setattr__(self, "_adapter", adapter)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105  (isinstance sees the adapter's class)
        return type(object.__getattribute__(self, "_adapter"))

    def __getattr__(self, name: str) -> Any:
        value = getattr(object.__getattribute__(self, "_adapter"), name)
        if name.startswith("_") or not callable(value):
            return value

        @functools.wraps(value)
        def off_turn(*args: Any, **kwargs: Any) -> Any:
            with cpu_turn_released():
                return value(*args, **kwargs)

        return off_turn


def live(adapter: A) -> A:
    """The live adapter, lending its worker thread's CPU turn while it waits on the provider's API
    (what every factory returns in live mode, a registered channel's too)."""
    return cast(A, _WaitsOffTurn(adapter))

TWILIO_SETTINGS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
RESEND_SETTINGS = ("RESEND_API_KEY",)
ELEVENLABS_SETTINGS = ("ELEVENLABS_API_KEY",)
LINE_SETTINGS = ("LINE_CHANNEL_ACCESS_TOKEN",)


def messaging_provider(channel: str, *, credentials: dict[str, str] | None = None) -> MessagingProvider:
    """The provider that sends on a send-message channel: the registry entry's provider factory
    (channels_app.channel_registry).

    `credentials` only matters for LINE (an agent's own channel, see line_provider).
    """
    spec = BY_NAME.get(channel)
    if spec is None or not spec.sends_messages:
        raise ValueError(f"unknown messaging channel {channel!r}")
    factory = resolve(spec.provider_factory)
    return cast(MessagingProvider, factory(credentials=credentials))


def sms_provider(*, credentials: dict[str, str] | None = None) -> MessagingProvider:
    """SMS and MMS through Twilio."""
    if settings.DEMO_MODE:
        return sandbox.SandboxMessagingProvider("sms")
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        raise ProviderNotConfigured("sms", TWILIO_SETTINGS)
    from channels_app.providers.twilio_sms import TwilioSmsProvider

    return live(TwilioSmsProvider())


def whatsapp_provider(*, credentials: dict[str, str] | None = None) -> MessagingProvider:
    """WhatsApp through Twilio."""
    if settings.DEMO_MODE:
        return sandbox.SandboxMessagingProvider("whatsapp")
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        raise ProviderNotConfigured("whatsapp", TWILIO_SETTINGS)
    from channels_app.providers.twilio_whatsapp import TwilioWhatsAppProvider

    return live(TwilioWhatsAppProvider())


def telephony_provider(*, credentials: dict[str, str] | None = None) -> TelephonyProvider:
    """Calls and phone numbers (Twilio, or the sandbox in DEMO_MODE)."""
    if settings.DEMO_MODE:
        return sandbox.SandboxTelephonyProvider()
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        raise ProviderNotConfigured("voice", TWILIO_SETTINGS)
    from channels_app.providers.twilio_voice import TwilioVoiceProvider

    return live(TwilioVoiceProvider())


def email_provider(*, credentials: dict[str, str] | None = None) -> EmailProvider:
    """Send email, fetch a received email's body, list sending domains."""
    if settings.DEMO_MODE:
        return sandbox.SandboxEmailProvider()
    if not settings.RESEND_API_KEY:
        raise ProviderNotConfigured("email", RESEND_SETTINGS)
    from channels_app.providers.resend_email import ResendEmailProvider

    return live(ResendEmailProvider())


def tts_provider() -> TtsProvider:
    if settings.DEMO_MODE:
        return sandbox.SandboxTtsProvider()
    if not settings.ELEVENLABS_API_KEY:
        raise ProviderNotConfigured("tts", ELEVENLABS_SETTINGS)
    from channels_app.providers.elevenlabs_tts import ElevenLabsTtsProvider

    return live(ElevenLabsTtsProvider())


def line_provider(credentials: dict[str, str] | None = None) -> LineProvider:
    """LINE with the agent's own channel when `credentials` carries an access token, else the default channel.

    `credentials` keys: `channel_access_token` and `channel_secret` (camelCase spellings are accepted too).
    """
    if settings.DEMO_MODE:
        return sandbox.SandboxLineProvider()
    token = line_access_token(credentials) or settings.LINE_CHANNEL_ACCESS_TOKEN
    if not token:
        raise ProviderNotConfigured("line", LINE_SETTINGS)
    from channels_app.providers.line import LineMessagingProvider

    return live(cast(LineProvider, LineMessagingProvider(token)))


def line_access_token(credentials: dict[str, str] | None) -> str | None:
    if not credentials:
        return None
    return credentials.get("channel_access_token") or credentials.get("channelAccessToken") or None
