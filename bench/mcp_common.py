"""Shared set-up for the MCP benchmarks: a throw-away database, a server process, an agent token.

The server under test runs in its own process so its CPU time can be read from /proc and
compared with the work done; the benchmark clients run in this process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def bench_environment(database_path: str, *, redis_url: str | None = None) -> dict[str, str]:
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{database_path}",
        ENV_FILE=os.path.join(tempfile.gettempdir(), "comms-bench-no-such.env"),
        GENERATE_SECRETS="false",
        SECRET_KEY="bench-secret-key",
        ORCHESTRATOR_TOKEN="orch_bench_token_0123456789abcdefghij",
        DEMO_MODE="true",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        PUBLIC_BASE_URL="http://localhost:3100",
        DJANGO_SETTINGS_MODULE="orchestrator.settings",
        PYTHONPATH=str(REPO_ROOT),
        # A high limit: the benchmark opens many sessions from one address on purpose.
        AUTH_FAILURE_LIMIT="1000000",
    )
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def prepare_database(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO_ROOT, env=env, check=True)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def create_agent(agent_id: str = "bench-agent") -> str:
    from agents.models import Agent, Organization
    from agents.services import AgentAddresses, agent_create

    Agent.objects.filter(pk=agent_id).delete()
    org = Organization.objects.get(pk="default")
    _, issued, _ = agent_create(
        organization=org,
        display_name="Bench",
        agent_id=agent_id,
        addresses=AgentAddresses(phone=None, email=f"{agent_id}@agents.example.com"),
    )
    return str(issued.token)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def thread_times(self) -> dict[str, float]:
        """Server CPU so far split by thread: the event loop's (the main thread) and every other thread's, user
        and system, and the context switches of all threads (voluntary: a thread went to sleep)."""
        totals = dict.fromkeys(("loop user", "loop sys", "others user", "others sys", "switches", "forced"), 0.0)
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                side = "loop" if task.name == str(self.process.pid) else "others"
                totals[f"{side} user"] += int(fields[11]) / CLOCK_TICKS
                totals[f"{side} sys"] += int(fields[12]) / CLOCK_TICKS
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        totals["switches"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        totals["forced"] += int(line.split()[1])
        return totals

    def rss_bytes(self) -> int:
        fields = Path(f"/proc/{self.process.pid}/statm").read_text().split()
        return int(fields[1]) * PAGE_SIZE


@contextlib.contextmanager
def server_process(
    env: dict[str, str], *, server: str = "uvicorn", profile_to: str | None = None, callgrind_to: str | None = None
) -> Iterator[ServerProcess]:
    """Start the server; with `profile_to`, py-spy samples it into that file (collapsed stacks); with
    `callgrind_to`, it runs under valgrind's callgrind with counting off (toggle it with callgrind_control)."""
    port = free_port()
    if server == "daphne":
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "orchestrator.asgi:application"]
    else:
        # What `make run` serves, named explicitly: without httptools and uvloop installed uvicorn would
        # quietly fall back to h11 and asyncio, about three times the HTTP layer's CPU per request.
        command = [sys.executable, "-m", "uvicorn", "orchestrator.asgi:application", "--host", "127.0.0.1",
                   "--port", str(port), "--http", "httptools", "--loop", "uvloop",
                   "--log-level", "warning", "--no-access-log"]
    if os.environ.get("BENCH_SERVER_CPUS"):  # e.g. "0": the server's threads on one core (taskset execs, same pid)
        command = ["taskset", "-c", os.environ["BENCH_SERVER_CPUS"], *command]
    if callgrind_to:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={callgrind_to}",
                   *command]
    profiler = None
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL if callgrind_to else None)
    try:
        deadline = time.monotonic() + (900 if callgrind_to else 60)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        if profile_to:
            py_spy = str(Path(sys.executable).parent / "py-spy")
            profiler = subprocess.Popen(
                [py_spy, "record", "--pid", str(process.pid), "--format", "raw", "--rate", "250", "-o", profile_to, *os.environ.get("BENCH_PY_SPY_ARGS", "").split()],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        yield ServerProcess(process, port)
    finally:
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(timeout=30)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary_ms(samples: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples) * 1000:.2f} ms, p90 {percentile(samples, 0.9) * 1000:.2f} ms, "
        f"p99 {percentile(samples, 0.99) * 1000:.2f} ms (n={len(samples)})"
    )
