"""Log filter that keeps secrets out of every line (contract §5).

Three nets, since a secret can reach a line in many spellings (a request line, a repr of headers, an
exception message, an SDK's debug output):

1. by name: the value after a secret-bearing parameter or header name (`token=`, `access_token=`,
   `Authorization: …`, `'x-twilio-signature': '…'`), also when the separators are percent-encoded
   (`/sse%3Btoken%3Dagt_…`, `%26token%3D…`);
2. by shape: anything that looks like one of our tokens (`agt_`, `org_`, `orch_` + 16 characters);
3. by value: the configured secrets themselves (ORCHESTRATOR_TOKEN with or without its prefix,
   SECRET_KEY, the provider keys, the passwords in DATABASE_URL and REDIS_URL), raw or percent-encoded.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from django.test.signals import setting_changed

REDACTED = "[redacted]"

# Parameter and header names whose values are secrets. Matched case-insensitively, with `-` or `_`.
SECRET_NAMES = (
    "token", "access[-_]?token", "refresh[-_]?token", "id[-_]?token", "auth[-_]?token", "api[-_]?key", "apikey",
    "x[-_]api[-_]key", "secret", "client[-_]secret", "password", "passwd", "authorization", "proxy[-_]authorization",
    "cookie", "set[-_]cookie", "x[-_]twilio[-_]signature", "svix[-_]signature", "x[-_]line[-_]signature",
    "x[-_]comms[-_]signature", "signature", "security[-_]?token", "callback[-_]?secret",
)
_NAME = "(?:" + "|".join(SECRET_NAMES) + ")"
# Where a parameter name starts: a query or path-parameter separator, raw or percent-encoded (once or twice).
_PARAM_START = r"(?:[?&;]|%(?:25)?(?:3[fF]|26|3[bB]))"
_PARAM_EQUALS = r"(?:=|%(?:25)?3[dD])"
# A header or dict entry: `Name: value`, `'name': 'value'`, `"name"="value"`.
# Not after a parameter separator (the first pattern has those) and never over a value already redacted.
_HEADER = r"""(?<![A-Za-z0-9_\-?&;%./])(["']?)""" + _NAME + r"""\1(\s*[:=]\s*)(["']?)(?!\[redacted\])"""

_TOKEN_PATTERNS = [
    (re.compile(r"(" + _PARAM_START + _NAME + _PARAM_EQUALS + r")[^&;\s\"',]+", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.~+/=%]+"), r"\1" + REDACTED),
    (re.compile(_HEADER + r"""([^"'\s&}][^"'\r\n&}]*)""", re.IGNORECASE), None),
    (re.compile(r"(agt|org|orch)_[A-Za-z0-9_\-]{16,}"), r"\1_" + REDACTED),
]

# Settings whose values are secrets, and settings that are URLs carrying a password.
SECRET_SETTINGS = (
    "ORCHESTRATOR_TOKEN", "SECRET_KEY", "TWILIO_AUTH_TOKEN", "RESEND_API_KEY", "RESEND_WEBHOOK_SECRET",
    "ELEVENLABS_API_KEY", "LINE_CHANNEL_ACCESS_TOKEN", "LINE_CHANNEL_SECRET",
)
URL_SETTINGS = ("DATABASE_URL", "REDIS_URL")
# Shorter values are not redacted by value: they would blank out ordinary words (the nets above still apply).
MIN_SECRET_LENGTH = 8


def _header_replacement(match: re.Match[str]) -> str:
    whole = match.group(0)
    return whole[: match.start(4) - match.start(0)] + REDACTED


def _configured_secrets() -> tuple[str, ...]:
    """The secret values to redact, read from settings once and again only after a setting changed
    (every log line asks: reading and sorting them per line cost more than the redaction itself)."""
    global _secrets_cache
    if _secrets_cache is None:
        secrets = _read_configured_secrets()
        if secrets is None:
            return ()
        _secrets_cache = secrets
    return _secrets_cache


_secrets_cache: tuple[str, ...] | None = None


def _forget_configured_secrets(**_: object) -> None:
    global _secrets_cache
    _secrets_cache = None


setting_changed.connect(_forget_configured_secrets)


def _read_configured_secrets() -> tuple[str, ...] | None:
    """None while settings are not configured yet (nothing is cached then)."""
    try:
        from django.conf import settings

        if not settings.configured:
            return None
        values = [str(getattr(settings, name, "") or "") for name in SECRET_SETTINGS]
        for name in URL_SETTINGS:
            url = str(getattr(settings, name, "") or "")
            try:
                values.append(urlsplit(url).password or "")
            except ValueError:
                continue
        token = str(getattr(settings, "ORCHESTRATOR_TOKEN", "") or "")
    except Exception:  # logging must never fail because settings cannot be read
        return None
    if "_" in token:
        values.append(token.split("_", 1)[1])  # the token without its `orch_` prefix
    return tuple(sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True))


@functools.lru_cache(maxsize=8)
def _secrets_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    spellings = {spelling for value in secrets for spelling in (value, quote(value, safe=""), quote(value))}
    return re.compile("|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True)))


def redact(text: str) -> str:
    for pattern, replacement in _TOKEN_PATTERNS:
        text = pattern.sub(replacement if replacement is not None else _header_replacement, text)
    secrets = _secrets_pattern(_configured_secrets())
    if secrets is not None:
        text = secrets.sub(REDACTED, text)
    return text


def _redact_value(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


_FORMATTER = logging.Formatter()


class RedactTokensFilter(logging.Filter):
    """Sits on the request-line loggers and on every handler, so a record usually meets it twice or more:
    it is redacted once (marked `comms_redacted`). Most lines hold no secret: the rendered line is
    checked first, and only a line with something to hide is redacted part by part. A logged request
    line cost 350–510 µs of filtering before, 31–90 µs now (docs/decisions/007-log-redaction.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "comms_redacted", False):
            return True
        try:
            message: str | None = record.getMessage()
        except Exception:  # a malformed record is still redacted part by part below
            message = None
        if message is not None and not record.exc_info and not record.exc_text and redact(message) == message:
            # Nothing to hide in what any formatter prints (the rendered line, or uvicorn's access line,
            # which is made of the same arguments).
            record.comms_redacted = True
            return True
        self._redact_parts(record)
        record.comms_redacted = True
        return True

    @staticmethod
    def _redact_parts(record: logging.LogRecord) -> None:
        # Redact the format string and each argument in place, keeping `args` a tuple: uvicorn's
        # access formatter unpacks `record.args` (client, method, path, version, status).
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redact_value(value) for key, value in record.args.items()}
        if record.exc_info and not record.exc_text:
            # A traceback quotes URLs and arguments (an SDK's request, a DSN): format it now, redacted;
            # formatters use exc_text as it is once set.
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logged as it is rather than dropped
            return
        redacted = redact(message)
        if redacted != message:
            # A token hidden in a non-string argument: fall back to the rendered, redacted line.
            record.msg = redacted
            record.args = None


class OneLineSecurityRefusals(logging.Filter):
    """Django logs a refused request (`SuspiciousOperation`: a bad Host header, too many fields) at ERROR
    on `django.security.<name>` with the exception's traceback. The traceback only shows Django's own
    frames and the client, not the server, is at fault: one WARNING line says everything, and anyone can
    send such requests, so a traceback each would flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security.") and record.exc_info:
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def install_redaction_on_all_handlers() -> None:
    """Servers (daphne, uvicorn) attach their own handlers; redact on those too."""
    token_filter = RedactTokensFilter()
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, RedactTokensFilter) for f in handler.filters):
                handler.addFilter(token_filter)
