"""The floor under our numbers: the SDK's own high-level `MCPServer` over SSE, with one trivial tool
and nothing of ours (no auth gate, no Django), measured exactly like bench/mcp_latency.py.

    .venv/bin/python bench/mcp_sdk_floor.py [--calls 4000] [--clients 8]

Run with `--serve PORT` it is the server itself (started by this script in a subprocess).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import ServerProcess, free_port  # noqa: E402


def serve(port: int) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("sdk-floor")

    @server.tool()
    def comms_ping() -> dict[str, Any]:
        """Same shape as our comms_ping result."""
        return {"status": "ok", "uptime": time.monotonic(), "version": "0.1.0", "demoMode": True,
                "identity": {"role": "agent", "orgId": "default", "agentId": "bench-agent"}, "agentId": "bench-agent"}

    uvicorn.run(server.sse_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    from bench.mcp_latency import throughput

    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("SDK server did not start")
            time.sleep(0.05)
        server = ServerProcess(process, port)
        per_wall, per_cpu, total = asyncio.run(throughput(server, "unused", args.clients, args.calls // args.clients))
        print(
            f"SDK MCPServer alone, comms_ping-shaped tool over SSE, {args.clients} clients, {total} calls: "
            f"{per_wall:.0f} calls/s wall, {per_cpu:.0f} calls per server CPU-second ({1e6 / per_cpu:.0f} µs per call)"
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
