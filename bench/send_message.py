"""send-message in demo mode through REST and through MCP (Streamable HTTP), at 1 and 20 concurrent clients.

Reports sends per second of *server* CPU time (utime + stime of the server process from /proc), p50/p99
latency, and the send rate in the first 5 s against the last 5 s of each run: the limit checks touch a
fixed set of counter rows, so the rate must stay flat while the message and usage tables grow.

    .venv/bin/python bench/send_message.py [--seconds 60] [--server uvicorn|daphne] [--faces floor,rest,mcp]
                                           [--clients 1,20] [--database sqlite|postgres://…]

Every run starts a fresh server process on a fresh database (SQLite file, or the PostgreSQL URL given).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import (  # noqa: E402
    ServerProcess,
    bench_environment,
    percentile,
    prepare_database,
    server_process,
)

ORCHESTRATOR_TOKEN = "orch_bench_token_0123456789abcdefghij"
TO = "+14155550123"
BODY = "Your table for 2 is confirmed for 8 pm. Reply STOP to opt out."
WINDOW_SECONDS = 5.0


@dataclass
class RunResult:
    face: str
    clients: int
    seconds: float
    sends: int
    errors: int
    cpu_seconds: float
    latencies: list[float]
    completions: list[float]  # monotonic completion times
    # (monotonic time, server CPU seconds) every 0.25 s: CPU per send in a window, immune to other load.
    cpu_samples: list[tuple[float, float]] = field(default_factory=list)
    # ServerProcess.thread_times() over the measured window (--threads)
    threads: dict[str, float] = field(default_factory=dict)

    @property
    def per_cpu_second(self) -> float:
        return self.sends / self.cpu_seconds if self.cpu_seconds else 0.0

    def window_rate(self, start: float, end: float) -> float:
        return sum(1 for t in self.completions if start <= t < end) / (end - start)

    def window_cpu_ms_per_send(self, start: float, end: float) -> float:
        """Server CPU milliseconds per send between two instants (nearest samples)."""
        inside = [sample for sample in self.cpu_samples if start <= sample[0] <= end]
        if len(inside) < 2:
            return 0.0
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        sends = sum(1 for t in self.completions if t0 <= t < t1)
        return (c1 - c0) / sends * 1000 if sends else 0.0

    def thread_line(self) -> str:
        """Server CPU µs per send on the loop's thread and the others', user + system, and thread switches."""
        per_send = {key: value / self.sends if self.sends else 0.0 for key, value in self.threads.items()}
        return (f"|   {self.face} {self.clients}: µs per send, loop {per_send['loop user'] * 1e6:.0f} user + "
                f"{per_send['loop sys'] * 1e6:.0f} sys; other threads {per_send['others user'] * 1e6:.0f} user + "
                f"{per_send['others sys'] * 1e6:.0f} sys; thread switches per send {per_send['switches']:.1f} "
                f"(+{per_send['forced']:.2f} preempted) |")

    def line(self) -> str:
        first = self.completions[0] if self.completions else 0.0
        last = self.completions[-1] if self.completions else 0.0
        head = self.window_rate(first, first + WINDOW_SECONDS)
        tail = self.window_rate(last - WINDOW_SECONDS, last)
        cpu_head = self.window_cpu_ms_per_send(first, first + WINDOW_SECONDS)
        cpu_tail = self.window_cpu_ms_per_send(last - WINDOW_SECONDS, last)
        return (
            f"| {self.face} | {self.clients} | {self.sends} | {self.errors} | {self.sends / self.seconds:.0f} | "
            f"{self.cpu_seconds:.1f} | **{self.per_cpu_second:.0f}** | "
            f"{percentile(self.latencies, 0.5) * 1000:.1f} | {percentile(self.latencies, 0.99) * 1000:.1f} | "
            f"{head:.0f} | {tail:.0f} | {tail / head * 100 if head else 0:.0f}% | "
            f"{cpu_head:.1f} | {cpu_tail:.1f} |"
        )


async def provision(url: str) -> str:
    """A fresh agent with limits high enough that the run measures sending, not refusals."""
    import httpx

    headers = {"Authorization": f"Bearer {ORCHESTRATOR_TOKEN}"}
    async with httpx.AsyncClient(base_url=f"{url}/api/v1/", headers=headers, timeout=30) as client:
        created = await client.post("provision", json={"displayName": "Bench", "capabilities": ["sms"]})
        created.raise_for_status()
        body = created.json()
        limits = {
            "maxActionsPerMinute": 10**9, "maxActionsPerHour": 10**9, "maxActionsPerDay": 10**9,
            "maxSpendPerDay": 10**7, "maxSpendPerMonth": 10**7,
        }
        (await client.post("agent-limits", json={"agentId": body["agentId"], "limits": limits})).raise_for_status()
    return str(body["securityToken"])


async def rest_client(url: str, token: str, until: float, result: RunResult, *, floor: bool = False) -> None:
    """POST send-message in a loop; with `floor`, GET /api/v1/health with the same token instead: the
    cost of an authenticated request that does nothing, i.e. what the framework costs on this machine."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{url}/api/v1/", headers=headers, timeout=30) as client:
        while time.monotonic() < until:
            started = time.perf_counter()
            if floor:
                response = await client.get("health")
            else:
                response = await client.post("send-message", json={"to": TO, "body": BODY})
            _record(result, started, response.status_code == 200)


async def mcp_clients(url: str, token: str, clients: int, seconds: float, result: RunResult,
                      server: ServerProcess) -> tuple[float, dict[str, float]]:
    """Open every session first, then start the clock; returns the server CPU seconds (and its
    ServerProcess.thread_times()) at the start."""
    from tests.orchestrator.mcp_clients import bearer, streamable_session

    opened = 0
    all_open, go = asyncio.Event(), asyncio.Event()
    deadline = [0.0]

    async def client() -> None:
        nonlocal opened
        async with streamable_session(f"{url}/mcp", headers=bearer(token)) as session:
            for _ in range(5):  # warm-up, outside the measured window
                await session.call_tool("comms_send_message", {"to": TO, "body": BODY})
            opened += 1
            if opened == clients:
                all_open.set()
            await go.wait()
            while time.monotonic() < deadline[0]:
                started = time.perf_counter()
                outcome = await session.call_tool("comms_send_message", {"to": TO, "body": BODY})
                _record(result, started, not outcome.is_error)

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await all_open.wait()
    cpu_before, threads_before = server.cpu_seconds(), server.thread_times()
    deadline[0] = time.monotonic() + seconds
    go.set()
    await asyncio.gather(*tasks)
    return cpu_before, threads_before


def _record(result: RunResult, started: float, ok: bool) -> None:
    if ok:
        result.sends += 1
        result.latencies.append(time.perf_counter() - started)
        result.completions.append(time.monotonic())
    else:
        result.errors += 1


async def run(server: ServerProcess, face: str, clients: int, seconds: float) -> RunResult:
    token = await provision(server.url)
    result = RunResult(face, clients, seconds, 0, 0, 0.0, [], [])
    sampler = asyncio.create_task(sample_cpu(server, result))
    threads_before: dict[str, float] = {}
    if face in ("rest", "floor"):
        floor = face == "floor"
        # Warm up (imports, first queries, connections) outside the measured window.
        await rest_client(server.url, token, time.monotonic() + 2, RunResult(face, 1, 2, 0, 0, 0, [], []),
                          floor=floor)
        cpu_before = server.cpu_seconds()
        threads_before = server.thread_times()
        until = time.monotonic() + seconds
        await asyncio.gather(*(rest_client(server.url, token, until, result, floor=floor) for _ in range(clients)))
    else:
        cpu_before, threads_before = await mcp_clients(server.url, token, clients, seconds, result, server)
    result.cpu_seconds = server.cpu_seconds() - cpu_before
    result.threads = {key: value - threads_before[key] for key, value in server.thread_times().items()}
    sampler.cancel()
    return result


async def sample_cpu(server: ServerProcess, result: RunResult) -> None:
    while True:
        result.cpu_samples.append((time.monotonic(), server.cpu_seconds()))
        await asyncio.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--faces", default="rest,mcp", help="rest, mcp, and floor (authenticated GET /api/v1/health)")
    parser.add_argument("--clients", default="1,20")
    parser.add_argument("--database", default="sqlite", help="sqlite, or a postgres:// URL of an empty database")
    parser.add_argument("--threads", action="store_true", help="after each run, its server CPU per send on the "
                        "event loop's thread and on the others, and the server's thread switches per send")
    args = parser.parse_args()

    print(f"send-message, demo mode, {args.server}, {args.database.split('@')[-1]}, {args.seconds:.0f} s per run, "
          f"{os.cpu_count()} CPUs")
    print("| face | clients | sends | errors | sends/s wall | server CPU s | sends per server CPU-s | p50 ms | "
          "p99 ms | rate first 5 s | rate last 5 s | last/first | CPU ms/send first 5 s | CPU ms/send last 5 s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for face in args.faces.split(","):
        for clients in (int(c) for c in args.clients.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                env = bench_environment(os.path.join(tmp, "bench.sqlite3"))
                if args.database != "sqlite":
                    env["DATABASE_URL"] = args.database
                prepare_database(env)
                with server_process(env, server=args.server) as server:
                    result: Any = asyncio.run(run(server, face, clients, args.seconds))
                print(result.line(), flush=True)
                if args.threads:
                    print(result.thread_line(), flush=True)


if __name__ == "__main__":
    main()
