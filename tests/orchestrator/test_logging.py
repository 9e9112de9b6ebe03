"""Tokens never reach a log line (contract §5), and redaction keeps records usable by server formatters."""

from __future__ import annotations

import logging

from uvicorn.logging import AccessFormatter

from orchestrator.logging import RedactTokensFilter, redact

TOKEN = "agt_" + "x" * 43


def record(msg: str, args: tuple[object, ...] | None) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, None)


def test_it_redacts_query_tokens_bearer_headers_and_bare_tokens() -> None:
    assert TOKEN not in redact(f"GET /sse?token={TOKEN}&agentId=a")
    assert "agentId=a" in redact(f"GET /sse?token={TOKEN}&agentId=a")
    assert TOKEN not in redact(f"Authorization: Bearer {TOKEN}")
    assert TOKEN not in redact(f"issued {TOKEN} to agent-a")


def test_it_keeps_uvicorn_access_records_formattable() -> None:
    entry = record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "GET", f"/sse?token={TOKEN}", "1.1", 200))

    assert RedactTokensFilter().filter(entry) is True

    assert isinstance(entry.args, tuple)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(entry)
    assert TOKEN not in line
    assert "/sse?token=[redacted]" in line


def test_it_redacts_a_token_hidden_in_a_non_string_argument() -> None:
    class Carrier:
        def __str__(self) -> str:
            return f"url=/mcp?token={TOKEN}"

    entry = record("request %s", (Carrier(),))
    RedactTokensFilter().filter(entry)
    assert TOKEN not in entry.getMessage()


def test_it_leaves_ordinary_lines_alone() -> None:
    entry = record("agent %s sent %d messages", ("agent-a", 3))
    RedactTokensFilter().filter(entry)
    assert entry.getMessage() == "agent agent-a sent 3 messages"
    assert entry.args == ("agent-a", 3)
