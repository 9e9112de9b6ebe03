"""A real server on a real socket: uvicorn serving the project's ASGI application inside the test's
event loop, on a random port. MCP, SSE and WebSocket tests connect to it with real clients.

Tests that use it need committed data (the server reads the database from other threads), so the
fixture depends on `transactional_db`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from django.db import connection, connections

REPO_ROOT = Path(__file__).resolve().parent.parent

# Live-server tests need committed data (`django_db(transaction=True)`). Naming the apps they use
# makes the flush after each test truncate only those tables and skip the post_migrate signal,
# which on PostgreSQL turns about a second per test into a few milliseconds.
LIVE_SERVER_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "agents", "channels_app", "voice", "admin_ui"]


@dataclass(frozen=True)
class LiveServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class InProcessServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test process owns signal handling, pytest's stay."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_uvicorn(app: Any, *, host: str = "127.0.0.1") -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off", access_log=False)
    server = InProcessServer(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


async def stop_uvicorn(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    # Open SSE streams would hold a graceful shutdown for ever; tests end their clients first.
    server.force_exit = True
    try:
        await asyncio.wait_for(task, timeout=10)
    except TimeoutError:
        task.cancel()


@contextlib.asynccontextmanager
async def live_server(app: Any) -> AsyncIterator[LiveServer]:
    """Serve `app` on a random loopback port in this loop; afterwards undo what serving left behind."""
    from orchestrator import agent_registry
    from orchestrator.lifespan import run_shutdown_hooks
    from orchestrator.workers import reset_worker_threads

    server, task, port = await start_uvicorn(app)
    try:
        yield LiveServer("127.0.0.1", port)
    finally:
        await stop_uvicorn(server, task)
        # lifespan="off" (as under daphne): run what a lifespan shutdown would.
        await run_shutdown_hooks()
        await agent_registry.shutdown()
        # The server ran ORM calls in Django's sync thread; close those connections, or PostgreSQL
        # refuses to drop the test database at the end of the run.
        await sync_to_async(connections.close_all)()
        await asyncio.get_running_loop().run_in_executor(None, reset_worker_threads)
        # Services also run ORM calls in the loop's default pool; its threads' connections go with
        # the threads (the loop ends with the test anyway).
        await asyncio.get_running_loop().shutdown_default_executor()
        if connection.vendor == "postgresql":
            # Connections of finished threads close when collected; PostgreSQL refuses to drop a
            # database that still has sessions at the end of the run.
            gc.collect()


@pytest.fixture
async def asgi_server(transactional_db: None) -> AsyncIterator[LiveServer]:
    from orchestrator.asgi import application

    async with live_server(application) as server:
        yield server


def shared_database_url() -> str | None:
    """A DATABASE_URL under which another process sees this test run's database, if there is one."""
    settings_dict = connection.settings_dict
    engine = settings_dict["ENGINE"]
    if "postgresql" in engine:
        user = settings_dict.get("USER") or "postgres"
        password = settings_dict.get("PASSWORD") or ""
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"
    name = str(settings_dict.get("NAME") or "")
    if "sqlite" in engine and name and "memory" not in name and os.path.exists(name):
        return f"sqlite:///{name}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _SecondServer:
    """uvicorn in a subprocess; started again if it is found gone (a server process a test stopped, or
    one that died, must not turn every later cross-process test into a connection refused)."""

    def __init__(self, *, database_url: str, redis_url: str) -> None:
        self.env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, PYTHONPATH=str(REPO_ROOT))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def ensure_running(self) -> LiveServer:
        if self.process is not None and self.process.poll() is None:
            return LiveServer("127.0.0.1", self.port)
        if self.process is not None:
            print(f"second server had exited with {self.process.returncode}; starting it again", file=sys.stderr)
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "orchestrator.asgi:application", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            cwd=REPO_ROOT,
            env=self.env,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"second server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return LiveServer("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def _second_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[_SecondServer]:
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.skip("needs REDIS_URL: two processes share agent sessions only through Redis")
    with django_db_blocker.unblock():
        database_url = shared_database_url()
    if database_url is None:
        pytest.skip("needs a database another process can open (PostgreSQL, or SQLite in a file via DATABASE_URL)")
    server = _SecondServer(database_url=database_url, redis_url=redis_url)
    try:
        yield server
    finally:
        # Stopped before the test database is dropped: its connections would block the drop.
        server.stop()


@pytest.fixture
def second_asgi_server(_second_server: _SecondServer) -> LiveServer:
    """Another server process (uvicorn in a subprocess) sharing this test run's database and Redis.

    Kept for the whole session (starting Django in a subprocess costs seconds). Tests that use it also
    need committed data, so they are marked `django_db(transaction=True)`.
    """
    return _second_server.ensure_running()
