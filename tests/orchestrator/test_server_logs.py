"""The server `make run` starts prints its request lines with tokens redacted (contract §5).

uvicorn logs every request's path with its query string, and `/sse?token=…` carries an agent token
there. The in-process tests (test_logging.py) check the filter; this one runs the very command of
the Makefile's `run` target in a subprocess, as a user would get it, and reads what it printed.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.live_server import REPO_ROOT, free_port

TOKEN = "agt_" + "s3cr3t" * 7


def make_run_server_command(port: int) -> list[str]:
    """The server line of `make run`, as make would run it (`make -n` prints the recipe, runs nothing)."""
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", f"PORT={port}", f"PY={sys.executable}"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout
    command = shlex.split(next(line for line in recipe.splitlines() if " -m uvicorn " in line))
    # Loopback only: the test has no business listening on every interface.
    command[command.index("--host") + 1] = "127.0.0.1"
    return command


def wait_for_port(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, f"server exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)


def test_it_serves_make_run_with_httptools_and_uvloop() -> None:
    command = make_run_server_command(3100)
    assert command[1:3] == ["-m", "uvicorn"]
    assert command[command.index("--http") + 1] == "httptools"
    assert command[command.index("--loop") + 1] == "uvloop"


def test_it_never_prints_a_query_token_in_make_runs_request_log(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'logs.sqlite3'}", PYTHONPATH=str(REPO_ROOT))
    env.pop("REDIS_URL", None)
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(make_run_server_command(port), cwd=REPO_ROOT, env=env, stdout=sink, stderr=sink)
        try:
            wait_for_port(process, port)
            health = httpx.get(f"http://127.0.0.1:{port}/health?token={TOKEN}&agentId=a", timeout=10)
        finally:
            process.terminate()
            process.wait(timeout=15)
    printed = output.read_text()

    assert health.status_code == 200
    assert '"GET /health?token=[redacted]&agentId=a HTTP/1.1" 200' in printed
    assert TOKEN not in printed
    assert "s3cr3t" not in printed
