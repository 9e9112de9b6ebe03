"""The small interfaces every provider adapter implements, and the one error type they raise.

One module per provider (twilio_sms.py, twilio_whatsapp.py, twilio_voice.py, resend_email.py, line.py,
elevenlabs_tts.py) and sandbox.py for DEMO_MODE; `registry.py` picks one by channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol


class ProviderError(Exception):
    """A provider refused or failed. `permanent` says whether retrying the same request can succeed."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        permanent: bool,
        code: str | None = None,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.permanent = permanent
        # The provider's own error code (Twilio "21211", Resend "validation_error", ...), as a string.
        self.code = code
        # The HTTP status the provider answered with; None for timeouts and connection failures.
        self.status = status
        # Our provider-independent reading of the failure, one of ProviderError.REASONS, so callers can
        # act on it (record an opt-out, answer 409 for a closed WhatsApp window) without knowing provider codes.
        self.reason = reason or ("unavailable" if not permanent else "rejected")

    REASONS = (
        "invalid_recipient",  # the address is not valid or cannot receive on this channel (Twilio 21211, 21614)
        "recipient_opted_out",  # the recipient replied STOP at the provider (Twilio 21610)
        "invalid_sender",  # our from-address is not ours or not enabled for the channel (Twilio 21606, 21659)
        "whatsapp_window_closed",  # free text outside the 24-hour session (Twilio 63016)
        "auth_failed",  # our credentials were refused (401/403, Twilio 20003)
        "not_found",  # the resource (call, number, email) does not exist at the provider
        "rate_limited",  # the provider throttled us (429, Twilio 20429): transient
        "unavailable",  # 5xx, timeout, connection failure: transient
        "rejected",  # any other refusal of this request: permanent
    )

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, provider={self.provider!r}, permanent={self.permanent}, "
            f"code={self.code!r}, status={self.status!r}, reason={self.reason!r})"
        )


class ProviderNotConfigured(Exception):
    """Live mode, and the provider for this channel has no credentials: answer 503, never simulate."""

    def __init__(self, channel: str, variables: tuple[str, ...]) -> None:
        super().__init__(f"The {channel} provider is not configured (set {', '.join(variables)}).")
        self.channel = channel
        self.variables = variables


@dataclass(frozen=True)
class OutboundMessage:
    channel: str
    from_address: str
    to_address: str
    body: str
    subject: str = ""
    html: str | None = None
    media_urls: tuple[str, ...] = ()
    template_id: str | None = None
    template_vars: dict[str, Any] = field(default_factory=dict)
    # Our agent; adapters build the StatusCallback URL from it when status_callback_url is not given.
    agent_id: str | None = None
    status_callback_url: str | None = None
    # Sent as the provider's idempotency key where it has one (Resend Idempotency-Key, LINE X-Line-Retry-Key).
    idempotency_key: str | None = None
    # Per-agent credentials (LINE) when the agent carries its own.
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    external_id: str
    status: str
    provider: str
    # USD. The provider's price when it reports one, else the price table's estimate (cost_estimated=True).
    cost: Decimal | None = None
    cost_estimated: bool = False
    from_address: str = ""
    to_address: str = ""
    segments: int | None = None


class MessagingProvider(Protocol):
    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...


# --- additions for the telephony, email, TTS and LINE providers (issue 4) --------------------------------


def webhook_url(agent_id: str, route: str) -> str:
    """Our webhook URL for an agent, as providers must call it: PUBLIC_BASE_URL/webhooks/<agentId>/<route>."""
    from django.conf import settings

    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/webhooks/{agent_id}/{route}"


@dataclass(frozen=True)
class CallResult:
    call_sid: str
    status: str
    provider: str
    from_number: str = ""
    to_number: str = ""
    duration_seconds: int | None = None
    # USD, positive; None while the provider has not priced the call yet.
    cost: Decimal | None = None


@dataclass(frozen=True)
class AvailableNumber:
    number: str
    country: str
    locality: str = ""
    region: str = ""


@dataclass(frozen=True)
class PurchasedNumber:
    number: str
    sid: str
    country: str
    provider: str


class TelephonyProvider(Protocol):
    """Calls and numbers. TwiML is built by the caller (voice/twiml.py) and passed through as a string."""

    name: str

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
    ) -> CallResult: ...

    def update_call(self, call_sid: str, *, twiml: str | None = None, status: str | None = None) -> CallResult: ...

    def transfer_call(self, call_sid: str, *, twiml: str) -> CallResult: ...

    def fetch_call(self, call_sid: str) -> CallResult: ...

    def search_numbers(self, country: str, *, limit: int = 1, area_code: str | None = None) -> list[AvailableNumber]: ...

    def purchase_number(self, number: str, *, agent_id: str, country: str = "US") -> PurchasedNumber: ...

    def release_number(self, sid: str) -> None: ...

    def configure_whatsapp_sender(self, sender_sid: str, *, agent_id: str) -> bool:
        """Route a pooled WhatsApp sender's inbound messages to the agent; False if not API-configurable."""
        ...


@dataclass(frozen=True)
class ReceivedEmail:
    id: str
    from_address: str
    to: tuple[str, ...]
    subject: str
    text: str | None
    html: str | None
    cc: tuple[str, ...] = ()
    message_id: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class EmailDomain:
    id: str
    name: str
    status: str


class EmailProvider(Protocol):
    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...

    def fetch_received(self, email_id: str) -> ReceivedEmail: ...

    def list_domains(self) -> list[EmailDomain]: ...


@dataclass(frozen=True)
class TtsAudio:
    audio: bytes
    content_type: str
    voice_id: str
    characters: int
    cost: Decimal | None = None
    # Known for sandbox audio; from the size of ElevenLabs' constant-bit-rate MP3.
    duration_seconds: float | None = None


@dataclass(frozen=True)
class Voice:
    voice_id: str
    name: str
    category: str = ""


class TtsProvider(Protocol):
    name: str

    def synthesize(self, text: str, *, voice_id: str | None = None, language: str | None = None) -> TtsAudio: ...

    def list_voices(self) -> list[Voice]: ...


@dataclass(frozen=True)
class LineBotInfo:
    user_id: str
    basic_id: str
    display_name: str
    picture_url: str | None = None


class LineProvider(Protocol):
    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...

    def bot_info(self) -> LineBotInfo: ...


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's delivery report for one outbound message, in our status vocabulary (MessageStatus)."""

    external_id: str
    status: str
    provider: str
    error_code: str | None = None
    error_message: str | None = None
    cost: Decimal | None = None


# Forward-only ordering of outbound statuses: a report may only move a message to a higher rank.
# failed/undelivered/read are terminal; "delivered" after "failed" (out-of-order callbacks) is ignored.
STATUS_RANK: dict[str, int] = {
    "pending": 0,
    "queued": 1,
    "sent": 2,
    "delivered": 3,
    "undelivered": 4,
    "failed": 4,
    "read": 4,
}


def status_advances(current: str, new: str) -> bool:
    """True when a report of `new` should replace `current` (forward-only, contract §8)."""
    if current == new:
        return False
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current, -1)


@dataclass(frozen=True)
class CallStatusUpdate:
    """A provider's call progress report, in voice.models.CallStatus vocabulary."""

    call_sid: str
    status: str
    provider: str
    duration_seconds: int | None = None
    cost: Decimal | None = None
    error_code: str | None = None
    answered_by: str | None = None


# Forward-only ordering of call statuses; the five final statuses share the top rank.
CALL_STATUS_RANK: dict[str, int] = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "transferred": 4,
    "completed": 5,
    "busy": 5,
    "no-answer": 5,
    "canceled": 5,
    "failed": 5,
}


def call_status_advances(current: str, new: str) -> bool:
    """True when a report of `new` should replace `current` (status only moves forward, contract §8)."""
    if current == new:
        return False
    return CALL_STATUS_RANK.get(new, -1) > CALL_STATUS_RANK.get(current, -1)
