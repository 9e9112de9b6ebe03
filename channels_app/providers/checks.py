"""Readiness checks of the configured providers (contract §4), registered from ChannelsAppConfig.ready().

Each check is the cheapest authenticated call the provider has. Adapter modules are imported inside the
checks, so registering costs nothing at startup and an unconfigured provider's SDK is never imported.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from orchestrator.health import register_provider_check
from orchestrator.workers import cpu_turn_released


def _off_turn(check: Callable[[], None]) -> Callable[[], None]:
    """A check waits on the provider's API: its worker thread's turn goes to other requests meanwhile."""

    def run() -> None:
        with cpu_turn_released():
            check()

    return run


def _twilio_configured() -> bool:
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)


def _twilio_check() -> None:
    from channels_app.providers import twilio_client

    twilio_client.readiness_check()  # fetch the account


def _resend_configured() -> bool:
    return bool(settings.RESEND_API_KEY)


def _resend_check() -> None:
    from channels_app.providers import resend_email

    resend_email.readiness_check()  # list domains


def _elevenlabs_configured() -> bool:
    return bool(settings.ELEVENLABS_API_KEY)


def _elevenlabs_check() -> None:
    from channels_app.providers import elevenlabs_tts

    elevenlabs_tts.readiness_check()  # list voices


def _line_configured() -> bool:
    return bool(settings.LINE_CHANNEL_ACCESS_TOKEN)


def _line_check() -> None:
    from channels_app.providers import line

    line.readiness_check()  # bot info


def register_checks() -> None:
    register_provider_check("telephony", configured=_twilio_configured, check=_off_turn(_twilio_check))
    register_provider_check("email", configured=_resend_configured, check=_off_turn(_resend_check))
    register_provider_check("tts", configured=_elevenlabs_configured, check=_off_turn(_elevenlabs_check))
    register_provider_check("line", configured=_line_configured, check=_off_turn(_line_check))
