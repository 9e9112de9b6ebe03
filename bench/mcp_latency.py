"""MCP latency and throughput: connect + initialize, one client's comms_ping, and comms_ping calls per
second of server CPU time over SSE (issue 3's performance targets).

    .venv/bin/python bench/mcp_latency.py [--server uvicorn|daphne] [--calls 2000] [--clients 8]

With `--reference-url URL --reference-pid PID` (bench/reference.py): comms_ping from `--clients` SSE
sessions at once, per-call p50/p90/p99 and calls per server CPU-second, alternating rounds on our server
and on the reference TypeScript server in the same minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import (  # noqa: E402
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


async def ping_at_clients(
    sse_url: str, headers: dict[str, str] | None, cpu_seconds: Callable[[], float], clients: int, calls_per_client: int
) -> tuple[list[float], float]:
    """Per-call comms_ping latencies with `clients` SSE sessions calling at once, and calls per server CPU-second."""
    from tests.orchestrator.mcp_clients import sse_session

    ready, go = asyncio.Event(), asyncio.Event()
    opened = 0
    samples: list[float] = []

    async def client() -> None:
        nonlocal opened
        async with sse_session(sse_url, headers=headers) as session:
            for _ in range(10):
                await session.call_tool("comms_ping", {})
            opened += 1
            if opened == clients:
                ready.set()
            await go.wait()
            for _ in range(calls_per_client):
                started = time.perf_counter()
                result = await session.call_tool("comms_ping", {})
                samples.append(time.perf_counter() - started)
                assert not result.is_error

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await ready.wait()
    cpu_before = cpu_seconds()
    go.set()
    await asyncio.gather(*tasks)
    return samples, len(samples) / (cpu_seconds() - cpu_before)


def side_by_side(args: argparse.Namespace, server: ServerProcess, token: str) -> None:
    from bench.reference import ReferenceServer
    from tests.orchestrator.mcp_clients import bearer

    reference = ReferenceServer(args.reference_url, args.reference_pid)
    targets = [
        ("ours", f"{server.url}/sse?token={token}", None, server.cpu_seconds),
        ("reference", f"{reference.url}/sse", bearer(args.reference_token) if args.reference_token else None,
         reference.cpu_seconds),
    ]
    print(f"{time.strftime('%H:%M:%S')} UTC, load {os.getloadavg()[0]:.1f}; our pid {server.process.pid}, "
          f"reference pid {reference.pid}; {args.clients} SSE clients, {args.calls} calls per run")
    for round_number in range(1, args.rounds + 1):
        for name, sse_url, headers, cpu_seconds in targets:
            samples, per_cpu = asyncio.run(
                ping_at_clients(sse_url, headers, cpu_seconds, args.clients, args.calls // args.clients)
            )
            print(f"round {round_number}, {name:>9}: comms_ping {summary_ms(samples)}; "
                  f"{per_cpu:.0f} calls per server CPU-second", flush=True)


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
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="comms-bench-")
    env = bench_environment(f"{workdir}/bench.sqlite3")
    prepare_database(env)
    setup_django(env)
    token = create_agent()

    with server_process(env, server=args.server, profile_to=args.profile) as server:
        if args.reference_url:
            side_by_side(args, server, token)
            return

        async def run() -> None:
            print(f"server: {args.server}, pid {server.process.pid}")
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

        asyncio.run(run())


if __name__ == "__main__":
    main()
