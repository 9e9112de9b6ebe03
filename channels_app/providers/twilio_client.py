"""The one place that builds a Twilio REST client and turns Twilio failures into ProviderError.

Quirks handled here, shared by twilio_sms, twilio_whatsapp and twilio_voice:

- TWILIO_API_BASE_URL: the SDK hard-codes `https://<product>.twilio.com` in every generated resource and
  has no base-URL option (edge/region only rewrite the host name). We hand it an HTTP client that rewrites
  the scheme and host of every `*.twilio.com` URL to the base URL, keeping path and query, so the real SDK
  code (URL building, form encoding, auth) is what runs against the loopback fake in tests.
- Prices come back as negative strings ("-0.00750") and usually only after delivery; null at creation.
- Twilio's error JSON is {"code": 21211, "message": ..., "more_info": ..., "status": 400}; the SDK raises
  TwilioRestException(status, code, msg). Timeouts and refused connections surface as `requests` errors.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels_app.providers.base import ProviderError, ProviderNotConfigured

logger = logging.getLogger(__name__)
# The SDK logs about ten INFO lines per request (URL, headers); keep them out of INFO-level logs.
sdk_logger = logging.getLogger("twilio.http_client.orchestrator")
sdk_logger.setLevel(logging.WARNING)

PROVIDER = "twilio"
TIMEOUT_SECONDS = 15.0
REQUIRED_SETTINGS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")

# Twilio error code → (permanent, reason). Anything else: 5xx/429 transient, other 4xx permanent.
ERROR_CODES: dict[int, tuple[bool, str]] = {
    20003: (True, "auth_failed"),  # authentication failed
    20404: (True, "not_found"),  # resource not found
    20429: (False, "rate_limited"),  # too many requests
    21211: (True, "invalid_recipient"),  # invalid 'To' phone number
    21214: (True, "invalid_recipient"),  # 'To' number cannot be reached
    21217: (True, "invalid_recipient"),  # phone number does not appear to be valid
    21407: (True, "invalid_recipient"),  # this phone number type does not support SMS
    21408: (True, "invalid_recipient"),  # permission to send to this region not enabled
    21421: (True, "invalid_recipient"),  # phone number is invalid (number purchase)
    21422: (True, "not_found"),  # phone number not available to purchase
    21452: (True, "not_found"),  # no phone numbers found in area code
    21606: (True, "invalid_sender"),  # the 'From' number is not a valid, SMS-capable Twilio number
    21610: (True, "recipient_opted_out"),  # attempt to send to an unsubscribed recipient (STOP)
    21612: (True, "invalid_recipient"),  # the 'To' number is not reachable via SMS
    21614: (True, "invalid_recipient"),  # 'To' is not a valid mobile number
    21659: (True, "invalid_sender"),  # 'From' is not a Twilio number on this account
    63007: (True, "invalid_sender"),  # no WhatsApp sender found for the 'From' address
    63016: (True, "whatsapp_window_closed"),  # free-form message outside the 24-hour window
}


class RebasingHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends every `*.twilio.com` request to `base_url` instead."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=sdk_logger)
        self.base = urlsplit(base_url) if base_url else None

    def rebase(self, url: str) -> str:
        parts = urlsplit(url)
        if self.base is None or not (parts.hostname or "").endswith("twilio.com"):
            return url
        path = self.base.path.rstrip("/") + parts.path
        return urlunsplit((self.base.scheme, self.base.netloc, path, parts.query, parts.fragment))

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        return super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


def is_configured() -> bool:
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)


def client(channel: str = "sms") -> Client:
    """A Twilio client for the configured account; raises ProviderNotConfigured without credentials."""
    if not is_configured():
        raise ProviderNotConfigured(channel, REQUIRED_SETTINGS)
    return _client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_API_BASE_URL, TIMEOUT_SECONDS)


@functools.lru_cache(maxsize=8)
def _client(account_sid: str, auth_token: str, base_url: str | None, timeout: float) -> Client:
    # Cached so the requests.Session (and its connection pool) is reused across sends.
    return client_for(account_sid, auth_token, base_url, timeout=timeout)


def client_for(account_sid: str, auth_token: str, base_url: str | None = None, *, timeout: float | None = None) -> Client:
    """An uncached client for explicit credentials (the admin's "test these credentials" check)."""
    http_client = RebasingHttpClient(base_url, timeout or TIMEOUT_SECONDS)
    return Client(account_sid, auth_token, account_sid=account_sid, http_client=http_client)


def check_credentials(account_sid: str, auth_token: str, base_url: str | None = None) -> str:
    """Fetch the account (cheapest authenticated call); returns its friendly name or raises ProviderError."""
    with translate_errors():
        account = client_for(account_sid, auth_token, base_url).api.v2010.accounts(account_sid).fetch()
    return str(account.friendly_name or account_sid)


def readiness_check() -> None:
    check_credentials(settings.TWILIO_ACCOUNT_SID or "", settings.TWILIO_AUTH_TOKEN or "", settings.TWILIO_API_BASE_URL)


def parse_price(price: Any) -> Decimal | None:
    """Twilio prices are negative strings (a charge); None or "" while not yet priced."""
    if price in (None, ""):
        return None
    try:
        return abs(Decimal(str(price)))
    except InvalidOperation:
        logger.warning("Unparseable Twilio price %r", price)
        return None


def map_error(exc: Exception) -> ProviderError:
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        # TwilioServiceException is the RFC 9457 shape newer APIs (Messaging v2) answer with.
        code = int(exc.code) if exc.code is not None else None
        if isinstance(exc, TwilioRestException):
            message = str(exc.msg or f"Twilio answered HTTP {exc.status}")
        else:
            message = str(exc.detail or exc.title or f"Twilio answered HTTP {exc.status}")
        if code in ERROR_CODES:
            permanent, reason = ERROR_CODES[code]
        elif exc.status == 429:
            permanent, reason = False, "rate_limited"
        elif exc.status >= 500:
            permanent, reason = False, "unavailable"
        elif exc.status in (401, 403):
            permanent, reason = True, "auth_failed"
        elif exc.status == 404:
            permanent, reason = True, "not_found"
        else:
            permanent, reason = True, "rejected"
        return ProviderError(
            message,
            provider=PROVIDER,
            permanent=permanent,
            code=str(code) if code is not None else None,
            status=exc.status,
            reason=reason,
        )
    if isinstance(exc, requests.RequestException):
        return ProviderError(f"Twilio unreachable: {exc.__class__.__name__}", provider=PROVIDER, permanent=False)
    return ProviderError(f"Twilio client error: {exc}", provider=PROVIDER, permanent=False)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """`with translate_errors(): ...` re-raises Twilio and transport failures as ProviderError."""
    try:
        yield
    except (TwilioException, requests.RequestException) as exc:
        raise map_error(exc) from exc


# Twilio message statuses → ours (channels_app.models.MessageStatus).
MESSAGE_STATUS: dict[str, str] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
    "partially_delivered": "sent",
    "receiving": "received",
    "received": "received",
}


def message_status(twilio_status: str | None) -> str:
    return MESSAGE_STATUS.get((twilio_status or "").lower(), "queued")
