"""Writes behind the admin JSON API (contract §9): organizations, the WhatsApp sender pool, blocked
channels, org tokens, provider credential tests, saving settings to `.env` and restarting.

Refusals are ApiError (contract §3). Secrets given to these services are never logged or echoed.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from admin_ui import restart
from admin_ui.envfile import env_file_update
from agents.models import Agent, Organization, OrgToken, WhatsAppSender
from agents.principals import Principal
from agents.services import org_token_issue, validate_e164
from channels_app.channel_registry import channel_names
from channels_app.providers.base import ProviderError
from orchestrator.env import FALSE_VALUES, TRUE_VALUES
from orchestrator.errors import ApiError
from orchestrator.workers import cpu_turn_released

logger = logging.getLogger(__name__)


def require_super_admin(principal: Principal) -> None:
    if not principal.is_super_admin:
        raise ApiError(403, "forbidden", "Only the orchestrator token or a superuser may do this.")


# --- organizations, senders, blocked channels, org tokens -------------------------------------------


_SENDER_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")


def whatsapp_sender_add(*, phone_number: str, sender_sid: str = "") -> WhatsAppSender:
    """Add a free WhatsApp sender to the pool that provisioning takes senders from."""
    number = validate_e164(phone_number.strip(), field="phoneNumber")
    sid = sender_sid.strip()
    if sid and not _SENDER_SID.match(sid):
        raise ApiError(400, "invalid_request", "senderSid is a Twilio SID such as XE… (two letters, 32 hex digits).",
                       field="senderSid")
    try:
        with transaction.atomic():
            return WhatsAppSender.objects.create(phone_number=number, sender_sid=sid)
    except IntegrityError:
        raise ApiError(409, "sender_exists", f"{number} is already in the WhatsApp sender pool.",
                       field="phoneNumber") from None


def blocked_channels_normalize(value: Any) -> list[str]:
    """`["*"]` blocks everything, `[]` nothing; names are deduplicated and put in a fixed order."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, "invalid_request", 'blockedChannels is a list of channel names, ["*"] or [].',
                       field="blockedChannels")
    names = {item.strip().lower() for item in value}
    if "*" in names:
        return ["*"]
    order = channel_names()
    unknown = sorted(names - set(order))
    if unknown:
        raise ApiError(400, "invalid_request",
                       f"Unknown channel {unknown[0]!r}: use {', '.join(order)} or \"*\".",
                       field="blockedChannels")
    return [name for name in order if name in names]


@transaction.atomic
def agent_blocked_channels_set(*, agent: Agent, blocked_channels: list[str]) -> list[str]:
    """Replace the agent's blocked channels; sends and inbound on them are refused from the next request."""
    Agent.objects.filter(pk=agent.pk).update(blocked_channels=blocked_channels)
    return blocked_channels


def org_token_current(*, organization_id: str) -> str:
    """The organization's newest live org token, decrypted from its stored copy."""
    from agents.crypto import decrypt

    row = (
        OrgToken.objects.filter(organization_id=organization_id, revoked_at__isnull=True)
        .order_by("-created_at", "-pk")
        .first()
    )
    token = decrypt(row.token_encrypted) if row is not None else ""
    if not token:
        raise ApiError(404, "not_found", "Your organization has no org token that can be shown.",
                       hint="Create a new one with POST /admin/api/regenerate-token.")
    return token


def org_token_regenerate(*, organization_id: str) -> str:
    """Issue a new org token and revoke every earlier one of the organization at once."""
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        raise ApiError(404, "not_found", f"No organization {organization_id!r}.", field="orgId")
    return org_token_issue(organization=organization, label="regenerated", revoke_existing=True).token


def caller_organization_id(principal: Principal, requested: str | None = None) -> str:
    """The organization whose token my-token and regenerate-token act on.

    An org token or an org's staff member: their own. A super-admin: `orgId` if named, else the
    organization the superuser belongs to; the orchestrator token and a superuser without one have
    no token of their own (404)."""
    if requested and principal.is_super_admin:
        return requested
    if requested and requested != principal.org_id:
        raise ApiError(403, "forbidden", "You may act only on your own organization.", field="orgId")
    if not principal.org_id:
        raise ApiError(404, "not_found", "You belong to no organization, so you have no org token.",
                       hint="As super-admin, name the organization with orgId.")
    return principal.org_id


# --- provider credential tests --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    success: bool
    message: str


def _single_line(value: str, field: str) -> str:
    if any(char in value for char in "\r\n\0"):
        raise ApiError(400, "invalid_request", f"{field} cannot contain line breaks.", field=field)
    value = value.strip()
    # Every provider credential is printable ASCII, and an HTTP header (where the SDKs put it) can
    # carry nothing else: anything more would fail inside the SDK as an encoding error.
    if not (value.isascii() and value.isprintable()):
        raise ApiError(400, "invalid_request", f"{field} must be printable ASCII.", field=field)
    return value


def _run_check(provider: str, check: Callable[[], str]) -> CheckResult:
    # The provider's answer decides; its message says why a key was refused. Neither the key nor
    # the provider's response body is logged.
    try:
        with cpu_turn_released():
            return CheckResult(True, check())
    except ProviderError as error:
        if error.reason == "auth_failed":
            return CheckResult(False, f"{provider} refused these credentials ({error.message}).")
        if error.status is None or error.reason in ("unavailable", "rate_limited"):
            return CheckResult(False, f"{provider} could not be reached to check them: {error.message}")
        return CheckResult(False, f"{provider} refused the check: {error.message}")


_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


def twilio_credentials_check(*, account_sid: str, auth_token: str) -> CheckResult:
    """Fetch the Twilio account with exactly these credentials."""
    from channels_app.providers import twilio_client

    account_sid = _single_line(account_sid, "accountSid")
    auth_token = _single_line(auth_token, "authToken")
    if not _ACCOUNT_SID.match(account_sid):
        raise ApiError(400, "invalid_request", "accountSid is AC followed by 32 hex digits.", field="accountSid")

    def check() -> str:
        name = twilio_client.check_credentials(account_sid, auth_token, settings.TWILIO_API_BASE_URL)
        return f"Twilio accepted these credentials (account {name!r})."

    return _run_check("Twilio", check)


def elevenlabs_key_check(*, api_key: str) -> CheckResult:
    """List voices with exactly this ElevenLabs key."""
    from channels_app.providers import elevenlabs_tts

    api_key = _single_line(api_key, "apiKey")

    def check() -> str:
        return f"ElevenLabs accepted this key ({elevenlabs_tts.check_api_key(api_key)} voices available)."

    return _run_check("ElevenLabs", check)


def resend_key_check(*, api_key: str) -> CheckResult:
    """List sending domains with exactly this Resend key."""
    from channels_app.providers import resend_email

    api_key = _single_line(api_key, "apiKey")

    def check() -> str:
        return f"Resend accepted this key ({resend_email.check_api_key(api_key)} sending domains)."

    return _run_check("Resend", check)


def line_token_check(*, channel_access_token: str) -> CheckResult:
    """Fetch the bot's profile with exactly this LINE channel access token."""
    from channels_app.providers import line

    channel_access_token = _single_line(channel_access_token, "channelAccessToken")

    def check() -> str:
        return f"LINE accepted this token (bot {line.check_access_token(channel_access_token)!r})."

    return _run_check("LINE", check)


PUBLIC_URL_CHECK_TIMEOUT_SECONDS = 5
PUBLIC_URL_CHECK_MAX_BYTES = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status, reported below


def public_url_check(*, url: str) -> CheckResult:
    """Fetch <url>/health from this server: does the public base URL reach this server from where it runs?

    Short timeout, no redirects followed (a redirect is reported with its Location), at most 64 KB read.
    """
    url = _single_line(url, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url or parts.username \
            or parts.password:
        raise ApiError(400, "invalid_request", "url must be an http(s) URL such as https://comms.example.com.",
                       field="url")
    health_url = url.rstrip("/") + "/health"
    opener = urllib.request.build_opener(_NoRedirects)
    request = urllib.request.Request(health_url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) only
    try:
        # A wait on the network: this worker's CPU turn goes to other requests meanwhile.
        with cpu_turn_released(), opener.open(request, timeout=PUBLIC_URL_CHECK_TIMEOUT_SECONDS) as response:
            body = response.read(PUBLIC_URL_CHECK_MAX_BYTES)
    except urllib.error.HTTPError as exc:
        location = exc.headers.get("Location") if 300 <= exc.code < 400 else None
        where = f" (redirecting to {location}, not followed)" if location else ""
        return CheckResult(False, f"{health_url} answered HTTP {exc.code}{where}; expected 200 from this server.")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return CheckResult(False, f"Could not reach {health_url}: {getattr(exc, 'reason', exc)}.")
    try:
        health = json.loads(body)
    except ValueError:
        health = None
    if not isinstance(health, dict) or health.get("status") != "ok" or "version" not in health:
        return CheckResult(False, f"{health_url} answered, but not with this server's health JSON.")
    return CheckResult(True, f"Reached {health_url}: status ok, version {health['version']}, "
                             f"{health.get('environment', 'unknown environment')}.")


# --- settings: save to .env, deploy ---------------------------------------------------------------


def _text(max_length: int) -> Callable[[str, Any], str]:
    def validate(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ApiError(400, "invalid_request", f"{key} must be a string.", field=f"credentials.{key}")
        if len(value) > max_length:
            raise ApiError(400, "invalid_request", f"{key} is longer than {max_length} characters.",
                           field=f"credentials.{key}")
        return value.strip()

    return validate


def _boolean(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in TRUE_VALUES | FALSE_VALUES:
        return "true" if value.strip().lower() in TRUE_VALUES else "false"
    raise ApiError(400, "invalid_request", f"{key} must be true or false.", field=f"credentials.{key}")


def _pattern(regex: str, description: str, max_length: int = 200) -> Callable[[str, Any], str]:
    compiled = re.compile(regex)
    text = _text(max_length)

    def validate(key: str, value: Any) -> str:
        cleaned = text(key, value)
        if cleaned and not compiled.match(cleaned):
            raise ApiError(400, "invalid_request", f"{key} must be {description}.", field=f"credentials.{key}")
        return cleaned

    return validate


def _base_url(key: str, value: Any) -> str:
    cleaned = _text(500)(key, value)
    if not cleaned:
        return ""
    parts = urlsplit(cleaned)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
            or parts.query or parts.fragment:
        raise ApiError(400, "invalid_request", f"{key} must be an http(s) URL such as https://comms.example.com.",
                       field=f"credentials.{key}")
    return cleaned.rstrip("/")


# The settings the setup wizard may write (contract §1). Anything else (SECRET_KEY, ORCHESTRATOR_TOKEN,
# DATABASE_URL, the *_API_BASE_URL test hooks, …) is refused: they are the operator's, set by hand.
SAVABLE_SETTINGS: dict[str, Callable[[str, Any], str]] = {
    "PUBLIC_BASE_URL": _base_url,
    "DEMO_MODE": _boolean,
    "TWILIO_ACCOUNT_SID": _pattern(r"^AC[0-9a-fA-F]{32}$", "AC followed by 32 hex digits"),
    "TWILIO_AUTH_TOKEN": _text(200),
    "RESEND_API_KEY": _text(200),
    "RESEND_WEBHOOK_SECRET": _pattern(r"^whsec_\S+$", "a Resend signing secret starting with whsec_"),
    "EMAIL_DEFAULT_DOMAIN": _pattern(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
                                     "a domain name such as agents.example.com"),
    "ELEVENLABS_API_KEY": _text(200),
    "ELEVENLABS_DEFAULT_VOICE": _pattern(r"^[A-Za-z0-9]{1,64}$", "an ElevenLabs voice id"),
    "LINE_CHANNEL_ACCESS_TOKEN": _text(1000),
    "LINE_CHANNEL_SECRET": _text(200),
    "VOICE_DEFAULT_GREETING": _text(1000),
    "VOICE_DEFAULT_LANGUAGE": _pattern(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$", "a language tag such as en-US", 35),
    "VOICE_AI_DISCLOSURE": _boolean,
}


def settings_validate(credentials: Any) -> dict[str, str]:
    """Every value checked before anything is written: one bad key refuses the whole request."""
    if not isinstance(credentials, dict) or not credentials:
        raise ApiError(400, "invalid_request", 'credentials is an object such as {"DEMO_MODE": true}.',
                       field="credentials")
    cleaned: dict[str, str] = {}
    for key, value in credentials.items():
        validator = SAVABLE_SETTINGS.get(key)
        if validator is None:
            raise ApiError(400, "invalid_request", f"{key!r} is not a setting the admin can save.",
                           field=f"credentials.{key}", hint=f"Known keys: {', '.join(SAVABLE_SETTINGS)}.")
        if isinstance(value, str) and any(char in value for char in "\r\n\0"):
            raise ApiError(400, "invalid_request", f"{key} cannot contain line breaks or NUL characters.",
                           field=f"credentials.{key}")
        cleaned[key] = validator(key, value)
    return cleaned


def settings_save(*, credentials: Any) -> list[str]:
    """Validate, then write the settings into ENV_FILE atomically; returns the keys saved."""
    cleaned = settings_validate(credentials)
    try:
        env_file_update(settings.ENV_FILE, cleaned)
    except OSError as exc:
        logger.error("Could not write %s: %s", settings.ENV_FILE, exc.strerror)
        raise ApiError(500, "settings_not_saved", f"Could not write the settings file: {exc.strerror}.") from None
    logger.info("Saved settings %s to %s", ", ".join(cleaned), settings.ENV_FILE)
    return list(cleaned)


def server_restart() -> CheckResult:
    """Restart this server process with the saved settings, after the current response has gone out."""
    if not restart.can_restart():
        return CheckResult(False, "This server cannot restart itself (it was not started by a server that runs "
                                  "the ASGI lifespan, such as uvicorn under `make run`). Restart it to apply the "
                                  "saved settings.")
    restart.schedule()
    return CheckResult(True, "Restarting with the saved settings; /health answers again in a few seconds.")
