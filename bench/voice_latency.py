"""Live voice: from a caller's prompt frame to the first text frame, with every agent answering at once
by MCP sampling, over N concurrent calls; then the server's memory per open call (issue 12).

    .venv/bin/python bench/voice_latency.py [--calls 50] [--turns 30] [--interval 1.0] [--memory-calls 300]

The server is `make run`'s (uvicorn, httptools, uvloop, SQLite, DEMO_MODE) in its own process. Each
call has its own agent, connected over SSE by a raw-socket MCP client that declared `sampling` and
answers every `sampling/createMessage` at once; Twilio's side is a `websockets` client per call that
sends `setup`, then a `prompt` every --interval seconds (random phase), and times each prompt to the
first `text` frame. That is the server's overhead plus the agent's (near zero) answer and two loopback
hops. Memory: RSS of the server before and after opening --memory-calls more sockets (set up, idle).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import (  # noqa: E402
    bench_environment,
    percentile,
    prepare_database,
    server_process,
    setup_django,
)
from bench.mcp_idle_sessions import INITIALIZED, open_session, post  # noqa: E402

INITIALIZE_SAMPLING = (
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    '"capabilities":{"sampling":{}},"clientInfo":{"name":"voice-bench","version":"1"}}}'
)


Made = tuple[str, str, str, str]


def create_calls(count: int, prefix: str) -> list[Made]:
    """(agent token, agent id, session id, call sid) for `count` agents with one inbound call each."""
    from agents.models import Organization
    from agents.services import AgentAddresses, agent_create
    from voice.models import Call

    org = Organization.objects.get(pk="default")
    made = []
    for index in range(count):
        agent_id = f"{prefix}-{index:04d}"
        agent, issued, _ = agent_create(
            organization=org, display_name=agent_id, agent_id=agent_id,
            addresses=AgentAddresses(phone=None, email=f"{agent_id}@agents.example.com"),
        )
        call = Call.objects.create(
            agent=agent, organization=org, direction="inbound", status="ringing", call_sid=f"CA{prefix}{index:030d}"[:34],
            from_address="+12125550123", to_address="+14155550100",
        )
        made.append((str(issued.token), agent_id, call.session_id, str(call.call_sid)))
    return made


class SamplingAgent:
    """A raw-socket MCP client over SSE that answers each sampling request at once, on a keep-alive POST."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.reader, self.writer, self.endpoint = await open_session(self.port, self.token)
        await post(self.port, self.endpoint, INITIALIZE_SAMPLING)
        while not (await self.reader.readline()).startswith(b"data: {"):
            pass
        await post(self.port, self.endpoint, INITIALIZED)
        self.post_reader, self.post_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.lock = asyncio.Lock()
        self.tasks.append(asyncio.create_task(self._serve()))

    async def _serve(self) -> None:
        while line := await self.reader.readline():
            if not line.startswith(b"data: {"):
                continue
            message = json.loads(line[len(b"data: "):])
            if message.get("method") == "sampling/createMessage":
                said = message["params"]["messages"][-1]["content"]["text"]
                answer = {"role": "assistant", "content": {"type": "text", "text": f"You said: {said}"}, "model": "bench"}
                await self._post({"jsonrpc": "2.0", "id": message["id"], "result": answer})

    async def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        async with self.lock:
            self.post_writer.write(
                f"POST {self.endpoint} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            length = 0
            while (header := await self.post_reader.readline()) not in (b"\r\n", b""):
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
            await self.post_reader.readexactly(length)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.writer.close()
        self.post_writer.close()


def socket_url(port: int, agent_id: str, session_id: str) -> str:
    from voice import socket_auth

    return f"ws://127.0.0.1:{port}/webhooks/{agent_id}/voice-ws?{socket_auth.socket_query(agent_id=agent_id, session_id=session_id)}"


async def open_call(port: int, agent_id: str, session_id: str, call_sid: str) -> Any:
    from websockets.asyncio.client import connect

    socket = await connect(socket_url(port, agent_id, session_id), proxy=None, compression=None, open_timeout=30)
    await socket.send(json.dumps({"type": "setup", "callSid": call_sid, "from": "+12125550123", "to": "+14155550100",
                                  "customParameters": {"sessionId": session_id}}))
    return socket


async def one_turn(socket: Any, text: str) -> float:
    started = time.perf_counter()
    await socket.send(json.dumps({"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True}))
    frame = json.loads(await socket.recv())
    elapsed = time.perf_counter() - started
    assert frame["type"] == "text" and frame["token"] == f"You said: {text}", frame
    return elapsed


async def caller(socket: Any, turns: int, interval: float, samples: list[float]) -> None:
    await asyncio.sleep(random.uniform(0, interval))
    for turn in range(turns):
        started = time.perf_counter()
        samples.append(await one_turn(socket, f"turn {turn}"))
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))


async def latency(server: Any, calls: list[Made], turns: int, interval: float) -> None:
    agents = [SamplingAgent(server.port, token) for token, _, _, _ in calls]
    await asyncio.gather(*(agent.start() for agent in agents))
    sockets = await asyncio.gather(*(open_call(server.port, a, s, sid) for _, a, s, sid in calls))
    for socket in sockets:  # warm-up: each call's first turn (registration, first sampling)
        await one_turn(socket, "warm-up")
    samples: list[float] = []
    cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(caller(socket, turns, interval, samples) for socket in sockets))
    cpu, wall = server.cpu_seconds() - cpu_before, time.perf_counter() - wall_before
    print(
        f"prompt → first text frame, {len(calls)} concurrent calls, a turn every {interval:g} s each: "
        f"p50 {statistics.median(samples) * 1000:.2f} ms, p90 {percentile(samples, 0.9) * 1000:.2f} ms, "
        f"p99 {percentile(samples, 0.99) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms (n={len(samples)}); "
        f"{len(samples) / wall:.0f} turns/s, server CPU {cpu / len(samples) * 1e6:.0f} µs per turn"
    )
    for socket in sockets:
        await socket.close()
    for agent in agents:
        agent.close()


def bound(session_ids: list[str]) -> int:
    from voice.models import Call

    return Call.objects.filter(session_id__in=session_ids, status="in-progress").count()


async def memory(server: Any, calls: list[Made]) -> None:
    # Warm the server's code paths first, so the figure is the calls' own memory, not first-use imports.
    warm = await asyncio.gather(*(open_call(server.port, a, s, sid) for _, a, s, sid in calls[:20]))
    for socket in warm:
        await socket.close()
    rest = calls[20:]
    await asyncio.sleep(1)
    before = server.rss_bytes()
    sockets = []
    for start in range(0, len(rest), 50):
        sockets += await asyncio.gather(*(open_call(server.port, a, s, sid) for _, a, s, sid in rest[start:start + 50]))
    # Every call bound: its setup was handled (the row is in progress).
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(bound, [s for _, _, s, _ in rest]) < len(rest):
        if time.monotonic() > deadline:
            raise RuntimeError("calls were not bound in time")
        await asyncio.sleep(0.2)
    after = server.rss_bytes()
    print(
        f"memory: {len(rest)} open calls raised the server's RSS by {(after - before) / 1024:.0f} KB: "
        f"{(after - before) / len(rest) / 1024:.1f} KB per live call"
    )
    for socket in sockets:
        await socket.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50, help="concurrent calls for the latency run")
    parser.add_argument("--turns", type=int, default=30, help="timed turns per call")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between one call's prompts")
    parser.add_argument("--memory-calls", type=int, default=300, help="open calls for the memory figure (0: skip)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="comms-bench-")
    env = bench_environment(f"{workdir}/bench.sqlite3")
    prepare_database(env)
    setup_django(env)
    calls = create_calls(args.calls, "vl")
    spare = create_calls(args.memory_calls + 20, "vm") if args.memory_calls else []

    with server_process(env) as server:
        async def run() -> None:
            print(f"server: uvicorn, pid {server.process.pid}")
            await latency(server, calls, args.turns, args.interval)
            if spare:
                await memory(server, spare)

        asyncio.run(run())


if __name__ == "__main__":
    main()
