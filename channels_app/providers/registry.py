"""Which provider serves a channel: the sandbox set in DEMO_MODE, else the configured real provider.

Live mode never falls back to the sandbox: an unconfigured channel raises ProviderNotConfigured, which the
API answers with 503 `provider_not_configured` (contract §1). Adapters are stateless and cheap to build;
the expensive parts (HTTP sessions) are cached inside the adapter modules. Adapter modules are imported
lazily so that a process that never sends email never imports the Resend SDK.
"""

from __future__ import annotations

from typing import cast

from django.conf import settings

from channels_app.providers import sandbox
from channels_app.providers.base import (
    EmailProvider,
    LineProvider,
    MessagingProvider,
    ProviderNotConfigured,
    TelephonyProvider,
    TtsProvider,
)

MESSAGING_CHANNELS = ("sms", "whatsapp", "email", "line")

TWILIO_SETTINGS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
RESEND_SETTINGS = ("RESEND_API_KEY",)
ELEVENLABS_SETTINGS = ("ELEVENLABS_API_KEY",)
LINE_SETTINGS = ("LINE_CHANNEL_ACCESS_TOKEN",)


def messaging_provider(channel: str, *, credentials: dict[str, str] | None = None) -> MessagingProvider:
    """The provider that sends on `channel` ("sms" | "whatsapp" | "email" | "line").

    `credentials` only matters for LINE (an agent's own channel, see line_provider).
    """
    if channel not in MESSAGING_CHANNELS:
        raise ValueError(f"unknown messaging channel {channel!r}")
    if channel == "email":
        return email_provider()
    if channel == "line":
        return line_provider(credentials)
    if settings.DEMO_MODE:
        return sandbox.SandboxMessagingProvider(channel)
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        raise ProviderNotConfigured(channel, TWILIO_SETTINGS)
    if channel == "sms":
        from channels_app.providers.twilio_sms import TwilioSmsProvider

        return TwilioSmsProvider()
    from channels_app.providers.twilio_whatsapp import TwilioWhatsAppProvider

    return TwilioWhatsAppProvider()


def telephony_provider() -> TelephonyProvider:
    """Calls and phone numbers (Twilio, or the sandbox in DEMO_MODE)."""
    if settings.DEMO_MODE:
        return sandbox.SandboxTelephonyProvider()
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        raise ProviderNotConfigured("voice", TWILIO_SETTINGS)
    from channels_app.providers.twilio_voice import TwilioVoiceProvider

    return TwilioVoiceProvider()


def email_provider() -> EmailProvider:
    """Send email, fetch a received email's body, list sending domains."""
    if settings.DEMO_MODE:
        return sandbox.SandboxEmailProvider()
    if not settings.RESEND_API_KEY:
        raise ProviderNotConfigured("email", RESEND_SETTINGS)
    from channels_app.providers.resend_email import ResendEmailProvider

    return ResendEmailProvider()


def tts_provider() -> TtsProvider:
    if settings.DEMO_MODE:
        return sandbox.SandboxTtsProvider()
    if not settings.ELEVENLABS_API_KEY:
        raise ProviderNotConfigured("tts", ELEVENLABS_SETTINGS)
    from channels_app.providers.elevenlabs_tts import ElevenLabsTtsProvider

    return ElevenLabsTtsProvider()


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

    return cast(LineProvider, LineMessagingProvider(token))


def line_access_token(credentials: dict[str, str] | None) -> str | None:
    if not credentials:
        return None
    return credentials.get("channel_access_token") or credentials.get("channelAccessToken") or None
