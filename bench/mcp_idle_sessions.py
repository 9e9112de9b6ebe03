"""Memory per idle SSE session: open N initialized SSE sessions (one agent each) against one server
process and report how much the server's resident memory grew per session.

    .venv/bin/python bench/mcp_idle_sessions.py [--sessions 1000] [--server uvicorn|daphne]

The clients are raw sockets (one GET /sse each, the handshake POSTed over a shared keep-alive
client), so this process stays small and the number measured is the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import bench_environment, prepare_database, server_process, setup_django  # noqa: E402

INITIALIZE = (
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    '"capabilities":{},"clientInfo":{"name":"idle","version":"1"}}}'
)
INITIALIZED = '{"jsonrpc":"2.0","method":"notifications/initialized"}'


def create_agents(count: int) -> list[str]:
    from agents.models import Organization
    from agents.services import AgentAddresses, agent_create

    org = Organization.objects.get(pk="default")
    tokens = []
    for index in range(count):
        agent_id = f"idle-{index:05d}"
        _, issued, _ = agent_create(
            organization=org, display_name=agent_id, agent_id=agent_id,
            addresses=AgentAddresses(phone=None, email=f"{agent_id}@agents.example.com"),
        )
        tokens.append(str(issued.token))
    return tokens


async def open_session(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /sse?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    while True:
        line = (await reader.readline()).decode()
        if not line:
            raise RuntimeError("stream closed before the endpoint event")
        if line.startswith("data: /messages"):
            return reader, writer, line[len("data: "):].strip()


async def post(port: int, path: str, body: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = body.encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
    )
    await writer.drain()
    status = await reader.readline()
    if b" 202 " not in status:
        raise RuntimeError(f"POST {path}: {status!r}")
    writer.close()


async def drain_forever(reader: asyncio.StreamReader) -> None:
    # Read what the server sends (the initialize result, pings) so no buffer grows on either side.
    while await reader.read(65536):
        pass


async def run(port: int, tokens: list[str], rss: callable) -> None:  # type: ignore[valid-type]
    baseline_sessions = 20
    held = []
    for token in tokens[:baseline_sessions]:
        held.append(await _open_initialized(port, token))
    await asyncio.sleep(2)
    before = rss()
    started = time.perf_counter()
    for token in tokens[baseline_sessions:]:
        held.append(await _open_initialized(port, token))
    opened = time.perf_counter() - started
    await asyncio.sleep(5)
    after = rss()
    count = len(tokens) - baseline_sessions
    print(f"{len(held)} idle SSE sessions open (opened {count} in {opened:.1f} s)")
    print(f"server RSS: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB; "
          f"{(after - before) / count / 1024:.1f} KiB per idle session")
    for _, writer, task in held:
        task.cancel()
        writer.close()


async def _open_initialized(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]]:
    reader, writer, endpoint = await open_session(port, token)
    await post(port, endpoint, INITIALIZE)
    await post(port, endpoint, INITIALIZED)
    return reader, writer, asyncio.create_task(drain_forever(reader))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="comms-bench-")
    env = bench_environment(f"{workdir}/bench.sqlite3")
    prepare_database(env)
    setup_django(env)
    started = time.perf_counter()
    tokens = create_agents(args.sessions + 20)
    print(f"created {len(tokens)} agents in {time.perf_counter() - started:.1f} s")
    with server_process(env, server=args.server) as server:
        print(f"server: {args.server}, pid {server.process.pid}")
        asyncio.run(run(server.port, tokens, server.rss_bytes))


if __name__ == "__main__":
    main()
