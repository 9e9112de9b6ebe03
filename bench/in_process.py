"""CPU (or instructions) per request of the application alone: the ASGI app called in-process, no server.

    .venv/bin/python bench/in_process.py health|send|webhook|callback|mcp [--requests 2000] [--database postgres://…]
                                         [--profile out.prof] [--callgrind] [--queries]

- `health`: authenticated `GET /api/v1/health` (token lookup, DRF, the machine middleware chain).
- `send`: `POST /api/v1/send-message`, an SMS in demo mode (policy, limits, usage, sandbox provider).
- `webhook`: a signed inbound Twilio SMS webhook (signature, agent read, stored, delivery routed).
- `callback`: the same webhook for an agent with a `callbackUrl`: after the commit the signed callback
  is POSTed to a loopback receiver (a child process this script starts, so its work is not counted)
  and its delivery recorded; the measurement ends when every row is marked delivered.
- `mcp`: `comms_send_message` as a JSON-RPC `tools/call` POST to `/mcp` of an initialized Streamable HTTP
  session (the gate, the SDK's session manager and server as shipped, the same send as `send`); the
  session is opened with `initialize` and `notifications/initialized` before the clock starts.

The requests run as under a server: read on the event loop, handled on the worker pool (one thread here,
WORKER_THREADS=1, so that `--profile` sees every request), so the figures are the application's own cost
with its thread hops; a server adds its HTTP layer (bench/README.md). CPU per request moves with the host's load;
`--callgrind` runs under valgrind and prints instructions per request, which do not, for A/B of small
changes (about a minute per run):

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python bench/in_process.py webhook --requests 300 --callgrind
    callgrind_annotate /tmp/cg.out | grep -m1 "PROGRAM TOTALS"   # ÷ 300

(`--callgrind` only switches instrumentation on around the measured loop with callgrind_control.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import bench_environment, create_agent, prepare_database, setup_django  # noqa: E402

ORCHESTRATOR_TOKEN = "orch_bench_token_0123456789abcdefghij"
TWILIO_TOKEN = "bench-twilio-auth-token-0123456789"
BODY = "Your table for 2 is confirmed for 8 pm. Reply STOP to opt out."
WEBHOOK_AGENT = "bench-agent"
WEBHOOK_TO = "+14155550100"


def _scope(method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"localhost:3100"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3100),
    }


async def _call(application: Any, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    status, _, answer = await _call_with_headers(application, scope, body)
    return status, answer


class Requests:
    """Builds the next request of the chosen kind (webhooks get a new MessageSid each)."""

    def __init__(self, mode: str, token: str, agent_id: str) -> None:
        self.mode, self.token, self.agent_id, self.count = mode, token, agent_id, 0
        self.mcp_session = ""

    def next(self) -> tuple[dict[str, Any], bytes]:
        bearer = (b"authorization", f"Bearer {self.token}".encode())
        if self.mode == "mcp":
            self.count += 1
            arguments = {"to": "+14155550123", "body": BODY}
            return self.mcp("tools/call", {"name": "comms_send_message", "arguments": arguments}, self.count)
        if self.mode == "health":
            return _scope("GET", "/api/v1/health", b"", [bearer]), b""
        if self.mode == "send":
            body = json.dumps({"to": "+14155550123", "body": BODY}).encode()
            return _scope("POST", "/api/v1/send-message", body, [bearer, (b"content-type", b"application/json")]), body
        from django.conf import settings

        from channels_app.signatures import twilio_sign

        self.count += 1
        params = {"MessageSid": f"SM{self.count:032x}", "AccountSid": "AC" + "0" * 32, "From": "+12125550123",
                  "To": WEBHOOK_TO, "Body": BODY, "NumMedia": "0", "ApiVersion": "2010-04-01"}
        path = f"/webhooks/{self.agent_id}/sms"
        signature = twilio_sign(url=settings.PUBLIC_BASE_URL + path, params=params, auth_token=TWILIO_TOKEN)
        body = urlencode(params).encode()
        headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"x-twilio-signature", signature.encode())]
        return _scope("POST", path, body, headers), body


    def mcp(self, method: str, params: dict[str, Any], request_id: int | None) -> tuple[dict[str, Any], bytes]:
        """A JSON-RPC message POSTed to /mcp as the SDK's client posts it (a notification without an id)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request_id is not None:
            message["id"] = request_id
        body = json.dumps(message).encode()
        headers = [(b"authorization", f"Bearer {self.token}".encode()), (b"content-type", b"application/json"),
                   (b"accept", b"application/json, text/event-stream")]
        if self.mcp_session:
            headers += [(b"mcp-session-id", self.mcp_session.encode()), (b"mcp-protocol-version", MCP_VERSION.encode())]
        return _scope("POST", "/mcp", body, headers), body


MCP_VERSION = "2025-11-25"


async def _open_mcp_session(application: Any, requests: Requests) -> None:
    """initialize, then notifications/initialized: the session the measured tool calls belong to."""
    initialize = {"protocolVersion": MCP_VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    status, headers, _ = await _call_with_headers(application, *requests.mcp("initialize", initialize, 0))
    assert status == 200, status
    requests.mcp_session = headers[b"mcp-session-id"].decode()
    status, _, _ = await _call_with_headers(application, *requests.mcp("notifications/initialized", {}, None))
    assert status == 202, status


async def _call_with_headers(application: Any, scope: dict[str, Any], body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a client that stays connected
        return {"type": "http.disconnect"}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await application(scope, receive, send)
    return messages[0]["status"], dict(messages[0].get("headers", [])), b"".join(m.get("body", b"") for m in messages[1:])


def _callback_agent(agent_id: str, url: str) -> str:
    from agents.models import Agent, Organization
    from agents.services import AgentAddresses, agent_create

    Agent.objects.filter(pk=agent_id).delete()
    _, issued, _ = agent_create(organization=Organization.objects.get(pk="default"), display_name="Bench",
                                agent_id=agent_id, addresses=AgentAddresses(phone=None, email=None), callback_url=url)
    return str(issued.token)


class Deliveries:
    """Reads the agent's rows from the SQLite file with a connection of its own, opened (and the schema
    parsed) once before the measurement: a check then costs a few thousand instructions, not Django's."""

    def __init__(self, database: str, agent_id: str) -> None:
        import sqlite3

        self.connection = sqlite3.connect(database)
        self.agent_id = agent_id
        self.count("")

    def count(self, via: str | None) -> int:
        """Rows delivered through `via`; with None, rows not delivered yet."""
        if via is None:
            sql = "SELECT count(*) FROM channels_app_message WHERE agent_id = ? AND delivered_at IS NULL"
            row = self.connection.execute(sql, (self.agent_id,)).fetchone()
        else:
            sql = ("SELECT count(*) FROM channels_app_message WHERE agent_id = ? AND delivered_at IS NOT NULL "
                   "AND delivered_via = ?")
            row = self.connection.execute(sql, (self.agent_id, via)).fetchone()
        return int(row[0])

    async def all_delivered(self) -> None:
        deadline = time.monotonic() + 120
        while self.count(None):
            if time.monotonic() > deadline:
                raise RuntimeError("callbacks still undelivered after 120 s")
            await asyncio.sleep(0.1)


async def _receive_forever() -> None:
    """The agent's callback endpoint, in a child process: answers every POST with a 200, keep-alive."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


async def _agent_with_high_limits(application: Any) -> tuple[str, str]:
    def post(path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        body = json.dumps(payload).encode()
        headers = [(b"authorization", f"Bearer {ORCHESTRATOR_TOKEN}".encode()), (b"content-type", b"application/json")]
        return _scope("POST", path, body, headers), body

    status, answer = await _call(application, *post("/api/v1/provision", {"displayName": "Bench", "capabilities": ["sms"]}))
    created = json.loads(answer)
    limits = {"maxActionsPerMinute": 10**9, "maxActionsPerHour": 10**9, "maxActionsPerDay": 10**9,
              "maxSpendPerDay": 10**7, "maxSpendPerMonth": 10**7}
    await _call(application, *post("/api/v1/agent-limits", {"agentId": created["agentId"], "limits": limits}))
    return str(created["securityToken"]), str(created["agentId"])


async def measure(args: argparse.Namespace) -> None:
    from orchestrator.asgi import application
    from orchestrator.workers import run_blocking

    if args.mode == "webhook":
        token, agent_id = await run_blocking(create_agent, WEBHOOK_AGENT), WEBHOOK_AGENT
    elif args.mode == "callback":
        url = f"http://127.0.0.1:{args.receiver_port}/hook"
        token, agent_id = await run_blocking(_callback_agent, WEBHOOK_AGENT, url), WEBHOOK_AGENT
    else:
        token, agent_id = await _agent_with_high_limits(application)
    requests = Requests(args.mode, token, agent_id)
    if args.mode == "mcp":
        await _open_mcp_session(application, requests)
    # Built (and signed) before the clock starts: signing is the sender's cost, not the server's.
    warm_up = [requests.next() for _ in range(100)]
    measured = [requests.next() for _ in range(args.requests)]
    statuses: dict[int, int] = {}

    async def one(request: tuple[dict[str, Any], bytes]) -> None:
        status, answer = await _call(application, *request)
        if args.mode == "mcp" and b'"isError":false' not in answer.replace(b" ", b""):
            status = -1  # a refusal or an error inside a 200
        statuses[status] = statuses.get(status, 0) + 1

    for request in warm_up:  # imports, compiled statements, first-minute counter rows
        await one(request)
    if args.server_gc:
        from orchestrator.heap import settle_after_startup

        settle_after_startup()  # as uvicorn's lifespan start-up does for a server (docs/decisions/004)
    deliveries = Deliveries(args.database_file, agent_id) if args.mode == "callback" else None
    if deliveries is not None:
        await deliveries.all_delivered()
        if args.callgrind:
            from channels_app import callbacks

            # Deliveries are recorded in batches gathered over MARK_GATHER_SECONDS. Under valgrind a
            # webhook takes about 50× longer, so each batch would hold one row instead of the ~25 a
            # server gathers at 1 sender (2 ms a webhook): the window is stretched by as much.
            callbacks.MARK_GATHER_SECONDS *= 50
    if args.queries:
        await _print_statements(one, measured.pop())
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: two threads share the interpreter
        await run_blocking(profiler.enable)  # the pool's one thread, where the requests are handled
        # and the loop's thread (reading requests, callbacks' POSTs): into `<file>.loop`
        loop_profiler = cProfile.Profile(time.thread_time)
        loop_profiler.enable()
    if args.callgrind:
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    cpu, wall = time.process_time(), time.perf_counter()
    for request in measured:
        await one(request)
    if deliveries is not None:  # the POSTs and the marks of the last requests are part of their cost
        await deliveries.all_delivered()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if args.callgrind:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
    if profiler is not None:
        loop_profiler.disable()
        await run_blocking(profiler.disable)
        profiler.dump_stats(args.profile)
        loop_profiler.dump_stats(args.profile + ".loop")
    if deliveries is not None:
        print(f"callbacks delivered: {deliveries.count('callback')}")
    print(f"{args.mode}: {cpu / args.requests * 1e6:.0f} µs CPU per request ({wall / args.requests * 1e6:.0f} µs wall), "
          f"{args.requests} requests, statuses {statuses}")


async def _print_statements(one: Any, request: tuple[dict[str, Any], bytes]) -> None:
    """The SQL statements one request runs (on the pool's one thread, where requests are handled)."""
    from django.db import connection

    from orchestrator.workers import run_blocking

    statements: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    def start() -> Any:  # the wrapper of the worker thread's own connection
        wrapper = connection.execute_wrapper(record)
        wrapper.__enter__()
        return wrapper

    wrapper = await run_blocking(start)
    await one(request)
    await run_blocking(wrapper.__exit__, None, None, None)
    print(f"{len(statements)} statements in one request:")
    for sql in statements:
        print("   ", sql[:160])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("health", "send", "webhook", "callback", "receiver", "mcp"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--database", default="sqlite", help="sqlite, or a postgres:// URL of an empty database")
    parser.add_argument("--profile", default="", help="write a cProfile of the measured loop here")
    parser.add_argument("--callgrind", action="store_true", help="running under valgrind --instr-atstart=no")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `make run` serves")
    parser.add_argument("--server-gc", action="store_true", help="freeze the heap and set the collector's "
                        "threshold after the warm-up, as a server does at start-up (orchestrator.heap)")
    parser.add_argument("--queries", action="store_true", help="first print the SQL statements of one request")
    args = parser.parse_args()
    if args.mode == "receiver":  # the callback endpoint of `callback`, run as a child process
        asyncio.run(_receive_forever())
        return
    receiver = None
    if args.mode == "callback":
        if args.database != "sqlite":
            parser.error("callback runs on SQLite only (it reads the rows' delivery from the file)")
        receiver = subprocess.Popen([sys.executable, __file__, "receiver"], stdout=subprocess.PIPE)
        assert receiver.stdout is not None
        args.receiver_port = int(receiver.stdout.readline())
    try:
        _measure_in(args)
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait()


def _measure_in(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = bench_environment(os.path.join(tmp, "bench.sqlite3"))
        if args.database != "sqlite":
            env["DATABASE_URL"] = args.database
        if args.mode in ("webhook", "callback"):
            env.update(DEMO_MODE="false", TWILIO_AUTH_TOKEN=TWILIO_TOKEN, CALLBACK_ALLOWED_HOSTS="127.0.0.1")
            # No retry sweep: its cost is per second, not per webhook, and under valgrind a run lasts a minute.
            env["CALLBACK_SWEEP_MILLISECONDS"] = "0"
        args.database_file = os.path.join(tmp, "bench.sqlite3")
        prepare_database(env)
        env["WORKER_THREADS"] = "1"
        setup_django(env)
        if args.uvloop:  # the event loop `make run` serves on (the default here is asyncio's own)
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(measure(args))


if __name__ == "__main__":
    main()
