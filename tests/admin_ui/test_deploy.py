"""deploy (contract §9): the server restarts itself with the saved settings and comes back healthy.

The real thing runs a throwaway server: uvicorn in a subprocess on a free port, its own SQLite file
and `.env`, started the way `make run` starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.admin_ui.conftest import bearer
from tests.live_server import REPO_ROOT, free_port

pytestmark = pytest.mark.django_db

TOKEN = "orch_deploy_test_token_0123456789abcdef"


def test_deploy_inside_a_process_without_a_lifespan_server_says_it_cannot_restart(
        client: Client, orchestrator_token: str) -> None:
    response = client.post("/admin/api/deploy", **bearer(orchestrator_token))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False
    assert "cannot restart itself" in body["message"]


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except httpx.TransportError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def throwaway_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    env_file = tmp_path / ".env"
    env_file.write_text("# written by the operator\nDEMO_MODE=false\n", encoding="utf-8")
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in ("DEMO_MODE", "PUBLIC_BASE_URL", "REDIS_URL", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update(ENV_FILE=str(env_file), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", ORCHESTRATOR_TOKEN=TOKEN,
               GENERATE_SECRETS="false", PORT=str(port), PYTHONPATH=str(REPO_ROOT))
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO_ROOT, env=env,
                   check=True, timeout=180)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "orchestrator.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=REPO_ROOT, env=env,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_deploy_restarts_the_server_with_the_saved_settings(throwaway_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, process = throwaway_server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=10) as http:
        def health() -> dict[str, Any] | None:
            response = http.get("/health")
            return response.json() if response.status_code == 200 else None

        first = wait_for(health, timeout=60, what="the server to start")
        assert first["demoMode"] is False
        saved = http.post("/admin/api/save", headers=headers,
                          json={"credentials": {"DEMO_MODE": True, "VOICE_DEFAULT_GREETING": "Back with new settings"}})
        assert saved.json() == {"success": True, "message": saved.json()["message"],
                                "saved": ["DEMO_MODE", "VOICE_DEFAULT_GREETING"]}
        assert http.get("/admin/api/status", headers=headers).json()["server"]["demoMode"] is False  # not yet
        # Let the first process live measurably long, so a fresh uptime is told apart from an old one.
        wait_for(lambda: health()["uptime"] > 1.0, timeout=30, what="an uptime above one second")
        started_deploy = time.monotonic()

        deployed = http.post("/admin/api/deploy", headers=headers)

        assert deployed.status_code == 200
        assert deployed.json()["success"] is True
        after = wait_for(lambda: (body := health()) and body["demoMode"] and body, timeout=60,
                         what="the server to come back with DEMO_MODE on")
        assert after["uptime"] < time.monotonic() - started_deploy + 0.5  # a fresh process image
        assert process.poll() is None  # the same process, re-executed: whoever waits on its pid is not woken
        status = http.get("/admin/api/status", headers=headers).json()
        assert status["server"]["demoMode"] is True
        assert status["voice"]["defaultGreeting"] == "Back with new settings"
