"""The reference TypeScript server as a second target for bench/callbacks.py and bench/mcp_latency.py.

The reference is not started by the benchmarks: it runs on its own (how it was rebuilt and started is in
bench/README.md, "The reference server, side by side"); the benchmarks are given its URL and the pid of
its node process, whose user + system CPU time they read from /proc as they do for our server.

What the reference's code does, as the harness must meet it:
- Inbound SMS: `POST /webhooks/<agentId>/sms`, form-encoded, `To` must be the agent's phone number. In
  DEMO_MODE the Twilio signature is not checked (and outside it its Twilio adapter's check throws, which
  its middleware logs and lets through), so our signed requests are sent unchanged and pass.
- Callback: every inbound SMS is POSTed, unsigned JSON, to one server-wide AGENTOS_CALLBACK_URL with
  `{agentId}` replaced; there is no per-agent callback URL. The reference must be started with
  `AGENTOS_CALLBACK_URL=http://127.0.0.1:<receiver port>/hook/{agentId}`.
- Agents: its comms_provision_channels tool inserts an `agent_channels` row (the phone number from its
  telephony provider); the benchmark inserts that row into the reference's SQLite file directly.
- MCP: `GET /sse`, then `POST /messages?sessionId=…`; in DEMO_MODE every POST is admin without a token.
  No Streamable HTTP: `mcp_latency.py` measures the reference over SSE only.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.mcp_common import CLOCK_TICKS


@dataclass
class ReferenceServer:
    url: str
    pid: int
    # Its MCP is the SDK's SSE transport only (GET /sse, POST /messages): it has no Streamable HTTP endpoint
    # (a POST /mcp is Express's 404, on which the SDK's client waits for ever), so mcp_latency.py skips it there.
    transports: tuple[str, ...] = ("sse",)

    def __post_init__(self) -> None:
        # `cd /work/ref && node … &` backgrounds a subshell: its $! is not node's pid, and a CPU time of 0
        # would end a run in a division by zero after the warm-up, so say so before anything starts.
        comm = Path(f"/proc/{self.pid}/comm")
        name = comm.read_text().strip() if comm.exists() else "no such process"
        if name != "node":
            raise SystemExit(f"--reference-pid {self.pid} is {name!r}, not the reference's node process "
                             "(start it as in bench/README.md: `node dist/index.js … &` then REF=$!)")

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def cpu_seconds(self) -> float:
        """User + system CPU time of the reference's node process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def provision_sms_agent(database: str, agent_id: str, phone: str) -> None:
    """The row the reference's comms_provision_channels inserts for an agent with a phone number."""
    with sqlite3.connect(database, timeout=10) as db:
        db.execute("DELETE FROM agent_channels WHERE agent_id = ?", (agent_id,))
        db.execute(
            "INSERT INTO agent_channels (id, agent_id, display_name, phone_number, whatsapp_status, status, org_id,"
            " agent_gender) VALUES (?, ?, ?, ?, 'inactive', 'active', 'default', 'male')",
            (str(uuid.uuid4()), agent_id, agent_id, phone),
        )
