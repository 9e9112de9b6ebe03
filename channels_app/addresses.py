"""Recipient addresses: E.164 phone numbers (libphonenumber), email addresses, LINE ids (contract §3)."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from channels_app.channel_registry import BY_NAME, message_channels, resolve
from orchestrator.errors import ApiError

# NANP 555-0100…555-0199 is reserved for fiction; libphonenumber calls those numbers invalid, but they are
# what documentation and the sandbox use, so they are accepted when otherwise well-formed.
_FICTIONAL_NANP = re.compile(r"^\+1\d{3}55501\d{2}$")
# LINE user, group and room ids: U/C/R followed by 32 hex digits.
_LINE_ID = re.compile(r"^[UCR][0-9a-f]{32}$")



def normalize_phone(value: str, *, field: str = "to") -> str:
    """The number in E.164, or 400 invalid_phone naming the field."""
    e164 = _e164(value)
    if e164 is not None:
        return e164
    raise ApiError(
        400,
        "invalid_phone",
        f"{value!r} is not a valid phone number; use E.164 with the country code, e.g. +14155550123.",
        field=field,
    )


@lru_cache(maxsize=4096)
def _e164(value: str) -> str | None:
    # libphonenumber's parse + validation is a tenth of a millisecond, and agents write to the same few
    # contacts again and again; the answer for a given string never changes.
    raw = value.strip()
    if raw.lower().startswith("whatsapp:"):
        raw = raw[len("whatsapp:") :]
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.is_valid_number(number) or (phonenumbers.is_possible_number(number) and _FICTIONAL_NANP.match(e164)):
        return e164
    return None


def normalize_email(value: str, *, field: str = "to") -> str:
    address = value.strip()
    try:
        validate_email(address)
    except ValidationError:
        raise ApiError(400, "invalid_email", f"{value!r} is not a valid email address.", field=field) from None
    local, _, domain = address.rpartition("@")
    # The local part is case-sensitive in theory; the domain never is.
    return f"{local}@{domain.lower()}"


def normalize_line_id(value: str, *, field: str = "to") -> str:
    if not _LINE_ID.match(value.strip()):
        raise ApiError(400, "invalid_request", f"{value!r} is not a LINE user, group or room id (U…, C…, R…).",
                       field=field)
    return value.strip()


def normalize_recipient(channel: str, value: str, *, field: str = "to") -> str:
    """The canonical form of a recipient on a channel; the form opt-outs and consents are stored under."""
    spec = BY_NAME.get(channel)
    if spec is not None:
        normalize = _NORMALIZERS.get(spec.recipient) or resolve(spec.recipient)
        return str(normalize(value, field=field))
    raise ApiError(400, "invalid_request", f"Unknown channel {channel!r}; use one of {', '.join(message_channels())}.",
                   field="channel")


# A registry entry's `recipient` kind → how its addresses are written canonically (any other value is
# the dotted path of the channel's own normaliser).
_NORMALIZERS: dict[str, Callable[..., str]] = {
    "phone": normalize_phone,
    "email": normalize_email,
    "line": normalize_line_id,
}
