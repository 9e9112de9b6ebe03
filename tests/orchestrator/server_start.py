"""Run a script in a process of its own after importing the ASGI application as uvicorn does and, in mode
"lifespan", sending it the lifespan start-up (mode "import": only the import, as tests and manage.py do).
For what start-up does to the whole process (the collector, the threads' CPUs), which a test must not do to
the test process itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

_START = """
import asyncio, sys
import orchestrator.asgi

async def start():
    messages = [{"type": "lifespan.startup"}]
    started = asyncio.Event()

    async def receive():
        if messages:
            return messages.pop()
        await started.wait()
        await asyncio.sleep(3600)

    async def send(message):
        started.set()

    task = asyncio.create_task(orchestrator.asgi.application({"type": "lifespan"}, receive, send))
    await started.wait()
    task.cancel()

if sys.argv[1] == "lifespan":
    asyncio.run(start())
"""


def after_server_start(
    tmp_path: Path, mode: str, script: str, *, prefix: tuple[str, ...] = (), **environ: str
) -> dict[str, Any]:
    """The JSON object `script` prints last, run after the start-up of `mode`; `prefix` runs it under a
    command (such as `taskset -c 0`)."""
    env = {**os.environ, "ENV_FILE": str(tmp_path / "absent.env"), "SECRET_KEY": "test-secret", "DEBUG": "false",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "CALLBACK_SWEEP_MILLISECONDS": "0", **environ}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [*prefix, sys.executable, "-c", _START + script, mode],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))
