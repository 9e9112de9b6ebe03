"""GET /health, /health/ready and /metrics exactly as contract §4."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.test import Client

REPO_ROOT = Path(__file__).resolve().parents[2]
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def test_it_answers_health_with_exactly_the_contract_fields(client: Client) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "uptime", "version", "environment", "demoMode"}
    assert body["status"] == "ok"
    assert isinstance(body["uptime"], float) and body["uptime"] >= 0
    assert SEMVER.match(body["version"])
    assert body["environment"] == "development"
    assert body["demoMode"] is False


def test_it_reports_demo_mode_and_production_from_settings(client: Client, settings: object) -> None:
    settings.DEMO_MODE = True  # type: ignore[attr-defined]
    settings.ENVIRONMENT = "production"  # type: ignore[attr-defined]
    body = client.get("/health").json()
    assert (body["demoMode"], body["environment"]) == (True, "production")


@pytest.mark.django_db
def test_it_is_ready_when_the_database_and_channel_layer_answer(client: Client) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {
            "database": "ok",
            "telephony": "not_configured",
            "email": "not_configured",
            "tts": "not_configured",
            "line": "not_configured",
            "channelLayer": "ok",
        },
    }


@pytest.mark.django_db
def test_it_reports_every_provider_ok_in_demo_mode(client: Client, settings: object) -> None:
    settings.DEMO_MODE = True  # type: ignore[attr-defined]
    checks = client.get("/health/ready").json()["checks"]
    assert [checks[name] for name in ("telephony", "email", "tts", "line")] == ["ok"] * 4


@pytest.mark.django_db
def test_it_is_not_ready_when_the_database_check_fails(client: Client) -> None:
    with mock.patch("orchestrator.health.database_check", return_value="error"):
        response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "error"
    assert body["checks"]["channelLayer"] == "ok"


@pytest.mark.django_db
def test_it_is_not_ready_when_the_channel_layer_is_down(client: Client) -> None:
    with mock.patch("orchestrator.health._channel_layer_roundtrip", side_effect=ConnectionError("redis down")):
        response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["channelLayer"] == "error"


@pytest.mark.django_db
def test_it_really_queries_the_database_for_readiness() -> None:
    from django.db import connection

    from orchestrator.health import database_check

    def gone(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        raise RuntimeError("database is gone")

    with connection.execute_wrapper(gone):  # Django's documented hook around every query
        assert database_check() == "error"
    assert database_check() == "ok"


@pytest.mark.django_db
def test_it_is_not_ready_when_a_configured_provider_fails_its_check(client: Client) -> None:
    from orchestrator import health

    def broken() -> None:
        raise ConnectionError("provider unreachable")

    with mock.patch.dict(health.PROVIDER_CHECKS, {"email": (lambda: True, broken)}):
        response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["email"] == "error"


CONTRACT_METRICS = (
    "mcp_messages_sent_total",
    "mcp_messages_received_total",
    "mcp_tool_calls_total",
    "mcp_webhook_received_total",
    "mcp_auth_failures_total",
    "mcp_rate_limit_hits_total",
    "mcp_active_agents",
    "mcp_active_voice_sessions",
    "mcp_voice_turn_seconds",
    "mcp_uptime_seconds",
)


@pytest.mark.django_db
def test_it_exposes_the_contract_metrics_in_prometheus_text(client: Client) -> None:
    client.get("/health")  # so the django-prometheus request counters have a sample
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    for name in CONTRACT_METRICS:
        assert f"# TYPE {name} " in text, name
    assert 'mcp_messages_sent_total{channel="sms"}' in text
    assert 'mcp_rate_limit_hits_total{limit_type="spend_day"}' in text
    assert "mcp_voice_turn_seconds_bucket" in text
    assert "django_http_requests_total_by_method_total" in text
    uptime = re.search(r"^mcp_uptime_seconds (\S+)$", text, re.MULTILINE)
    assert uptime and float(uptime.group(1)) > 0


WORKER = """
from orchestrator import metrics
metrics.MESSAGES_SENT.labels(channel="sms").inc()
metrics.AUTH_FAILURES.inc(2)
"""

SCRAPER = """
import django
django.setup()
from django.test import Client
print(Client().get("/metrics").content.decode())
"""


def test_it_adds_up_counters_from_several_processes(tmp_path: Path) -> None:
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "DJANGO_SETTINGS_MODULE": "orchestrator.settings"}

    def run(code: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    run(WORKER)
    run(WORKER)
    text = run(SCRAPER)

    assert re.search(r'^mcp_messages_sent_total\{channel="sms"\} 2\.0$', text, re.MULTILINE), text
    assert re.search(r"^mcp_auth_failures_total 4\.0$", text, re.MULTILINE), text
