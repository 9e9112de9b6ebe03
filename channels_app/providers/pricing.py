"""The price table: what an action costs when the provider does not say (and every sandbox send).

A channel's unit price is its registry entry's `price` (channels_app.channel_registry); other prices (TTS,
numbers) live in settings.PROVIDER_PRICES, which also overrides a channel's by its price key (USD, as
strings so they stay exact Decimals). SMS and WhatsApp
are priced per segment, the way carriers bill them: GSM-7 text fits 160 characters in one segment and
153 per segment when split; anything outside GSM-7 (emoji, most non-Latin scripts) is sent as UCS-2 with
70 / 67 UTF-16 code units per segment.
"""

from __future__ import annotations

import math
from decimal import Decimal

from django.conf import settings

from channels_app.channel_registry import BY_NAME, DEFAULT_PRICES

# The GSM 03.38 basic character set; the extension table characters count twice (escape + char).
_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")
_GSM7 = frozenset(_GSM7_BASIC | _GSM7_EXTENDED)


def unit_price(kind: str) -> Decimal:
    """The list price of one unit of `kind` (a channel's price key, tts, number): settings.PROVIDER_PRICES,
    else the registry entry priced under that key, else 0."""
    prices: dict[str, str] = settings.PROVIDER_PRICES
    return Decimal(prices.get(kind) or DEFAULT_PRICES.get(kind, "0"))


def sms_segments(body: str) -> int:
    """How many SMS segments a body is billed as (at least 1)."""
    characters = set(body)  # each distinct character once: a send prices its body twice (estimate, provider)
    if characters <= _GSM7:
        units = len(body) + sum(body.count(ch) for ch in characters & _GSM7_EXTENDED)
        single, multi = 160, 153
    else:
        # UCS-2 counts UTF-16 code units: an emoji outside the BMP takes two.
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return math.ceil(units / multi)


def estimate_message_cost(channel: str, body: str = "", media_count: int = 0) -> tuple[Decimal, int | None]:
    """(cost, segments) for one outbound message on `channel`; segments is None where not applicable."""
    if channel == "sms":
        # An MMS (media attached) is billed as one message regardless of text length.
        segments = 1 if media_count else sms_segments(body)
        return unit_price(BY_NAME["sms"].price_key) * segments, segments
    spec = BY_NAME.get(channel)
    return unit_price(spec.price_key if spec else channel), None


def estimate_call_cost(duration_seconds: int) -> Decimal:
    """Voice is billed per started minute."""
    minutes = max(1, math.ceil(duration_seconds / 60)) if duration_seconds > 0 else 0
    return unit_price(BY_NAME["voice"].price_key) * minutes


def estimate_tts_cost(characters: int) -> Decimal:
    return (unit_price("tts") * characters / 1000).quantize(Decimal("0.000001"))
