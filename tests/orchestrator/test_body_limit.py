"""The 1 MB body cap counts the bytes actually read, on every route (issue 14, item 2).

A chunked body carries no Content-Length: the server must answer 413 as soon as the cap is passed,
without waiting for (or storing) the rest. The client here sends just over the cap and then waits:
a server that buffers until the body ends never answers.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.live_server import LIVE_SERVER_APPS, LiveServer

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)

CAP = 1024 * 1024
CHUNK = b"x" * 65536
ROUTES = ["/api/v1/send-message", "/webhooks/agent-a/sms", "/webhooks/agent-a/email", "/mcp",
          "/admin/login/", "/admin/api/save", "/no-such-path"]


async def send_chunked_past_the_cap(server: LiveServer, path: str) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer orch_test_orchestrator_token_0123456789\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent = 0
        while sent <= CAP:
            writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            sent += len(CHUNK)
            await writer.drain()
        # No terminating chunk: the body never ends. Only a server that counts what it read answers.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=15)
        status = int(head.split(b" ", 2)[1])
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), timeout=15)
        assert headers[b"content-type"].startswith(b"application/json")
        return status, json.loads(body)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ROUTES)
async def test_it_answers_413_to_a_chunked_body_past_the_cap_without_reading_the_rest(asgi_server: LiveServer, path) -> None:
    status, body = await send_chunked_past_the_cap(asgi_server, path)
    assert status == 413
    assert body["code"] == "payload_too_large"


async def test_it_refuses_a_declared_length_over_the_cap_before_reading_the_body(asgi_server: LiveServer) -> None:
    reader, writer = await asyncio.open_connection(asgi_server.host, asgi_server.port)
    try:
        writer.write(f"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: {CAP + 1}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=15)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413")


async def test_it_accepts_a_chunked_body_under_the_cap(asgi_server: LiveServer) -> None:
    reader, writer = await asyncio.open_connection(asgi_server.host, asgi_server.port)
    try:
        body = b'{"agentId": "nobody"}'
        writer.write(
            b"POST /api/v1/send-message HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer orch_test_orchestrator_token_0123456789\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=15)
    finally:
        writer.close()
    assert head.split(b" ", 2)[1] == b"400"  # read and validated: `to` and `body` are missing
