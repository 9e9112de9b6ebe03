"""Inbound webhook benchmark (issue 5).

1. Throughput: signed Twilio SMS webhooks (signature checked, deduped, stored, delivery scheduled) from
   20 concurrent senders; reports webhooks per second of *server* CPU time and the latency percentiles.
2. Delivery latency: webhook sent → `comms.inbound` notification received by the agent's MCP client
   (SSE), with one sender and with 20: in a closed loop, or with `--latency-rate R` paced at R webhooks
   a second between the senders (as a provider sends them).

The server is a separate process (uvicorn with httptools and uvloop, as `make run` starts it; `--server daphne` also works) on a
throw-away SQLite database, or the PostgreSQL database given with --database-url. Signatures are computed
before the clock starts: the client's cost is not the server's.

    .venv/bin/python bench/inbound_webhooks.py
    .venv/bin/python bench/inbound_webhooks.py --database-url postgres://postgres@127.0.0.1:5432/bench_inbound
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.mcp_common import (  # noqa: E402
    bench_environment,
    create_agent,
    percentile,
    prepare_database,
    server_process,
    setup_django,
    summary_ms,
)

TWILIO_TOKEN = "bench-twilio-auth-token-0123456789"
AGENT_ID = "bench-agent"
PATH = f"/webhooks/{AGENT_ID}/sms"


def signed_requests(count: int, public_base_url: str, tag: str) -> list[tuple[str, bytes, dict[str, str]]]:
    from channels_app.signatures import twilio_sign

    requests = []
    for n in range(count):
        sid = "SM" + secrets.token_hex(16)
        params = {
            "MessageSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": "+12125550123",
            "To": "+14155550100",
            "Body": f"{tag} message {n}: Tom & cat; 🙂",
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        signature = twilio_sign(url=public_base_url + PATH, params=params, auth_token=TWILIO_TOKEN)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        requests.append((sid, urlencode(params).encode(), headers))
    return requests



def throughput_result(latencies: list[float], *, cpu: float, wall: float) -> dict[str, float]:
    """One throughput run's figures, whichever client sent the webhooks."""
    return {
        "count": len(latencies),
        "cpu": cpu,
        "wall": wall,
        "per_cpu_second": len(latencies) / cpu if cpu else float("inf"),
        "per_wall_second": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
    }

async def throughput(server: Any, requests: list[tuple[str, bytes, dict[str, str]]], senders: int) -> dict[str, float]:
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def sender(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            _sid, body, headers = queue.get_nowait()
            started = time.perf_counter()
            response = await http.post(server.url + PATH, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(sender(http) for _ in range(senders)))
        cpu, wall = server.cpu_seconds() - cpu_before, time.perf_counter() - wall_before
    # Deliveries run after the 200; let them finish and count their CPU too.
    await asyncio.sleep(1.0)
    cpu = server.cpu_seconds() - cpu_before
    return throughput_result(latencies, cpu=cpu, wall=wall)


def raw_request(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )


async def raw_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes) -> None:
    """Send one webhook on a keep-alive connection and read its whole answer, which must be a 200."""
    writer.write(message)
    status = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    if b" 200 " not in status:
        raise RuntimeError(f"webhook answered {status!r}")


async def raw_throughput(server: Any, requests: list[tuple[str, bytes, dict[str, str]]], senders: int) -> dict[str, float]:
    """throughput() with raw keep-alive sockets instead of httpx: httpx costs the client about as much
    CPU per request as the server spends, on the same two cores, which shows in the tail latencies."""
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def sender() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        while not queue.empty():
            _sid, body, headers = queue.get_nowait()
            message = raw_request(server.port, body, headers)
            started = time.perf_counter()
            await raw_exchange(reader, writer, message)
            latencies.append(time.perf_counter() - started)
        writer.close()

    cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    wall = time.perf_counter() - wall_before
    await asyncio.sleep(1.0)
    cpu = server.cpu_seconds() - cpu_before
    return throughput_result(latencies, cpu=cpu, wall=wall)


class Pace:
    """Webhook number k is due at k ÷ rate seconds after start() (rate 0: no pacing, a closed loop)."""

    def __init__(self, rate: float) -> None:
        self.rate, self.started, self.taken = rate, 0.0, 0

    def start(self) -> None:
        self.started = time.perf_counter()

    async def wait_for_the_next(self) -> None:
        if self.rate:
            due, self.taken = self.started + self.taken / self.rate, self.taken + 1
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)


async def post_webhooks(
    port: int, requests: list[tuple[str, bytes, dict[str, str]]], senders: int, pace: Pace,
    sent_at: dict[str, float], answered_at: dict[str, float],
) -> None:
    """POST the webhooks from `senders` keep-alive connections (raw sockets: the sending client's own
    CPU stays out of the figures); one sender pauses 5 ms between webhooks, so each figure is one
    message's path alone."""
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def sender() -> None:
        post_reader, post_writer = await asyncio.open_connection("127.0.0.1", port)
        while not queue.empty():
            sid, body, headers = queue.get_nowait()
            await pace.wait_for_the_next()
            message = raw_request(port, body, headers)
            sent_at[sid] = time.perf_counter()
            await raw_exchange(post_reader, post_writer, message)
            answered_at[sid] = time.perf_counter()
            if senders == 1:
                await asyncio.sleep(0.005)
        post_writer.close()

    pace.start()
    await asyncio.gather(*(sender() for _ in range(senders)))


async def notification_latency(
    server: Any, token: str, requests: list[tuple[str, bytes, dict[str, str]]], senders: int, rate: float = 0.0
) -> tuple[list[float], list[float]]:
    """Per message: webhook sent → notification received by the MCP Python SDK's client (legacy SSE
    transport, logging callback), and webhook's 200 received → notification received (negative when
    the push overtook the HTTP answer)."""
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    sent_at: dict[str, float] = {}
    answered_at: dict[str, float] = {}
    arrived_at: dict[str, float] = {}
    latencies: list[float] = []
    all_arrived = asyncio.Event()

    async def on_log(params: Any) -> None:
        sid = (params.data or {}).get("externalId")
        if sid in sent_at:
            arrived_at[sid] = time.perf_counter()
            latencies.append(arrived_at[sid] - sent_at[sid])
            if len(latencies) == len(requests):
                all_arrived.set()

    async with sse_client(f"{server.url}/sse?token={token}", timeout=10) as (read, write):
        async with ClientSession(read, write, logging_callback=on_log) as session:
            await session.initialize()
            await asyncio.sleep(0.5)
            await post_webhooks(server.port, requests, senders, Pace(rate), sent_at, answered_at)
            await asyncio.wait_for(all_arrived.wait(), timeout=30)
    after_answer = [arrived_at[sid] - answered_at[sid] for sid in arrived_at]
    return latencies, after_answer


async def raw_notification_latency(
    server: Any, token: str, requests: list[tuple[str, bytes, dict[str, str]]], senders: int, rate: float = 0.0
) -> tuple[list[float], list[float], float]:
    """As notification_latency, with a raw socket reading the SSE stream, so that the figure is the
    server's: the SDK client's own parsing and validation of each notification, on the same two cores,
    is not in it.

    `rate` 0: each sender posts its next webhook as soon as the last one is answered (a closed loop:
    the server is saturated and the latency is senders ÷ throughput). `rate` > 0: webhook number k is
    due at k ÷ rate seconds, as a provider sends them when messages arrive; a sender still waiting for
    its last answer sends late, so at most `senders` are in flight."""
    from bench.mcp_idle_sessions import INITIALIZE, INITIALIZED, open_session, post

    reader, writer, endpoint = await open_session(server.port, token)
    await post(server.port, endpoint, INITIALIZE)
    while not (await reader.readline()).startswith(b"data: {"):
        pass
    await post(server.port, endpoint, INITIALIZED)
    await asyncio.sleep(0.5)

    sent_at: dict[str, float] = {}
    answered_at: dict[str, float] = {}
    arrived_at: dict[str, float] = {}
    all_arrived = asyncio.Event()

    async def listen() -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: {") and b"comms.inbound" in line:
                now = time.perf_counter()
                marker = line.index(b'"externalId":"') + len(b'"externalId":"')
                sid = line[marker : line.index(b'"', marker)].decode()
                if sid in arrived_at:
                    raise RuntimeError(f"{sid} was pushed twice")
                if sid in sent_at:
                    arrived_at[sid] = now
                    if len(arrived_at) == len(requests):
                        all_arrived.set()

    listener = asyncio.create_task(listen())
    pace = Pace(rate)
    await post_webhooks(server.port, requests, senders, pace, sent_at, answered_at)
    await asyncio.wait_for(all_arrived.wait(), timeout=30)
    listener.cancel()
    writer.close()
    latencies = [arrived_at[sid] - sent_at[sid] for sid in arrived_at]
    after_answer = [arrived_at[sid] - answered_at[sid] for sid in arrived_at]
    return latencies, after_answer, len(requests) / (max(answered_at.values()) - pace.started)


def pacing(senders: int, rate: float) -> str:
    if senders == 1:
        return "one at a time, 5 ms apart"
    return f"{rate:.0f} webhooks/s due" if rate else "closed loop"


def report_throughput(server: Any, load: list[tuple[str, bytes, dict[str, str]]], args: argparse.Namespace) -> None:
    measure = raw_throughput if args.client == "raw" else throughput
    result = asyncio.run(measure(server, load, args.senders))
    print(
        f"signed SMS webhooks, {args.senders} concurrent senders ({args.client} client), {args.server}, "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}: {result['count']} in {result['wall']:.2f} s wall, "
        f"{result['cpu']:.2f} s server CPU → {result['per_cpu_second']:.0f} per server CPU-second "
        f"({result['per_wall_second']:.0f}/s wall); latency p50 {result['p50'] * 1000:.2f} ms, "
        f"p99 {result['p99'] * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=4000, help="webhooks in the throughput run (default 4000)")
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--latency-count", type=int, default=500, help="webhooks per latency run (default 500)")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="uvicorn")
    parser.add_argument("--database-url", default="", help="default: a throw-away SQLite file")
    parser.add_argument("--redis-url", default="", help="run the server with REDIS_URL (several-process mode)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the notification latency runs")
    parser.add_argument("--skip-latency", action="store_true", help="only the throughput run")
    parser.add_argument("--client", choices=["httpx", "raw"], default="httpx", help="throughput run's client")
    parser.add_argument("--latency-clients", default="sdk,raw",
                        help="which latency runs: sdk (the MCP Python SDK), raw (raw sockets), or both (default)")
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="latency runs with several senders: webhooks per second due across them (default 0: closed loop)")
    parser.add_argument("--latency-senders", default="",
                        help="comma-separated sender counts of the latency runs (default: 1 and --senders)")
    parser.add_argument("--profile", default=None, help="sample the server with py-spy into this file (raw)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="comms-bench-inbound-")
    env = bench_environment(os.path.join(workdir, "bench.sqlite3"), redis_url=args.redis_url or None)
    env.update(DEMO_MODE="false", TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    prepare_database(env)
    setup_django(env)
    from django.conf import settings

    token = create_agent(AGENT_ID)
    from django.utils import timezone

    from channels_app.models import Message
    warmup = signed_requests(200, settings.PUBLIC_BASE_URL, "warm-up")
    load = signed_requests(args.count, settings.PUBLIC_BASE_URL, "load")
    one = signed_requests(args.latency_count, settings.PUBLIC_BASE_URL, "one")
    many = signed_requests(args.latency_count, settings.PUBLIC_BASE_URL, "many")
    raw_one = signed_requests(args.latency_count, settings.PUBLIC_BASE_URL, "raw-one")
    raw_many = signed_requests(args.latency_count, settings.PUBLIC_BASE_URL, "raw-many")

    with server_process(env, server=args.server, profile_to=args.profile) as server:
        asyncio.run(throughput(server, warmup, args.senders))
        if not args.skip_throughput:
            report_throughput(server, load, args)
        # The throughput run's messages wait (no session was connected): without this, the first
        # session would be sent all of them on connect while its own run measures, and a client that
        # closes while that backlog still streams in fails in the SDK's SSE reader.
        Message.objects.filter(agent_id=AGENT_ID, delivered_at__isnull=True).update(
            delivered_at=timezone.now(), delivered_via="fetch"
        )
        sender_counts = [int(n) for n in (args.latency_senders or f"1,{args.senders}").split(",")]

        def runs(client: str, batches: tuple[Any, Any]) -> list[tuple[str, Any, int]]:
            if args.skip_latency or client not in args.latency_clients:
                return []
            return [(f"{n} sender{'s' if n > 1 else ''}", batches[n > 1], n) for n in sender_counts]

        for label, batch, senders in runs("sdk", (one, many)):
            rate = args.latency_rate if senders > 1 else 0.0
            total, after_answer = asyncio.run(notification_latency(server, token, batch, senders, rate))
            pace = pacing(senders, rate)
            print(f"webhook sent → MCP notification, {label} ({pace}): {summary_ms(total)}")
            print(f"  of which after the webhook's 200 arrived: p50 {statistics.median(after_answer) * 1000:.2f} ms")
        for label, batch, senders in runs("raw", (raw_one, raw_many)):
            cpu_before = server.cpu_seconds()
            rate = args.latency_rate if senders > 1 else 0.0
            total, after_answer, answered_rate = asyncio.run(
                raw_notification_latency(server, token, batch, senders, rate)
            )
            cpu_ms = (server.cpu_seconds() - cpu_before) / len(batch) * 1000
            time.sleep(0.5)
            undelivered = Message.objects.filter(external_id__in=[sid for sid, _b, _h in batch], delivered_at__isnull=True)
            if undelivered.exists():
                raise RuntimeError(f"{undelivered.count()} pushed messages are not recorded as delivered")
            pace = pacing(senders, rate)
            print(f"webhook sent → comms.inbound event, raw socket client, {label} ({pace}, "
                  f"{answered_rate:.0f}/s answered): {summary_ms(total)}")
            print(f"  server CPU per webhook, notification included: {cpu_ms:.2f} ms")
            print(f"  of which after the webhook's 200 arrived: p50 {statistics.median(after_answer) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
