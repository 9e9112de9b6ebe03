"""Cross-process `sample_agent` overhead through Redis.

The agent's client (SDK SSE client answering sampling at once) connects to a server; this process
calls `sample_agent`. Local: the server runs inside this process (uvicorn in our loop), so the
request goes straight to the session. Forwarded: the server is another process, so the request
travels through Redis to its channel and the answer comes back on ours. The overhead is the
difference of the two medians.

    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python bench/mcp_cross_process.py [--samples 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mcp_common import (  # noqa: E402
    bench_environment,
    create_agent,
    prepare_database,
    server_process,
    setup_django,
    summary_ms,
)


async def answer(context: Any, params: Any) -> Any:
    from mcp_types import CreateMessageResult, TextContent

    return CreateMessageResult(role="assistant", content=TextContent(type="text", text="ok"), model="bench")


async def measure(url: str, token: str, samples: int) -> list[float]:
    from orchestrator import agent_registry
    from tests.orchestrator.mcp_clients import sse_session

    timings = []
    async with sse_session(f"{url}/sse?token={token}", sampling_callback=answer):
        deadline = time.monotonic() + 10
        while not await agent_registry.is_agent_connected("bench-agent"):
            if time.monotonic() > deadline:
                raise RuntimeError("agent did not register")
            await asyncio.sleep(0.02)
        for index in range(samples + 20):
            started = time.perf_counter()
            text = await agent_registry.sample_agent("bench-agent", [{"role": "user", "content": "hi"}], timeout=5)
            if index >= 20:  # the first ones warm up
                timings.append(time.perf_counter() - started)
            assert text == "ok"
    await asyncio.sleep(0.5)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3")
    workdir = tempfile.mkdtemp(prefix="comms-bench-")
    env = bench_environment(f"{workdir}/bench.sqlite3", redis_url=redis_url)
    prepare_database(env)
    setup_django(env)
    token = create_agent()

    async def local() -> list[float]:
        from orchestrator import agent_registry
        from orchestrator.asgi import application
        from tests.live_server import start_uvicorn, stop_uvicorn

        server, task, port = await start_uvicorn(application)
        try:
            return await measure(f"http://127.0.0.1:{port}", token, args.samples)
        finally:
            await stop_uvicorn(server, task)
            await agent_registry.shutdown()

    local_timings = asyncio.run(local())
    print(f"sample_agent, session in this process: {summary_ms(local_timings)}")
    with server_process(env) as remote:

        async def forwarded() -> list[float]:
            from orchestrator import agent_registry

            try:
                return await measure(remote.url, token, args.samples)
            finally:
                await agent_registry.shutdown()

        forwarded_timings = asyncio.run(forwarded())
    print(f"sample_agent, session in another process (via Redis): {summary_ms(forwarded_timings)}")
    overhead = statistics.median(forwarded_timings) - statistics.median(local_timings)
    print(f"cross-process overhead, p50: {overhead * 1000:.2f} ms")


if __name__ == "__main__":
    main()
