"""One JSON reader for every body a client or provider sends us (REST, webhooks, the MCP gate).

The standard library's `json` accepts what no column can hold and crashes on what it cannot parse:
a lone surrogate (`"\\ud800"`) becomes a str that PostgreSQL and SQLite refuse to encode (a 500
after validation passed), and an array nested 10,000 deep raises RecursionError (a 500 too).
pydantic-core's parser (already what pydantic and the MCP SDK parse with) refuses both as ordinary
ValueErrors: lone surrogates are invalid escapes, and nesting stops at a fixed depth far beyond any
real payload. NaN and Infinity are refused too, as RFC 8259 says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic_core
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


def loads(body: bytes | str) -> Any:
    """Parse JSON text; ValueError for anything that is not plain, storable JSON."""
    return pydantic_core.from_json(body, allow_inf_nan=False)


class JsonParser(BaseParser):
    """DRF's JSON parser on `loads`: a body it refuses is a 400 `invalid_request`, never a 500."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            return loads(stream.read() if stream is not None else b"")
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
