"""MCP latency and throughput: connect + initialize, one client's comms_ping, comms_ping calls per
second of server CPU time over SSE (issue 3's performance targets), and per-call latency with many
concurrent clients over SSE and Streamable HTTP (issue 14 item 12).

    .venv/bin/python bench/mcp_latency.py [--server uvicorn|daphne] [--calls 2000] [--clients 8]
    .venv/bin/python bench/mcp_latency.py --only-concurrent --clients 20 --calls 4000 [--rate 300]

With `--reference-url URL --reference-pid PID` (bench/reference.py): the concurrent runs (comms_ping from
`--clients` sessions at once, per-call p50/p90/p99/max and calls per server CPU-second), alternating
rounds on our server and on the reference TypeScript server in the same minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import (  # noqa: E402
    CLOCK_TICKS,
    ServerProcess,
    bench_environment,
    create_agent,
    prepare_database,
    server_process,
    setup_django,
    summary_ms,
)


async def connect_latency(url: str, token: str, transport: str, rounds: int) -> list[float]:
    from tests.orchestrator.mcp_clients import bearer, sse_session, streamable_session

    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        if transport == "sse":
            async with sse_session(f"{url}/sse?token={token}"):
                samples.append(time.perf_counter() - started)
        else:
            async with streamable_session(f"{url}/mcp", headers=bearer(token)):
                samples.append(time.perf_counter() - started)
    return samples


async def raw_connect_latency(port: int, token: str, rounds: int) -> list[float]:
    """GET /sse to the initialize result and `initialized` posted, with raw sockets: the server's share."""
    from bench.mcp_idle_sessions import INITIALIZE, INITIALIZED, open_session, post

    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        reader, writer, endpoint = await open_session(port, token)
        await post(port, endpoint, INITIALIZE)
        while not (await reader.readline()).startswith(b"data: {"):
            pass
        await post(port, endpoint, INITIALIZED)
        samples.append(time.perf_counter() - started)
        writer.close()
    return samples


async def raw_ping_latency(port: int, token: str, calls: int) -> list[float]:
    """comms_ping over SSE with raw sockets (keep-alive POSTs): the server's share of a call's latency."""
    from bench.mcp_idle_sessions import INITIALIZE, INITIALIZED, open_session, post

    reader, writer, endpoint = await open_session(port, token)
    await post(port, endpoint, INITIALIZE)
    while not (await reader.readline()).startswith(b"data: {"):
        pass
    await post(port, endpoint, INITIALIZED)
    post_reader, post_writer = await asyncio.open_connection("127.0.0.1", port)
    samples = []
    for index in range(calls + 20):
        call = {"jsonrpc": "2.0", "id": index + 2, "method": "tools/call", "params": {"name": "comms_ping", "arguments": {}}}
        body = json.dumps(call).encode()
        started = time.perf_counter()
        post_writer.write(
            f"POST {endpoint} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        length = 0
        while (line := await post_reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await post_reader.readexactly(length)
        while not (await reader.readline()).startswith(b"data: {"):
            pass
        if index >= 20:
            samples.append(time.perf_counter() - started)
    post_writer.close()
    writer.close()
    return samples


async def ping_latency(url: str, token: str, transport: str, calls: int) -> list[float]:
    from tests.orchestrator.mcp_clients import bearer, sse_session, streamable_session

    opener = (
        sse_session(f"{url}/sse?token={token}")
        if transport == "sse"
        else streamable_session(f"{url}/mcp", headers=bearer(token))
    )
    samples = []
    async with opener as session:
        for _ in range(20):  # warm-up
            await session.call_tool("comms_ping", {})
        for _ in range(calls):
            started = time.perf_counter()
            result = await session.call_tool("comms_ping", {})
            samples.append(time.perf_counter() - started)
            assert not result.is_error
    return samples


async def throughput(server, token: str, clients: int, calls_per_client: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(calls per wall second, calls per server CPU second, calls) with `clients` SSE sessions."""
    from tests.orchestrator.mcp_clients import sse_session

    ready = asyncio.Event()
    go = asyncio.Event()
    opened = 0

    async def client() -> None:
        nonlocal opened
        async with sse_session(f"{server.url}/sse?token={token}") as session:
            for _ in range(10):
                await session.call_tool("comms_ping", {})
            opened += 1
            if opened == clients:
                ready.set()
            await go.wait()
            for _ in range(calls_per_client):
                await session.call_tool("comms_ping", {})

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await ready.wait()
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    total = clients * calls_per_client
    return total / wall, total / cpu, total


async def run_clients(
    url: str, port: int, token: str | None, transport: str, indices: range, clients: int, calls_per_client: int,
    rate: float | None, raw: bool, ready: Callable[[], Awaitable[None]], query_token: bool = True,
) -> list[list[float]]:
    """Sessions `indices` of `clients`, each calling comms_ping in a loop once `ready` returns (closed loop),
    or each at rate/clients calls a second on a fixed schedule (paced: a late call is measured from when
    it was due, so queueing shows). Returns each session's latencies."""
    from tests.orchestrator.mcp_clients import bearer, sse_session, streamable_session

    opened = 0
    all_open = asyncio.Event()
    go = asyncio.Event()
    per_client: list[list[float]] = [[] for _ in indices]
    interval = clients / rate if rate else 0.0

    @contextlib.asynccontextmanager
    async def raw_session() -> Any:
        session = RawSession(port, token or "", transport)
        await session.open()
        try:
            yield session
        finally:
            session.close()

    async def client(slot: int, index: int) -> None:
        nonlocal opened
        headers = bearer(token) if token else None
        opener: Any = raw_session() if raw else (
            (sse_session(f"{url}/sse?token={token}") if query_token else sse_session(f"{url}/sse", headers=headers))
            if transport == "sse"
            else streamable_session(f"{url}/mcp", headers=headers)
        )
        async with opener as session:
            call: Callable[[], Awaitable[Any]] = session.ping if raw else partial(session.call_tool, "comms_ping", {})
            for _ in range(10):
                await call()
            opened += 1
            if opened == len(indices):
                all_open.set()
            await go.wait()
            # Paced clients start spread over one interval, as independent agents would.
            due = time.perf_counter() + interval * index / clients
            for _ in range(calls_per_client):
                if interval:
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    started = due
                    due += interval
                else:
                    started = time.perf_counter()
                result = await call()
                per_client[slot].append(time.perf_counter() - started)
                assert result is None or not result.is_error

    tasks = [asyncio.create_task(client(slot, index)) for slot, index in enumerate(indices)]
    await all_open.wait()
    await ready()
    go.set()
    await asyncio.gather(*tasks)
    return per_client


def client_process(
    url: str, port: int, token: str | None, query_token: bool, transport: str, indices: range, clients: int,
    calls_per_client: int, rate: float | None, raw: bool, barrier: Any, results: Any,
) -> None:
    """run_clients in a process of its own (--client-processes): agents are separate programs, and one
    process of 20 SDK sessions spends about twice the server's CPU per call on its own."""
    gc.collect()
    gc.freeze()
    cpu_before = 0.0

    async def ready() -> None:
        nonlocal cpu_before
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)  # all sessions open
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)  # the server's CPU is read: go
        cpu_before = time.process_time()

    per_client = asyncio.run(
        run_clients(url, port, token, transport, indices, clients, calls_per_client, rate, raw, ready, query_token)
    )
    results.put((per_client, time.process_time() - cpu_before))


async def concurrent_latency(  # type: ignore[no-untyped-def]
    server, token: str | None, transport: str, clients: int, calls_per_client: int, rate: float | None,
    raw: bool = False, processes: int = 1, query_token: bool = True,
) -> tuple[list[float], float, float, float, str]:
    """run_clients with `clients` sessions in `processes` client processes against `server` (anything with
    url, port and cpu_seconds()). Returns (samples, wall seconds, server CPU s, client CPU s, the spread of
    the clients' means)."""
    cpu_before = client_cpu_before = started = 0.0

    async def start() -> None:
        nonlocal cpu_before, client_cpu_before, started
        cpu_before = server.cpu_seconds()
        client_cpu_before = time.process_time()
        started = time.perf_counter()

    if processes == 1:
        per_client = await run_clients(
            server.url, server.port, token, transport, range(clients), clients, calls_per_client, rate, raw, start,
            query_token,
        )
        client_cpu = time.process_time() - client_cpu_before
    else:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes + 1)
        results = context.Queue()
        children = [
            context.Process(target=client_process, args=(
                server.url, server.port, token, query_token, transport, range(index, clients, processes), clients,
                calls_per_client, rate, raw, barrier, results,
            ))
            for index in range(processes)
        ]
        for child in children:
            child.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, barrier.wait)
        await start()
        await loop.run_in_executor(None, barrier.wait)
        outcomes = [await loop.run_in_executor(None, results.get) for _ in children]
        for child in children:
            child.join()
        per_client = [own for sessions, _ in outcomes for own in sessions]
        client_cpu = sum(cpu for _, cpu in outcomes)
    wall = time.perf_counter() - started
    means = sorted(statistics.fmean(own) for own in per_client)
    fairness = f"client means {means[0] * 1000:.1f}–{means[-1] * 1000:.1f} ms"
    samples = [sample for own in per_client for sample in own]
    return samples, wall, server.cpu_seconds() - cpu_before, client_cpu, fairness


class RawSession:
    """One MCP session on plain sockets (keep-alive), what a cheap client costs: the server's share."""

    def __init__(self, port: int, token: str, transport: str) -> None:
        self.port, self.token, self.transport = port, token, transport
        self.next_id = 2

    async def open(self) -> None:
        from bench.mcp_idle_sessions import INITIALIZE, INITIALIZED, open_session, post

        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        if self.transport == "sse":
            self.sse_reader, self.sse_writer, self.path = await open_session(self.port, self.token)
            await post(self.port, self.path, INITIALIZE)
            while not (await self.sse_reader.readline()).startswith(b"data: {"):
                pass
            await post(self.port, self.path, INITIALIZED)
            self.headers = ""
        else:
            self.path = "/mcp"
            self.headers = f"Authorization: Bearer {self.token}\r\nAccept: application/json, text/event-stream\r\n"
            headers, _ = await self._exchange(INITIALIZE)
            session = next(line for line in headers if line.lower().startswith("mcp-session-id:"))
            self.headers += session + "\r\nMcp-Protocol-Version: 2025-06-18\r\n"
            await self._exchange(INITIALIZED)

    async def _exchange(self, body: str) -> tuple[list[str], bytes]:
        payload = body.encode()
        self.writer.write(
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"{self.headers}Content-Length: {len(payload)}\r\n\r\n".encode() + payload
        )
        headers = []
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            text = line.decode("latin-1").rstrip("\r\n")
            headers.append(text)
            if text.lower().startswith("content-length:"):
                length = int(text.split(":")[1])
        return headers, await self.reader.readexactly(length)

    async def ping(self) -> None:
        call = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": {"name": "comms_ping", "arguments": {}}}
        self.next_id += 1
        _, answer = await self._exchange(json.dumps(call))
        if self.transport == "sse":
            while not (line := await self.sse_reader.readline()).startswith(b"data: {"):
                pass
            answer = line[len(b"data: "):]
        if b'"isError":true' in answer or b'"result"' not in answer:
            raise RuntimeError(f"comms_ping failed: {answer[:200]!r}")

    def close(self) -> None:
        self.writer.close()
        if self.transport == "sse":
            self.sse_writer.close()


def max_ms(samples: list[float]) -> str:
    return f"max {max(samples) * 1000:.2f} ms"


def host_steal_ticks() -> int:
    """CPU time the hypervisor gave to others while this VM wanted it (/proc/stat "steal", in clock ticks)."""
    return int(Path("/proc/stat").read_text().split()[8])


async def concurrent_rounds(args: argparse.Namespace, targets: list[tuple[str, Any, str | None, bool]]) -> None:
    """The concurrent runs (closed loop, then each --rate), each on every target in turn:
    (name, server, token, whether /sse takes the token as ?token=)."""
    where = f" in {args.client_processes} processes" if args.client_processes > 1 else ""
    for rate in [None, *args.rate]:
        for kind, transport in itertools.product(args.concurrent_clients.split(","), args.transports.split(",")):
            for name, server, token, query_token in targets:
                served = getattr(server, "transports", None)  # the reference's: SSE only (bench/reference.py)
                if served is not None and transport not in served:
                    print(f"{name}comms_ping over {transport}: not served, skipped", flush=True)
                    continue
                steal_before = host_steal_ticks()
                samples, wall, cpu, client_cpu, fairness = await concurrent_latency(
                    server, token, transport, args.clients, args.calls // args.clients, rate, raw=kind == "raw",
                    processes=args.client_processes, query_token=query_token,
                )
                # The VM's vCPUs are paused in 100 ms slices once it uses more CPU than the host grants it:
                # every call in flight then waits it out. Steal says whether that happened during the run.
                steal = (host_steal_ticks() - steal_before) / CLOCK_TICKS / (wall * (os.cpu_count() or 1))
                mode = f"paced at {rate:g}/s" if rate else "closed loop"
                print(
                    f"{name}comms_ping, {args.clients} clients{where}, {transport}, {kind} client, {mode}: "
                    f"{summary_ms(samples)}, {max_ms(samples)}, {fairness}; {len(samples) / wall:.0f} calls/s wall, "
                    f"{len(samples) / cpu:.0f} per server CPU-second, client {client_cpu / len(samples) * 1e6:.0f} µs "
                    f"CPU/call (load {os.getloadavg()[0]:.1f}, host steal {steal:.0%})",
                    flush=True,
                )


def side_by_side(args: argparse.Namespace, server: ServerProcess, token: str) -> None:
    from bench.reference import ReferenceServer

    reference = ReferenceServer(args.reference_url, args.reference_pid)
    targets = [("ours:      ", server, token, True), ("reference: ", reference, args.reference_token, False)]
    print(f"{time.strftime('%H:%M:%S')} UTC, load {os.getloadavg()[0]:.1f}; our pid {server.process.pid}, "
          f"reference pid {reference.pid}; {args.clients} clients, {args.calls} calls per run")
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}")
        asyncio.run(concurrent_rounds(args, targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--calls", type=int, default=2000, help="comms_ping calls for the throughput run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent SSE sessions for the throughput run")
    parser.add_argument("--connects", type=int, default=50)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--profile", metavar="FILE", help="sample the server with py-spy (collapsed stacks) into FILE")
    parser.add_argument("--only-throughput", action="store_true")
    parser.add_argument("--reference-url", help="also measure the reference server at this URL (bench/reference.py)")
    parser.add_argument("--reference-pid", type=int, help="pid of the reference's node process (its CPU time is read)")
    parser.add_argument("--reference-token", help="Bearer token for the reference (none needed in its DEMO_MODE)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds with --reference-url (default 2)")
    parser.add_argument("--only-concurrent", action="store_true",
                        help="only the per-call latency with --clients concurrent SDK clients (SSE, Streamable HTTP)")
    parser.add_argument("--rate", type=float, action="append", default=[],
                        help="also a paced run: this many calls a second across all clients (repeatable)")
    parser.add_argument("--transports", default="sse,streamable-http")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="spread the concurrent clients over this many processes")
    parser.add_argument("--concurrent-clients", default="sdk,raw",
                        help="which clients for the concurrent runs: the SDK's, raw sockets, or both")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="comms-bench-")
    env = bench_environment(f"{workdir}/bench.sqlite3")
    prepare_database(env)
    setup_django(env)
    token = create_agent()
    # This process holds Django and the app too; its own full collections (0.1–0.3 s each over that heap,
    # every client stopped) would read as server latency.
    gc.collect()
    gc.freeze()

    with server_process(env, server=args.server, profile_to=args.profile) as server:
        if args.reference_url:
            side_by_side(args, server, token)
            return

        async def run() -> None:
            print(f"server: {args.server}, pid {server.process.pid}")
            if args.only_concurrent:
                await concurrent_runs()
                return
            if not args.only_throughput:
                await raw_connect_latency(server.port, token, 3)
                samples = await raw_connect_latency(server.port, token, args.connects)
                print(f"connect + initialize over SSE, raw socket client: {summary_ms(samples)}")
                for transport in ("sse", "streamable-http"):
                    await connect_latency(server.url, token, transport, 3)  # warm-up
                    samples = await connect_latency(server.url, token, transport, args.connects)
                    print(f"connect + initialize over {transport}, SDK client: {summary_ms(samples)}")
                samples = await raw_ping_latency(server.port, token, args.pings)
                print(f"comms_ping, one client, SSE, raw socket client: {summary_ms(samples)}")
                for transport in ("sse", "streamable-http"):
                    samples = await ping_latency(server.url, token, transport, args.pings)
                    print(f"comms_ping, one client, {transport}, SDK client: {summary_ms(samples)}")
            per_wall, per_cpu, total = await throughput(server, token, args.clients, args.calls // args.clients)
            print(
                f"comms_ping over SSE, {args.clients} clients, {total} calls: {per_wall:.0f} calls/s wall, "
                f"{per_cpu:.0f} calls per server CPU-second ({1e6 / per_cpu:.0f} µs of server CPU per call)"
            )
            if not args.only_throughput:
                await concurrent_runs()

        async def concurrent_runs() -> None:
            await concurrent_rounds(args, [("", server, token, True)])

        asyncio.run(run())


if __name__ == "__main__":
    main()
