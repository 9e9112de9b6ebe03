"""Safe defaults (issue 14, item 3): loopback unless told otherwise, and no HTML or settings in any
error a machine path answers, whatever DEBUG says."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from django.test import Client

from tests.live_server import LIVE_SERVER_APPS, LiveServer

REPO_ROOT = Path(__file__).resolve().parents[2]
MACHINE_PATHS = ["/api/v1/health", "/api/v1/no-such-operation", "/admin/api/status", "/webhooks/agent-a/sms",
                 "/health", "/mcp/extra", "/sse/"]
SECRETS_SHOWN_BY_DEBUG_PAGES = ("DATABASE", "SECRET_KEY", "REDIS", "Traceback", "<html", "<!DOCTYPE")



@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("path", MACHINE_PATHS)
def test_a_bad_host_header_gets_a_json_400_without_settings(client: Client, settings, debug: bool, path: str) -> None:
    settings.DEBUG = debug
    response = client.get(path, HTTP_HOST="attacker.example.com")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "invalid_request"
    assert not any(marker in response.content.decode() for marker in SECRETS_SHOWN_BY_DEBUG_PAGES)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/no-such-operation", "/webhooks/agent-a/nothing", "/mcp/extra", "/sse/"])
def test_an_unknown_machine_path_gets_json_404_even_with_debug(client: Client, settings, path: str) -> None:
    settings.DEBUG = True
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)
async def test_the_live_server_answers_a_bad_host_with_json_whatever_debug_says(asgi_server: LiveServer, settings) -> None:
    settings.DEBUG = True
    async with httpx.AsyncClient(base_url=asgi_server.url, headers={"Host": "attacker.example.com"}) as http:
        for path in ("/api/v1/health", "/webhooks/agent-a/sms", "/health", "/admin/api/status"):
            response = await http.get(path)
            assert response.status_code == 400, path
            assert response.headers["content-type"] == "application/json"
            assert not any(marker in response.text for marker in SECRETS_SHOWN_BY_DEBUG_PAGES), response.text[:300]
        for path in ("/mcp", "/sse"):
            response = await http.get(path)
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/json"


def make_run_command(**environ: str) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("HOST", "PORT", "MAKEFLAGS")}
    env.update(environ)
    result = subprocess.run(["make", "-n", "run"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if "uvicorn orchestrator.asgi:application" in line)


def test_make_run_serves_on_loopback_unless_told_otherwise() -> None:
    assert "--host 127.0.0.1 " in make_run_command()
    assert "--host 0.0.0.0 --port 3197 " in make_run_command(HOST="0.0.0.0", PORT="3197")


def test_make_run_creates_the_first_run_secrets_with_a_command_before_migrating() -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("HOST", "PORT", "MAKEFLAGS")}
    result = subprocess.run(["make", "-n", "run"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = result.stdout.splitlines()
    init = next(i for i, line in enumerate(lines) if "manage.py init_secrets" in line)
    migrate = next(i for i, line in enumerate(lines) if "manage.py migrate" in line)
    assert init < migrate
