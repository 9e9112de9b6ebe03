"""status, save (contract §9): secrets masked, only known keys, atomic write, nothing written on refusal."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from orchestrator.env import parse_env_file
from tests.admin_ui.conftest import bearer

pytestmark = pytest.mark.django_db

ORIGINAL = (
    "# operator's notes stay\n"
    "DEMO_MODE=true\n"
    "\n"
    "export SECRET_KEY=keep-me\n"
    "PUBLIC_BASE_URL=http://localhost:3100\n"
    "TWILIO_AUTH_TOKEN=old-token\n"
)


@pytest.fixture
def env_file(settings: Any, tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(ORIGINAL, encoding="utf-8")
    os.chmod(path, 0o600)
    settings.ENV_FILE = path
    return path


def save(client: Client, token: str, credentials: Any) -> Any:
    return client.post("/admin/api/save", {"credentials": credentials}, content_type="application/json",
                       **bearer(token))


def test_it_saves_known_keys_keeping_other_lines_and_comments(client: Client, orchestrator_token: str,
                                                             env_file: Path) -> None:
    sid = "AC" + "a1" * 16
    response = save(client, orchestrator_token, {
        "TWILIO_ACCOUNT_SID": sid,
        "TWILIO_AUTH_TOKEN": "new-secret-token",
        "DEMO_MODE": False,
        "PUBLIC_BASE_URL": "https://comms.example.net/",
        "VOICE_DEFAULT_GREETING": "  Hi there, it's Ana  ",
    })

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True
    assert body["saved"] == ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "DEMO_MODE", "PUBLIC_BASE_URL",
                             "VOICE_DEFAULT_GREETING"]
    assert "new-secret-token" not in response.content.decode()
    text = env_file.read_text(encoding="utf-8")
    assert text.startswith("# operator's notes stay\nDEMO_MODE=false\n\nexport SECRET_KEY=keep-me\n")
    assert "TWILIO_AUTH_TOKEN=new-secret-token\n" in text and "old-token" not in text
    values = parse_env_file(env_file)
    assert values["TWILIO_ACCOUNT_SID"] == sid
    assert values["PUBLIC_BASE_URL"] == "https://comms.example.net"
    assert values["VOICE_DEFAULT_GREETING"] == "Hi there, it's Ana"
    assert values["SECRET_KEY"] == "keep-me"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in env_file.parent.iterdir()) == [".env"]  # no temporary file left behind


def test_a_value_that_the_parser_would_change_is_quoted_so_it_reads_back_exactly(
        client: Client, orchestrator_token: str, env_file: Path) -> None:
    greeting = "'quoted' both ends'"
    assert save(client, orchestrator_token, {"VOICE_DEFAULT_GREETING": greeting}).status_code == 200
    assert parse_env_file(env_file)["VOICE_DEFAULT_GREETING"] == greeting


def test_it_creates_the_file_when_there_is_none(client: Client, orchestrator_token: str, settings: Any,
                                                tmp_path: Path) -> None:
    settings.ENV_FILE = tmp_path / "fresh.env"
    assert save(client, orchestrator_token, {"DEMO_MODE": "yes"}).status_code == 200
    assert settings.ENV_FILE.read_text() == "DEMO_MODE=true\n"
    assert stat.S_IMODE(settings.ENV_FILE.stat().st_mode) == 0o600


@pytest.mark.parametrize(("credentials", "field"), [
    ({"SECRET_KEY": "x"}, "credentials.SECRET_KEY"),
    ({"ORCHESTRATOR_TOKEN": "orch_x"}, "credentials.ORCHESTRATOR_TOKEN"),
    ({"TWILIO_API_BASE_URL": "http://evil"}, "credentials.TWILIO_API_BASE_URL"),
    ({"DEMO_MODE": False, "NOT_A_SETTING": "1"}, "credentials.NOT_A_SETTING"),
    ({"TWILIO_AUTH_TOKEN": "abc\nSECRET_KEY=pwned"}, "credentials.TWILIO_AUTH_TOKEN"),
    ({"VOICE_DEFAULT_GREETING": "a\rb"}, "credentials.VOICE_DEFAULT_GREETING"),
    ({"RESEND_API_KEY": "re_\x00"}, "credentials.RESEND_API_KEY"),
    ({"DEMO_MODE": "maybe"}, "credentials.DEMO_MODE"),
    ({"DEMO_MODE": 1}, "credentials.DEMO_MODE"),
    ({"PUBLIC_BASE_URL": "ftp://example.com"}, "credentials.PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "not a url"}, "credentials.PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://user:pw@example.com"}, "credentials.PUBLIC_BASE_URL"),
    ({"TWILIO_ACCOUNT_SID": "ACnothex"}, "credentials.TWILIO_ACCOUNT_SID"),
    ({"RESEND_WEBHOOK_SECRET": "nope"}, "credentials.RESEND_WEBHOOK_SECRET"),
    ({"VOICE_AI_DISCLOSURE": None}, "credentials.VOICE_AI_DISCLOSURE"),
    ({"ELEVENLABS_API_KEY": 42}, "credentials.ELEVENLABS_API_KEY"),
    ({}, "credentials"),
    ("DEMO_MODE=true", "credentials"),
])
def test_a_refused_save_leaves_the_file_byte_for_byte_unchanged(client: Client, orchestrator_token: str,
                                                               env_file: Path, credentials: Any, field: str) -> None:
    before = env_file.read_bytes()
    before_stat = env_file.stat()

    response = save(client, orchestrator_token, credentials)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"
    assert response.json()["field"] == field
    assert env_file.read_bytes() == before
    assert env_file.stat().st_ino == before_stat.st_ino  # not even rewritten with the same bytes
    assert "pwned" not in response.content.decode()


def test_a_forbidden_save_leaves_the_file_unchanged(client: Client, env_file: Path, make_org: Any) -> None:
    _org, token = make_org("Acme")
    before = env_file.read_bytes()
    response = save(client, token, {"DEMO_MODE": False})
    assert response.status_code == 403
    assert env_file.read_bytes() == before


def test_status_masks_secrets_and_reports_what_is_configured(client: Client, orchestrator_token: str,
                                                            settings: Any) -> None:
    settings.TWILIO_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
    settings.TWILIO_AUTH_TOKEN = "twilio-secret-auth-token"
    settings.RESEND_API_KEY = "re_secret_resend_key"
    settings.ELEVENLABS_API_KEY = None
    settings.LINE_CHANNEL_ACCESS_TOKEN = "line-secret"
    settings.PUBLIC_BASE_URL = "https://comms.example.net"
    settings.DEMO_MODE = True

    response = client.get("/admin/api/status", **bearer(orchestrator_token))

    assert response.status_code == 200
    body = response.json()
    assert body["twilio"] == {"configured": True, "accountSid": "AC…cdef"}
    assert body["elevenlabs"]["configured"] is False
    assert body["resend"]["configured"] is True
    assert body["line"]["configured"] is True
    assert body["server"]["publicBaseUrl"] == "https://comms.example.net"
    assert body["server"]["demoMode"] is True
    text = response.content.decode()
    for secret in ("twilio-secret-auth-token", "re_secret_resend_key", "line-secret", "0123456789abcdef0123"):
        assert secret not in text


def test_saved_values_never_reach_the_logs(client: Client, orchestrator_token: str, env_file: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    save(client, orchestrator_token, {"TWILIO_AUTH_TOKEN": "log-canary-secret"})
    save(client, orchestrator_token, {"TWILIO_AUTH_TOKEN": "log-canary-secret\nX=1"})
    assert "log-canary-secret" not in caplog.text
