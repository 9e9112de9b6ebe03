"""Signed callbacks under load (issue 14 item 11).

Signed Twilio SMS webhooks to a server process (uvicorn + httptools + uvloop, as `make run` serves, on a
throw-away SQLite database) for an agent with a `callbackUrl`; a loopback receiver in this process
records when each signed callback arrives. Interleaved with the same webhooks for an agent without a
callback URL (the message waits), so the two figures come from the same minutes of a shared host.

Per run: webhooks per second of *server* CPU time (user + system of the server process, from the first
webhook until every callback has arrived, plus a settle of 0.5 s), the webhook's own latency, and for the
callback agent the time from the webhook's 200 reaching the sender to the callback reaching the receiver
(p50 / p99), callbacks arrived vs sent, signatures checked, and rows left undelivered in the database.
That time is negative when the callback arrives first: the server commits the row, schedules the POST
from the commit hook, then answers, so the POST often leaves before the 200 (both arrive here within
microseconds); the time from sending the webhook to the callback's arrival is printed beside it, and
every tenth callback checks on arrival that its message row is already committed (a reader of the
SQLite file sees committed rows only).

Senders post from raw keep-alive sockets (the client's own CPU stays out of the server's figures). With
1 sender it posts the next webhook when the last is answered; with 20 senders, a closed loop by default
(each sender posts again as soon as answered: the server is saturated) or `--rate R` webhooks a second
due across the senders, as a provider sends them.

    .venv/bin/python bench/callbacks.py --count 2000 --rounds 2
    .venv/bin/python bench/callbacks.py --count 2000 --rounds 2 --rate 1000

`--reference-url URL --reference-pid PID --reference-db FILE` sends the same signed webhooks to the
reference TypeScript server instead (bench/reference.py; started with its AGENTOS_CALLBACK_URL at
`http://127.0.0.1:<--receiver-port>/hook/{agentId}`): it has no agent without a callback, so only the
callback runs, and it signs no callback.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inbound_webhooks import TWILIO_TOKEN, Pace, raw_exchange  # noqa: E402
from bench.mcp_common import bench_environment, percentile, prepare_database, server_process, setup_django  # noqa: E402

CALLBACK_AGENT = "bench-callback"
PLAIN_AGENT = "bench-plain"


CHECK_EVERY = 10
TICKS = os.sysconf("SC_CLK_TCK")


class Receiver:
    """The agent's callback endpoint: a minimal HTTP/1.1 keep-alive server that notes arrival times."""

    def __init__(self) -> None:
        self.arrived_at: dict[str, float] = {}
        self.raw: list[tuple[bytes, bytes]] = []  # (signature header, body), checked after the run
        self.duplicates = 0
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.handlers: set[asyncio.Task[None]] = set()
        # With a database file: every CHECK_EVERY-th callback, whether its message row was already committed
        # when the callback arrived (a reader of the SQLite file sees committed rows only).
        self.database: sqlite3.Connection | None = None
        self.checked = 0
        self.uncommitted = 0

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the endpoint and end the handlers of connections still open (the server's kept-alive ones)."""
        if self.server is not None:
            self.server.close()
        handlers = list(self.handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        handler = asyncio.current_task()
        assert handler is not None
        self.handlers.add(handler)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                length, signature = 0, b""
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    lowered = name.strip().lower()
                    if lowered == b"content-length":
                        length = int(value)
                    elif lowered == b"x-comms-signature":
                        signature = value.strip()
                body = await reader.readexactly(length)
                now = time.perf_counter()
                marker = body.index(b'"externalId":"') + len(b'"externalId":"')
                sid = body[marker : body.index(b'"', marker)].decode()
                if sid in self.arrived_at:
                    self.duplicates += 1
                else:
                    self.arrived_at[sid] = now
                    if self.database is not None and len(self.arrived_at) % CHECK_EVERY == 0:
                        self.checked += 1
                        found = self.database.execute(
                            "SELECT 1 FROM channels_app_message WHERE external_id = ?", (sid,)).fetchone()
                        self.uncommitted += found is None
                self.raw.append((signature, body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # stop(): asyncio's stream callback reads each handler's outcome, and a cancelled one would be
            # printed as an error at exit, once per kept-alive connection.
            return
        finally:
            self.handlers.discard(handler)
            writer.close()


def signed(agent_id: str, count: int, base_url: str, tag: str) -> list[tuple[str, bytes]]:
    """(MessageSid, the whole HTTP request) for `count` webhooks, signed before any clock starts."""
    import secrets
    from urllib.parse import urlencode

    from channels_app.signatures import twilio_sign

    path = f"/webhooks/{agent_id}/sms"
    out = []
    for n in range(count):
        sid = "SM" + secrets.token_hex(16)
        params = {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+12125550123",
                  "To": "+14155550100", "Body": f"{tag} {n}: Tom & cat; 🙂", "NumMedia": "0"}
        body = urlencode(params).encode()
        signature = twilio_sign(url=base_url + path, params=params, auth_token=TWILIO_TOKEN)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n")
        out.append((sid, head.encode() + body))
    return out


async def run(server: Any, port: int, batch: list[tuple[str, bytes]], senders: int, rate: float,
              receiver: Receiver | None) -> dict[str, Any]:
    queue = list(reversed(batch))
    answered_at: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    pace = Pace(rate if senders > 1 else 0.0)

    async def sender() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            sid, message = queue.pop()
            await pace.wait_for_the_next()
            started = sent_at[sid] = time.perf_counter()
            await raw_exchange(reader, writer, message)
            answered_at[sid] = time.perf_counter()
            latencies.append(answered_at[sid] - started)
        writer.close()

    pid = server.pid if hasattr(server, "pid") else server.process.pid
    threads_before = thread_times(pid)
    cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
    pace.start()
    await asyncio.gather(*(sender() for _ in range(senders)))
    wall = time.perf_counter() - wall_before
    missing: list[str] = []
    if receiver is not None:
        deadline = time.perf_counter() + 30
        while any(sid not in receiver.arrived_at for sid in answered_at) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        missing = [sid for sid in answered_at if sid not in receiver.arrived_at]
    await asyncio.sleep(0.5)  # what runs after the 200s (marks, sweeps) is counted too
    cpu = server.cpu_seconds() - cpu_before
    result: dict[str, Any] = {
        "threads": thread_split(pid, threads_before, len(batch)),
        "count": len(batch), "cpu": cpu, "wall": wall, "per_cpu_second": len(batch) / cpu,
        "webhook_p50": statistics.median(latencies), "webhook_p99": percentile(latencies, 0.99),
    }
    if receiver is not None:
        after = [receiver.arrived_at[sid] - answered_at[sid] for sid in answered_at if sid in receiver.arrived_at]
        since_sent = [receiver.arrived_at[sid] - sent_at[sid] for sid in answered_at if sid in receiver.arrived_at]
        result.update(arrived=len(after), missing=len(missing), after_p50=statistics.median(after),
                      after_p99=percentile(after, 0.99), sent_p50=statistics.median(since_sent),
                      sent_p99=percentile(since_sent, 0.99))
    return result


def thread_times(pid: int) -> dict[int, tuple[float, float, int]]:
    """Per thread of the server: (user s, system s, context switches), from /proc."""
    out: dict[int, tuple[float, float, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:
            continue
        switches = sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
        out[int(task.name)] = (int(fields[11]) / TICKS, int(fields[12]) / TICKS, switches)
    return out


def thread_split(pid: int, before: dict[int, tuple[float, float, int]], count: int) -> str:
    """µs of CPU per webhook on the loop's thread (the main one) and on the others, user+system, and
    context switches per webhook."""
    after = thread_times(pid)
    loop_user = loop_sys = rest_user = rest_sys = 0.0
    loop_cs = rest_cs = 0
    for tid, (user, system, switches) in after.items():
        user0, system0, switches0 = before.get(tid, (0.0, 0.0, 0))
        if tid == pid:
            loop_user, loop_sys, loop_cs = user - user0, system - system0, switches - switches0
        else:
            rest_user += user - user0
            rest_sys += system - system0
            rest_cs += switches - switches0
    per = 1e6 / count
    return (f"loop thread {loop_user * per:.0f}+{loop_sys * per:.0f} µs (user+sys), {loop_cs / count:.1f} switches; "
            f"other threads {rest_user * per:.0f}+{rest_sys * per:.0f} µs, {rest_cs / count:.1f} switches per webhook")


def callgrind_control(pid: int, *arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments, str(pid)], check=True, capture_output=True)


def callgrind_dump(pid: int, out_file: str) -> int:
    """Dump the server's counts since the last dump (callgrind writes `<out_file>.<n>`, then zeroes them);
    returns the instructions counted."""
    before = set(glob.glob(f"{out_file}.*"))
    callgrind_control(pid, "--dump")
    deadline = time.monotonic() + 60
    while not (new := set(glob.glob(f"{out_file}.*")) - before):
        if time.monotonic() > deadline:
            raise RuntimeError("callgrind wrote no dump")
        time.sleep(0.1)
    dump = Path(max(new, key=os.path.getmtime))
    for _ in range(100):  # written while we look: wait for its totals
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1])
        time.sleep(0.1)
    raise RuntimeError(f"no totals in {dump}")


def undelivered(agent_id: str, sids: list[str]) -> int:
    from channels_app.models import Message

    return Message.objects.filter(agent_id=agent_id, external_id__in=sids, delivered_at__isnull=True).count()


def signatures_valid(receiver: Receiver, secret: str) -> int:
    bad = 0
    for header, body in receiver.raw:
        parts = dict(part.split(b"=", 1) for part in header.split(b","))
        expected = hmac.new(secret.encode(), parts[b"t"] + b"." + body, hashlib.sha256).hexdigest().encode()
        bad += not hmac.compare_digest(expected, parts[b"v1"])
        json.loads(body)
    return bad


async def main_async(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="comms-bench-callbacks-")
    try:
        await _ours(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the run's SQLite database


async def _ours(args: argparse.Namespace, workdir: str) -> None:
    receiver = Receiver()
    await receiver.start()
    env = bench_environment(os.path.join(workdir, "bench.sqlite3"))
    env.update(DEMO_MODE="false", TWILIO_AUTH_TOKEN=TWILIO_TOKEN, CALLBACK_ALLOWED_HOSTS="127.0.0.1")
    env.update(dict(pair.split("=", 1) for pair in args.env))
    prepare_database(env)
    setup_django(env)
    receiver.database = sqlite3.connect(os.path.join(workdir, "bench.sqlite3"))
    from asgiref.sync import sync_to_async
    from django.conf import settings

    from agents.crypto import decrypt
    from agents.models import Organization
    from agents.services import AgentAddresses, agent_create

    org = await sync_to_async(Organization.objects.get)(pk="default")
    callback_agent, _issued, secret = await sync_to_async(agent_create)(
        organization=org, display_name="Callback", agent_id=CALLBACK_AGENT,
        addresses=AgentAddresses(phone=None, email=None), callback_url=f"http://127.0.0.1:{receiver.port}/hook",
    )
    await sync_to_async(agent_create)(organization=org, display_name="Plain", agent_id=PLAIN_AGENT,
                                      addresses=AgentAddresses(phone=None, email=None))
    assert decrypt(callback_agent.callback_secret_encrypted) == secret
    base = settings.PUBLIC_BASE_URL
    sender_counts = [int(n) for n in args.senders.split(",")]
    print(f"{time.strftime('%H:%M:%S')} UTC, load {os.getloadavg()[0]:.1f}; {args.count} webhooks per run"
          + (f", 20-sender runs paced at {args.rate:.0f}/s" if args.rate else ", closed loop"))
    with server_process(env, profile_to=args.profile, callgrind_to=args.callgrind) as server:
        for warm_agent in (PLAIN_AGENT, CALLBACK_AGENT):
            await run(server, server.port, signed(warm_agent, 300, base, "warm-up"), 20, 0.0,
                      receiver if warm_agent == CALLBACK_AGENT else None)
        for round_number in range(1, args.rounds + 1):
            for senders in sender_counts:
                for agent_id in (PLAIN_AGENT, CALLBACK_AGENT):
                    if args.only and agent_id != (CALLBACK_AGENT if args.only == "callback" else PLAIN_AGENT):
                        continue
                    batch = signed(agent_id, args.count, base, f"r{round_number}")
                    with_callback = agent_id == CALLBACK_AGENT
                    if args.callgrind:
                        callgrind_control(server.process.pid, "-i", "on")
                    result = await run(server, server.port, batch, senders, args.rate, receiver if with_callback else None)
                    if args.callgrind:
                        callgrind_control(server.process.pid, "-i", "off")
                        result["instructions"] = callgrind_dump(server.process.pid, args.callgrind) / len(batch)
                    line = (f"round {round_number}, {senders:>2} sender{'s' if senders > 1 else ' '}, "
                            f"{'callback  ' if with_callback else 'no callback'}: "
                            f"{result['per_cpu_second']:6.0f} webhooks per server CPU-second "
                            f"({result['count'] / result['wall']:5.0f}/s wall); webhook p50 "
                            f"{result['webhook_p50'] * 1000:5.2f} ms, p99 {result['webhook_p99'] * 1000:6.2f} ms")
                    if with_callback:
                        left = await sync_to_async(undelivered)(agent_id, [sid for sid, _ in batch])
                        line += (f"; callback after the 200: p50 {result['after_p50'] * 1000:.2f} ms, "
                                 f"p99 {result['after_p99'] * 1000:.2f} ms; after the webhook was sent: p50 "
                                 f"{result['sent_p50'] * 1000:.2f} ms, p99 {result['sent_p99'] * 1000:.2f} ms; arrived {result['arrived']}/{result['count']}, "
                                 f"rows undelivered {left}")
                    if args.callgrind:
                        line += f"; {result['instructions'] / 1e6:.3f} M server instructions per webhook"
                    print(line, flush=True)
                    if args.threads:
                        print("    " + result["threads"], flush=True)
    await receiver.stop()
    bad = signatures_valid(receiver, secret)
    print(f"callbacks received {len(receiver.raw)}, duplicates {receiver.duplicates}, bad signatures {bad}, "
          f"receiver connections {receiver.connections}; of {receiver.checked} checked on arrival, "
          f"{receiver.uncommitted} came before their message row was committed")


async def reference_async(args: argparse.Namespace) -> None:
    """The callback runs of main_async() against the reference server (see bench/reference.py)."""
    from bench.reference import ReferenceServer, provision_sms_agent

    server = ReferenceServer(args.reference_url, args.reference_pid)
    receiver = Receiver()
    await receiver.start(args.receiver_port)
    provision_sms_agent(args.reference_db, CALLBACK_AGENT, "+14155550100")
    print(f"{time.strftime('%H:%M:%S')} UTC, load {os.getloadavg()[0]:.1f}; reference server pid {server.pid}; "
          f"{args.count} webhooks per run" + (f", 20-sender runs paced at {args.rate:.0f}/s" if args.rate else ", closed loop"))
    await run(server, server.port, signed(CALLBACK_AGENT, 300, args.reference_url, "warm-up"), 20, 0.0, receiver)
    for round_number in range(1, args.rounds + 1):
        for senders in [int(n) for n in args.senders.split(",")]:
            batch = signed(CALLBACK_AGENT, args.count, args.reference_url, f"r{round_number}")
            result = await run(server, server.port, batch, senders, args.rate, receiver)
            print(f"reference, round {round_number}, {senders:>2} sender{'s' if senders > 1 else ' '}, callback  : "
                  f"{result['per_cpu_second']:6.0f} webhooks per server CPU-second ({result['count'] / result['wall']:5.0f}/s "
                  f"wall); webhook p50 {result['webhook_p50'] * 1000:5.2f} ms, p99 {result['webhook_p99'] * 1000:6.2f} ms; "
                  f"callback after the 200: p50 {result['after_p50'] * 1000:.2f} ms, p99 {result['after_p99'] * 1000:.2f} ms; "
                  f"arrived {result['arrived']}/{result['count']}", flush=True)
    print(f"callbacks received {len(receiver.raw)}, duplicates {receiver.duplicates}, "
          f"receiver connections {receiver.connections}")
    await receiver.stop()  # the reference keeps its keep-alive connections to the receiver open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="webhooks per run (default 2000)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--senders", default="1,20", help="comma-separated sender counts (default 1,20)")
    parser.add_argument("--rate", type=float, default=0.0, help="webhooks/s due across the senders (default: closed loop)")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the server (repeatable)")
    parser.add_argument("--threads", action="store_true", help="also print CPU and context switches per webhook "
                        "of the server's loop thread and of its other threads")
    parser.add_argument("--only", choices=("callback", "plain"), help="run only the agent with (or without) a "
                        "callback URL, e.g. to profile one of them")
    parser.add_argument("--callgrind", metavar="FILE", help="run the server under valgrind's callgrind and print "
                        "its instructions per webhook for each measured run (dumps in FILE.<n>; about 50× slower: "
                        "use --count 200 and --env CALLBACK_SWEEP_MILLISECONDS=0)")
    parser.add_argument("--profile", default=None, help="sample the server with py-spy into this file (raw)")
    parser.add_argument("--reference-url", help="measure the reference server at this URL instead (bench/reference.py)")
    parser.add_argument("--reference-pid", type=int, help="pid of the reference's node process (its CPU time is read)")
    parser.add_argument("--reference-db", help="the reference's SQLite file (the benchmark provisions its agent there)")
    parser.add_argument("--receiver-port", type=int, default=0, help="port of the callback receiver (the reference's "
                        "AGENTOS_CALLBACK_URL must point at it)")
    args = parser.parse_args()
    asyncio.run(reference_async(args) if args.reference_url else main_async(args))


if __name__ == "__main__":
    main()
