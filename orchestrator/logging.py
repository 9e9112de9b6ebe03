"""Log filter that redacts bearer tokens and `token=` query values from every line (contract §5)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

_TOKEN_PATTERNS = [
    (re.compile(r"(?i)([?&]token=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.~+/=]+"), r"\1[redacted]"),
    (re.compile(r"\b(agt|org|orch)_[A-Za-z0-9_\-]{16,}"), r"\1_[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _TOKEN_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactTokensFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Redact the format string and each argument in place, keeping `args` a tuple: uvicorn's
        # access formatter unpacks `record.args` (client, method, path, version, status).
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redact_value(value) for key, value in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logged as it is rather than dropped
            return True
        redacted = redact(message)
        if redacted != message:
            # A token hidden in a non-string argument: fall back to the rendered, redacted line.
            record.msg = redacted
            record.args = None
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
