"""The registry: sandbox in demo mode, the real adapter when configured, a refusal otherwise."""

from __future__ import annotations

import pytest

from channels_app.providers import registry
from channels_app.providers.base import ProviderNotConfigured
from channels_app.providers.elevenlabs_tts import ElevenLabsTtsProvider
from channels_app.providers.line import LineMessagingProvider
from channels_app.providers.resend_email import ResendEmailProvider
from channels_app.providers.sandbox import (
    SandboxEmailProvider,
    SandboxLineProvider,
    SandboxMessagingProvider,
    SandboxTelephonyProvider,
    SandboxTtsProvider,
)
from channels_app.providers.twilio_sms import TwilioSmsProvider
from channels_app.providers.twilio_voice import TwilioVoiceProvider
from channels_app.providers.twilio_whatsapp import TwilioWhatsAppProvider
from orchestrator.health import PROVIDER_CHECKS


def test_it_uses_the_sandbox_for_every_channel_in_demo_mode(settings) -> None:
    settings.DEMO_MODE = True
    assert isinstance(registry.messaging_provider("sms"), SandboxMessagingProvider)
    assert isinstance(registry.messaging_provider("whatsapp"), SandboxMessagingProvider)
    assert isinstance(registry.messaging_provider("email"), SandboxEmailProvider)
    assert isinstance(registry.messaging_provider("line"), SandboxLineProvider)
    assert isinstance(registry.telephony_provider(), SandboxTelephonyProvider)
    assert isinstance(registry.email_provider(), SandboxEmailProvider)
    assert isinstance(registry.tts_provider(), SandboxTtsProvider)
    assert isinstance(registry.line_provider({"channel_access_token": "x"}), SandboxLineProvider)


def test_it_uses_the_sandbox_in_demo_mode_even_with_credentials(settings) -> None:
    settings.DEMO_MODE = True
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "token"
    assert registry.messaging_provider("sms").name == "sandbox"


@pytest.mark.parametrize(
    ("get", "channel", "variable"),
    [
        (lambda: registry.messaging_provider("sms"), "sms", "TWILIO_ACCOUNT_SID"),
        (lambda: registry.messaging_provider("whatsapp"), "whatsapp", "TWILIO_AUTH_TOKEN"),
        (lambda: registry.messaging_provider("email"), "email", "RESEND_API_KEY"),
        (lambda: registry.messaging_provider("line"), "line", "LINE_CHANNEL_ACCESS_TOKEN"),
        (registry.telephony_provider, "voice", "TWILIO_ACCOUNT_SID"),
        (registry.email_provider, "email", "RESEND_API_KEY"),
        (registry.tts_provider, "tts", "ELEVENLABS_API_KEY"),
        (registry.line_provider, "line", "LINE_CHANNEL_ACCESS_TOKEN"),
    ],
)
def test_it_refuses_an_unconfigured_channel_in_live_mode_instead_of_simulating(settings, get, channel, variable) -> None:
    settings.DEMO_MODE = False
    with pytest.raises(ProviderNotConfigured) as raised:
        get()
    assert raised.value.channel == channel
    assert variable in raised.value.variables


def test_it_refuses_twilio_with_only_half_the_credentials(settings) -> None:
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    with pytest.raises(ProviderNotConfigured):
        registry.messaging_provider("sms")


def test_it_picks_the_real_adapters_when_configured(live_provider_settings) -> None:
    assert isinstance(registry.messaging_provider("sms"), TwilioSmsProvider)
    assert isinstance(registry.messaging_provider("whatsapp"), TwilioWhatsAppProvider)
    assert isinstance(registry.messaging_provider("email"), ResendEmailProvider)
    assert isinstance(registry.messaging_provider("line"), LineMessagingProvider)
    assert isinstance(registry.telephony_provider(), TwilioVoiceProvider)
    assert isinstance(registry.tts_provider(), ElevenLabsTtsProvider)


def test_it_uses_an_agents_own_line_channel_when_the_default_is_unset(settings) -> None:
    provider = registry.line_provider({"channelAccessToken": "agent-token"})
    assert isinstance(provider, LineMessagingProvider)
    assert provider.access_token == "agent-token"


def test_it_rejects_an_unknown_channel() -> None:
    with pytest.raises(ValueError):
        registry.messaging_provider("fax")


def test_it_registers_a_readiness_check_for_every_provider_at_startup() -> None:
    assert {"telephony", "email", "tts", "line"} <= set(PROVIDER_CHECKS)
