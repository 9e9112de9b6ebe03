"""Email through Resend: send, fetch a received email's body, list sending domains.

Quirks: the Resend SDK is configured through module globals (`resend.api_key`, `resend.api_url`), not a
client object, and reads them while it builds each request. Calls with the configured key share the
globals (any number at once); the admin's "test this key" check, which needs a different key, takes them
exclusively (`_sdk_globals`), so a concurrent send can never go out with a key typed into the setup form. Transport failures come back as ResendError(code=500, type "HttpClientError").
Inbound `email.received` webhooks carry no body: it is fetched from /emails/receiving/<id>.
Resend reports no price, so cost is the price table's.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urlsplit

import resend
from django.conf import settings
from resend.exceptions import ResendError

from channels_app.providers import pricing
from channels_app.providers.base import (
    EmailDomain,
    OutboundMessage,
    ProviderError,
    ProviderNotConfigured,
    ReceivedEmail,
    SendResult,
    StatusUpdate,
)

PROVIDER = "resend"
DEFAULT_API_URL = "https://api.resend.com"


class _SdkGlobals:
    """Shared use of the SDK's globals with the configured key, exclusive use with any other key.

    Writers (explicit keys) get preference so that a steady stream of sends cannot starve the check.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._users = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextlib.contextmanager
    def configured(self) -> Iterator[None]:
        if not settings.RESEND_API_KEY:
            raise ProviderNotConfigured("email", ("RESEND_API_KEY",))
        with self._condition:
            while self._exclusive or self._waiting_exclusive:
                self._condition.wait()
            self._users += 1
            resend.api_key = settings.RESEND_API_KEY
            resend.api_url = settings.RESEND_API_BASE_URL or DEFAULT_API_URL
        try:
            yield
        finally:
            with self._condition:
                self._users -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def explicit(self, api_key: str) -> Iterator[None]:
        with self._condition:
            self._waiting_exclusive += 1
            while self._exclusive or self._users:
                self._condition.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
            resend.api_key = api_key
            resend.api_url = settings.RESEND_API_BASE_URL or DEFAULT_API_URL
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                resend.api_key = settings.RESEND_API_KEY
                self._condition.notify_all()


_sdk_globals = _SdkGlobals()


def is_configured() -> bool:
    return bool(settings.RESEND_API_KEY)


def map_error(exc: ResendError) -> ProviderError:
    try:
        status = int(exc.code)
    except (TypeError, ValueError):
        status = 500
    error_type = str(exc.error_type or "")
    if status == 429 or status >= 500:
        permanent, reason = False, ("rate_limited" if status == 429 else "unavailable")
    elif status in (401, 403):
        permanent, reason = True, "auth_failed"
    elif status == 404:
        permanent, reason = True, "not_found"
    else:
        permanent, reason = True, "rejected"
    return ProviderError(
        str(exc.message or error_type or "Resend refused the request"),
        provider=PROVIDER,
        permanent=permanent,
        code=error_type or None,
        status=status,
        reason=reason,
    )


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except ResendError as exc:
        raise map_error(exc) from exc


def attachment_for(url: str) -> dict[str, str]:
    # Media travels by URL (contract §1): Resend fetches a `path` attachment itself.
    return {"path": url, "filename": posixpath.basename(urlsplit(url).path) or "attachment"}


class ResendEmailProvider:
    name = PROVIDER

    def send(self, message: OutboundMessage) -> SendResult:
        params: dict[str, Any] = {
            "from": message.from_address,
            "to": [message.to_address],
            "subject": message.subject,
            "text": message.body,
        }
        if message.html:
            params["html"] = message.html
        if message.media_urls:
            params["attachments"] = [attachment_for(url) for url in message.media_urls]
        options: dict[str, Any] = {}
        if message.idempotency_key:
            options["idempotency_key"] = message.idempotency_key
        with _sdk_globals.configured(), translate_errors():
            response = resend.Emails.send(cast(Any, params), cast(Any, options or None))
        cost, _ = pricing.estimate_message_cost("email")
        return SendResult(
            external_id=str(response["id"]),
            status="sent",
            provider=self.name,
            cost=cost,
            cost_estimated=True,
            from_address=message.from_address,
            to_address=message.to_address,
        )

    def fetch_received(self, email_id: str) -> ReceivedEmail:
        with _sdk_globals.configured(), translate_errors():
            data: Any = resend.Emails.Receiving.get(email_id)
        return ReceivedEmail(
            id=str(data.get("id") or email_id),
            from_address=str(data.get("from") or ""),
            to=tuple(data.get("to") or ()),
            subject=str(data.get("subject") or ""),
            text=data.get("text"),
            html=data.get("html"),
            cc=tuple(data.get("cc") or ()),
            message_id=data.get("message_id"),
            created_at=data.get("created_at"),
        )

    def list_domains(self) -> list[EmailDomain]:
        with _sdk_globals.configured(), translate_errors():
            response: Any = resend.Domains.list()
        return [
            EmailDomain(id=str(d.get("id")), name=str(d.get("name")), status=str(d.get("status") or ""))
            for d in response.get("data") or []
        ]


def readiness_check() -> None:
    ResendEmailProvider().list_domains()


def check_api_key(api_key: str) -> int:
    """List domains with an explicit key (the admin's credential test); returns the domain count."""
    with _sdk_globals.explicit(api_key), translate_errors():
        response: Any = resend.Domains.list()
    return len(response.get("data") or [])


# Resend webhook event type → our outbound status; None means "no status change" (delayed, opened, clicked).
EVENT_STATUS: dict[str, str | None] = {
    "email.sent": "sent",
    "email.delivered": "delivered",
    "email.delivery_delayed": None,
    "email.bounced": "undelivered",
    "email.failed": "failed",
    "email.complained": None,
    "email.opened": None,
    "email.clicked": None,
}


# The events that report on an email we sent (as opposed to `email.received`, mail for the agent).
DELIVERY_EVENTS = frozenset(EVENT_STATUS)


def parse_delivery_event(payload: dict[str, Any]) -> StatusUpdate | None:
    """A Resend `email.*` delivery event as a StatusUpdate; None when it changes no status."""
    status = EVENT_STATUS.get(str(payload.get("type") or ""))
    data = payload.get("data") or {}
    email_id = data.get("email_id")
    if status is None or not email_id:
        return None
    error_code: str | None = None
    error_message: str | None = None
    if status == "undelivered":
        bounce = data.get("bounce") or {}
        error_code = bounce.get("type") or "bounced"
        error_message = bounce.get("message")
    elif status == "failed":
        failed = data.get("failed") or {}
        error_code = "failed"
        error_message = failed.get("reason")
    return StatusUpdate(
        external_id=str(email_id), status=status, provider=PROVIDER, error_code=error_code, error_message=error_message
    )
