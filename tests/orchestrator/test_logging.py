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


# --- issue 14, item 6: by name (percent-encoded too), by configured value --------------------------


def test_it_redacts_a_token_after_percent_encoded_separators() -> None:
    for line in (f"GET /sse%3Btoken%3D{TOKEN} HTTP/1.1", f"GET /sse%3btoken%3d{TOKEN}", f"/x%26token%3D{TOKEN}",
                 f"/sse%253Btoken%253D{TOKEN}", f"/sse;token={TOKEN}"):
        assert TOKEN not in redact(line), line
        assert TOKEN[4:20] not in redact(line), line


def test_it_redacts_secret_parameters_and_headers_by_name_whatever_the_value() -> None:
    assert redact("/cb?access_token=opaque-value-1&x=1") == "/cb?access_token=[redacted]&x=1"
    assert redact("GET /x?api_key=k123456&y=2") == "GET /x?api_key=[redacted]&y=2"
    assert "opaque" not in redact("{'authorization': 'Basic opaque-value', 'host': 'h'}")
    assert "'host': 'h'" in redact("{'authorization': 'Basic opaque-value', 'host': 'h'}")
    assert "abc+/=" not in redact("X-Twilio-Signature: abc+/=")
    assert "opaque" not in redact('{"Authorization": "opaque-value"}')
    assert "sessionid" not in redact("Cookie: sessionid=s3cr3t")


def test_it_redacts_the_configured_secret_values_with_or_without_a_prefix(settings) -> None:
    settings.ORCHESTRATOR_TOKEN = "orch_Configured-Orchestrator-Value"
    settings.TWILIO_AUTH_TOKEN = "twilio-auth-token-value-0123"
    settings.RESEND_API_KEY = "re_resend-key-value-0123"
    settings.DATABASE_URL = "postgres://app:db-password-value@db:5432/comms"
    line = ("orch token Configured-Orchestrator-Value, twilio twilio-auth-token-value-0123, resend "
            "re_resend-key-value-0123, dsn postgres://app:db-password-value@db/x, quoted "
            "Configured%2DOrchestrator%2DValue")
    redacted = redact(line)
    for secret in ("Configured-Orchestrator-Value", "twilio-auth-token-value-0123", "resend-key-value-0123",
                   "db-password-value"):
        assert secret not in redacted, redacted
    assert redacted.startswith("orch token [redacted], twilio [redacted], resend [redacted]")


def test_it_redacts_tokens_in_a_logged_traceback() -> None:
    try:
        raise RuntimeError(f"request to /cb?token={TOKEN} failed")
    except RuntimeError:
        import sys

        entry = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    RedactTokensFilter().filter(entry)
    assert TOKEN not in logging.Formatter().format(entry)



def test_a_bad_host_header_is_one_warning_line_without_a_traceback(client) -> None:
    """Anyone can send a bad Host header: the server's log gets a line per refusal, not a traceback each.
    Read from the console handler the settings configure (LOGGING), whatever else pytest attaches."""
    import io

    from orchestrator.logging import OneLineSecurityRefusals

    console = next(h for h in logging.getLogger().handlers
                   if isinstance(h, logging.StreamHandler) and any(isinstance(f, OneLineSecurityRefusals) for f in h.filters))
    out = io.StringIO()
    previous = console.setStream(out)
    try:
        response = client.get("/api/v1/health", HTTP_HOST="evil.example")
    finally:
        console.setStream(previous)

    assert response.status_code == 400
    lines = out.getvalue().splitlines()
    assert lines[0] == "Invalid HTTP_HOST header: 'evil.example'. You may need to add 'evil.example' to ALLOWED_HOSTS."
    assert not any("Traceback" in line for line in lines), lines


def test_a_secret_configured_after_start_is_redacted_by_value(settings) -> None:
    """The configured secrets are read once, and again when a setting changes."""
    secret = "freshly-rotated-twilio-auth-token"
    assert redact(f"signature check with {secret}") == f"signature check with {secret}"
    settings.TWILIO_AUTH_TOKEN = secret
    assert secret not in redact(f"signature check with {secret}")


def test_a_record_is_redacted_once_however_many_filters_it_meets() -> None:
    entry = record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "GET", f"/sse?token={TOKEN}", "1.1", 200))
    first, second = RedactTokensFilter(), RedactTokensFilter()
    assert first.filter(entry) and second.filter(entry)
    assert TOKEN not in entry.getMessage()
    assert entry.args is not None and entry.args[2] == "/sse?token=[redacted]"
