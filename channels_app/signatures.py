"""Provider webhook signatures (contract §8): checked on the raw request, in every mode, before anything else.

Which secret signs what:

- Twilio (SMS, WhatsApp, message status): `TWILIO_AUTH_TOKEN`, over `PUBLIC_BASE_URL` + path + query.
- Resend (email, through Svix): `RESEND_WEBHOOK_SECRET` (`whsec_…`), timestamp within ±5 minutes.
- LINE: the agent's own channel secret when it has one, else `LINE_CHANNEL_SECRET`.

Demo mode never skips a check. When DEMO_MODE is on and a provider's secret is not configured, the
server uses a *demo signing secret* derived from SECRET_KEY (HMAC-SHA256 of "demo-webhook-secret:<provider>").
`manage.py simulate_inbound` reads the same settings, so it signs what the server accepts, while nobody
without the server's SECRET_KEY can forge a webhook. In live mode a provider without a secret refuses
every webhook (403): an unverifiable request is never trusted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from svix.webhooks import Webhook, WebhookVerificationError
from twilio.request_validator import RequestValidator, compare, get_signature_algorithm

logger = logging.getLogger(__name__)

TWILIO = "twilio"
RESEND = "resend"
LINE = "line"


def demo_signing_secret(provider: str) -> str:
    """The stand-in secret for `provider` in demo mode (see the module docstring)."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"demo-webhook-secret:{provider}".encode(), hashlib.sha256)
    if provider == RESEND:
        # Svix secrets are base64 key material behind a whsec_ prefix.
        return "whsec_" + base64.b64encode(digest.digest()).decode()
    return digest.hexdigest()


def _configured_or_demo(value: str | None, provider: str) -> str | None:
    if value:
        return value
    return demo_signing_secret(provider) if settings.DEMO_MODE else None


def twilio_auth_token() -> str | None:
    return _configured_or_demo(settings.TWILIO_AUTH_TOKEN, TWILIO)


def resend_webhook_secret() -> str | None:
    return _configured_or_demo(settings.RESEND_WEBHOOK_SECRET, RESEND)


def line_channel_secret(agent_secret: str = "") -> str | None:
    """The agent's own LINE channel secret wins over the default one."""
    return agent_secret or _configured_or_demo(settings.LINE_CHANNEL_SECRET, LINE)


def public_url(full_path: str) -> str:
    """The URL the provider called, as it signed it: PUBLIC_BASE_URL, not whatever Host we were reached on."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + full_path


# --- Twilio -------------------------------------------------------------------------------------

class _SignedForm:
    """The form's (name, value) pairs as the SDK's RequestValidator reads a multidict: names by iteration,
    values through getall(), the first lookup its get_values() tries, so no field costs an exception
    (a plain dict costs two per field, a QueryDict one). Repeated names keep every value, as signed."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def getall(self, name: str) -> list[str]:
        return self._values[name]


def twilio_signature_valid(
    *,
    url: str,
    params: Sequence[tuple[str, str]] | str,
    signature: str,
    auth_token: str | None,
    signature_settings: str = "",
) -> bool:
    """Twilio's check, by the SDK's RequestValidator. `params` is the form as (name, value) pairs
    (repeated names kept) or the raw JSON body text, whose hash must then match the `bodySHA256` query
    parameter of `url`."""
    if not auth_token or not signature:
        return False
    validator = RequestValidator(auth_token)
    algorithm = get_signature_algorithm(signature_settings)
    if isinstance(params, str):
        # Twilio signs a JSON body only through `bodySHA256` in the URL. Without it the SDK would sign
        # the body text as if it were a form (and fail with a TypeError on the way): nothing to verify.
        if "bodySHA256" not in parse_qs(urlsplit(url).query):
            return False
        return bool(validator.validate(url, params, signature, algorithm=algorithm))
    form = _SignedForm(params)
    # validate() always computes two HMACs, for the URL with and without its port (Twilio signs either).
    # A form signed over the URL as we were called matches the first one we compute.
    try:
        if compare(validator.compute_signature(url, form, algorithm), signature):
            return True
    except ValueError:
        pass  # an algorithm the SDK does not know: validate() logs it and refuses
    return bool(validator.validate(url, form, signature, algorithm=algorithm))


def twilio_sign(*, url: str, params: Mapping[str, str], auth_token: str) -> str:
    """The X-Twilio-Signature Twilio would send (simulate_inbound, tests, benchmarks)."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


def twilio_json_url(url: str, body: str) -> str:
    """Twilio appends bodySHA256 to the URL it signs when it sends a JSON body."""
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f"{url}{'&' if '?' in url else '?'}bodySHA256={digest}"


# --- Resend / Svix ------------------------------------------------------------------------------


def svix_signature_valid(*, body: bytes, headers: Mapping[str, str], secret: str | None) -> bool:
    """Svix check: `svix-id`, `svix-timestamp` (±5 minutes, enforced by the SDK) and `svix-signature`."""
    if not secret:
        return False
    wanted = {name: headers.get(name, "") for name in ("svix-id", "svix-timestamp", "svix-signature")}
    try:
        Webhook(secret).verify(body, wanted)
    except (WebhookVerificationError, ValueError, UnicodeDecodeError) as exc:
        # ValueError: a malformed signature list or base64; the SDK does not wrap those.
        logger.info("Refused a Svix webhook: %s", exc)
        return False
    return True


def svix_sign(*, msg_id: str, timestamp: int, body: str, secret: str) -> str:
    from datetime import UTC, datetime

    return str(Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body))


# --- LINE ---------------------------------------------------------------------------------------


def line_sign(*, body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def line_signature_valid(*, body: bytes, signature: str, secret: str | None) -> bool:
    """LINE check: base64 HMAC-SHA256 of the raw body with the channel secret, compared in constant time."""
    if not secret or not signature:
        return False
    return hmac.compare_digest(line_sign(body=body, secret=secret), signature)
