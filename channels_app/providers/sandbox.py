"""The sandbox provider set for DEMO_MODE: the same interfaces, and nothing leaves the machine.

What a sandbox send does: it logs the would-be request, returns an id shaped like the real provider's
(Twilio `SM`/`CA`/`PN` + 32 hex, Resend UUIDs, LINE numeric ids), a cost from the price table, and a
simulated final status ("delivered"; calls "queued"). The Message row the service writes (provider
"sandbox") is the record of the send, viewable in the admin; there is no separate sandbox table.

Twilio's documented test-credential numbers fail the way Twilio fails them, so refusal paths can be
tried in demo mode: +15005550001 invalid (21211), +15005550002 unroutable (21612), +15005550003 no
permission for the region (21408), +15005550004 opted out (21610), +15005550009 not a mobile (21614).

Sandbox phone numbers come from the range the North American Numbering Plan reserves for fiction,
555-0100 to 555-0199 (here with area code 202, so they are valid E.164 that libphonenumber accepts and
places in a time zone), and for GB from Ofcom's drama range +44 7700 900xxx.
"""

from __future__ import annotations

import io
import logging
import secrets
import uuid
import wave
from decimal import Decimal

from django.conf import settings

from channels_app.providers import pricing, twilio_client
from channels_app.providers.base import (
    AvailableNumber,
    CallResult,
    EmailDomain,
    LineBotInfo,
    OutboundMessage,
    ProviderError,
    PurchasedNumber,
    ReceivedEmail,
    SendResult,
    TtsAudio,
    Voice,
)

logger = logging.getLogger(__name__)

PROVIDER = "sandbox"

# Twilio test numbers → the Twilio error code a real send to them produces.
MAGIC_FAILURES: dict[str, int] = {
    "+15005550001": 21211,
    "+15005550002": 21612,
    "+15005550003": 21408,
    "+15005550004": 21610,
    "+15005550009": 21614,
}

US_NUMBER_PREFIX = "+1202555"  # + 0100..0199
GB_NUMBER_PREFIX = "+447700900"  # + 000..999


def sandbox_numbers(country: str) -> list[str]:
    """Every number of the fictional range for `country` (US range for countries without their own)."""
    if country.upper() == "GB":
        return [f"{GB_NUMBER_PREFIX}{n:03d}" for n in range(100, 200)]
    return [f"{US_NUMBER_PREFIX}{n:04d}" for n in range(100, 200)]


def is_sandbox_number(number: str) -> bool:
    return number in set(sandbox_numbers("US")) | set(sandbox_numbers("GB"))


def twilio_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two-letter type prefix and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def _refuse_magic_number(to_address: str) -> None:
    code = MAGIC_FAILURES.get(to_address.removeprefix("whatsapp:"))
    if code is None:
        return
    permanent, reason = twilio_client.ERROR_CODES[code]
    raise ProviderError(
        f"Sandbox: Twilio would refuse {to_address} with error {code}.",
        provider=PROVIDER,
        permanent=permanent,
        code=str(code),
        status=400,
        reason=reason,
    )


class SandboxMessagingProvider:
    """sms, whatsapp, email and line, simulated."""

    name = PROVIDER

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def send(self, message: OutboundMessage) -> SendResult:
        if self.channel in ("sms", "whatsapp"):
            _refuse_magic_number(message.to_address)
        cost, segments = pricing.estimate_message_cost(self.channel, message.body, len(message.media_urls))
        external_id = self.new_id()
        logger.info(
            "Sandbox %s send %s from %s to %s (%d chars, %d media)",
            self.channel,
            external_id,
            message.from_address,
            message.to_address,
            len(message.body),
            len(message.media_urls),
        )
        return SendResult(
            external_id=external_id,
            status="delivered",
            provider=self.name,
            cost=cost,
            cost_estimated=True,
            from_address=message.from_address,
            to_address=message.to_address,
            segments=segments,
        )

    def new_id(self) -> str:
        if self.channel == "email":
            return str(uuid.uuid4())
        if self.channel == "line":
            # LINE message ids are decimal strings of about 18 digits.
            return str(secrets.randbelow(9 * 10**17) + 10**17)
        return twilio_sid("SM")


class SandboxLineProvider(SandboxMessagingProvider):
    def __init__(self) -> None:
        super().__init__("line")

    def bot_info(self) -> LineBotInfo:
        return LineBotInfo(user_id="U" + "0" * 32, basic_id="@sandbox", display_name="Sandbox bot")


class SandboxEmailProvider(SandboxMessagingProvider):
    def __init__(self) -> None:
        super().__init__("email")

    def fetch_received(self, email_id: str) -> ReceivedEmail:
        # Nothing was ever received by a real Resend account: the webhook payload is all there is.
        raise ProviderError(
            f"Sandbox: no stored received email {email_id}.",
            provider=PROVIDER,
            permanent=True,
            status=404,
            reason="not_found",
        )

    def list_domains(self) -> list[EmailDomain]:
        return [EmailDomain(id="sandbox", name=settings.EMAIL_DEFAULT_DOMAIN, status="verified")]


class SandboxTelephonyProvider:
    name = PROVIDER

    def create_call(
        self,
        *,
        agent_id: str,
        from_number: str,
        to_number: str,
        twiml: str | None = None,
        url: str | None = None,
        status_callback_url: str | None = None,
        timeout_seconds: int | None = None,
    ) -> CallResult:
        _refuse_magic_number(to_number)
        call_sid = twilio_sid("CA")
        logger.info("Sandbox call %s for %s from %s to %s", call_sid, agent_id, from_number, to_number)
        return CallResult(call_sid=call_sid, status="queued", provider=self.name, from_number=from_number, to_number=to_number)

    def update_call(self, call_sid: str, *, twiml: str | None = None, status: str | None = None) -> CallResult:
        return CallResult(call_sid=call_sid, status=status or "in-progress", provider=self.name)

    def transfer_call(self, call_sid: str, *, twiml: str) -> CallResult:
        return CallResult(call_sid=call_sid, status="in-progress", provider=self.name)

    def fetch_call(self, call_sid: str) -> CallResult:
        # The sandbox keeps no call state; the voice app's own Call row is authoritative in demo mode.
        return CallResult(call_sid=call_sid, status="completed", provider=self.name, duration_seconds=0, cost=Decimal("0"))

    def search_numbers(self, country: str, *, limit: int = 1, area_code: str | None = None) -> list[AvailableNumber]:
        from agents.models import ChannelAddress, PhoneNumber

        # Countries without a fictional range of their own get US sandbox numbers, labelled US.
        country = "GB" if country.upper() == "GB" else "US"
        candidates = sandbox_numbers(country)
        taken = set(
            PhoneNumber.objects.filter(number__in=candidates, agent__isnull=False).values_list("number", flat=True)
        ) | set(
            ChannelAddress.objects.filter(address__in=candidates, released_at__isnull=True).values_list("address", flat=True)
        )
        free = [n for n in candidates if n not in taken]
        return [AvailableNumber(number=n, country=country.upper(), locality="Sandbox") for n in free[:limit]]

    def purchase_number(self, number: str, *, agent_id: str, country: str = "US") -> PurchasedNumber:
        if not is_sandbox_number(number):
            raise ProviderError(
                f"Sandbox: {number} is not in the sandbox range.",
                provider=PROVIDER,
                permanent=True,
                code="21422",
                status=400,
                reason="not_found",
            )
        return PurchasedNumber(number=number, sid=twilio_sid("PN"), country=country.upper(), provider=self.name)

    def release_number(self, sid: str) -> None:
        logger.info("Sandbox release of %s", sid)

    def configure_whatsapp_sender(self, sender_sid: str, *, agent_id: str) -> bool:
        logger.info("Sandbox WhatsApp sender %s routed to %s", sender_sid, agent_id)
        return True


SANDBOX_VOICES = (
    Voice(voice_id="sandbox-rachel", name="Rachel (sandbox)", category="premade"),
    Voice(voice_id="sandbox-adam", name="Adam (sandbox)", category="premade"),
)


class SandboxTtsProvider:
    """Returns a WAV of silence as long as the text would take to say (about 150 words a minute)."""

    name = PROVIDER
    sample_rate = 8000

    def synthesize(self, text: str, *, voice_id: str | None = None, language: str | None = None) -> TtsAudio:
        seconds = min(120.0, max(0.5, len(text.split()) / 2.5))
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(1)
            out.setframerate(self.sample_rate)
            out.writeframes(b"\x80" * int(seconds * self.sample_rate))  # 8-bit PCM silence is 0x80
        return TtsAudio(
            audio=buffer.getvalue(),
            content_type="audio/wav",
            voice_id=voice_id or settings.ELEVENLABS_DEFAULT_VOICE or SANDBOX_VOICES[0].voice_id,
            characters=len(text),
            cost=pricing.estimate_tts_cost(len(text)),
            duration_seconds=seconds,
        )

    def list_voices(self) -> list[Voice]:
        return list(SANDBOX_VOICES)
