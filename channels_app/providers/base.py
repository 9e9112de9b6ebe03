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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.permanent = permanent
        self.code = code
        self.status = status


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
    status_callback_url: str | None = None
    # Per-agent credentials (LINE) when the agent carries its own.
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    external_id: str
    status: str
    provider: str
    cost: Decimal | None = None


class MessagingProvider(Protocol):
    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...
