"""The server's garbage collector after start-up (orchestrator/heap.py): what it was started with is frozen,
the young generation is collected less often, and a process that only imports the application is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Imports the ASGI application as uvicorn does, optionally sends it the lifespan start-up, and prints the
# collector's state.
SERVER_START = """
import asyncio, gc, json, sys
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
print(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()[0]}))
"""


def _collector_after(tmp_path: Path, mode: str, **environ: str) -> dict[str, int]:
    env = {**os.environ, "ENV_FILE": str(tmp_path / "absent.env"), "SECRET_KEY": "test-secret", "DEBUG": "false",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "CALLBACK_SWEEP_SECONDS": "0", **environ}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", SERVER_START, mode], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_it_freezes_the_startup_heap_and_collects_young_objects_less_often_once_the_server_starts(tmp_path: Path) -> None:
    collector = _collector_after(tmp_path, "lifespan", GC_YOUNG_THRESHOLD="12345")

    assert collector["frozen"] > 10_000  # Django, the MCP SDK and the application, out of the collector's sight
    assert collector["threshold"] == 12345


def test_it_leaves_the_collector_alone_in_a_process_that_only_imports_the_application(tmp_path: Path) -> None:
    collector = _collector_after(tmp_path, "import")

    assert collector == {"frozen": 0, "threshold": 700}
