"""Interoperability: the official TypeScript MCP SDK (an independent implementation) against our server.

Runs when Node.js and `tests/interop/node_modules` are present (`.ci/run` installs them with
`npm ci` when `node` exists); otherwise it is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from tests.live_server import LIVE_SERVER_APPS, LiveServer

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


@pytest.fixture
def node() -> str:
    executable = shutil.which("node")
    if executable is None:
        pytest.skip("node is not installed")
    if not (HERE / "node_modules" / "@modelcontextprotocol" / "sdk").exists():
        pytest.skip("run `npm ci` in tests/interop to install the TypeScript SDK")
    return executable


async def test_the_typescript_sdk_lists_and_calls_tools_over_sse_and_streamable_http(
    asgi_server: LiveServer, make_agent, node: str
) -> None:
    _, token = await sync_to_async(make_agent)("ts-agent")
    process = await asyncio.create_subprocess_exec(
        node, str(HERE / "check.mjs"), asgi_server.url, token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    reports = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [report["transport"] for report in reports] == ["sse-query-token", "sse-bearer", "streamable-http"]
    assert all(report["agentId"] == "ts-agent" for report in reports)
