"""The callback client on the wire: answers framed every way HTTP/1.1 allows, kept-alive connections that
the server closed meanwhile, and TLS negotiated and verified for the URL's name, not the address."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from channels_app.callback_http import CallbackHTTPError, DestinationPool, request_head

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


async def serve(handler: Handler, **kwargs) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)
    return server, server.sockets[0].getsockname()[1]


def head_for(port: int, path: str = "/hook?x=1") -> bytes:
    return request_head(urlsplit(f"http://hooks.example:{port}{path}"), host="hooks.example",
                        headers={"Content-Type": "application/json"}, length=2)


async def test_it_reads_chunked_and_close_delimited_answers_and_reuses_only_kept_alive_connections():
    connections: list[int] = []
    answers = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbroken",
    ]
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while answers:
            try:
                head, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(head)
            answer = answers.pop(0)
            writer.write(answer)
            await writer.drain()
            if b"close" in answer:
                break
        writer.close()

    server, port = await serve(handler)
    pool = DestinationPool(scheme="http", host="hooks.example", port=port, size=2)
    statuses = [await pool.post(["127.0.0.1"], head_for(port), b"{}", 5) for _ in range(3)]
    assert statuses == [200, 202, 500]
    assert len(connections) == 1  # the first two answers kept it alive; the third closed it
    assert pool.idle == []
    assert seen[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\nHost: hooks.example:%d\r\n" % port)
    server.close()


async def test_a_kept_alive_connection_the_server_closed_meanwhile_is_replaced_by_a_fresh_one():
    requests = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await read_request(reader)
        requests += 1
        # Keep-alive announced, then closed without waiting: the client's idle connection is stale.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    pool = DestinationPool(scheme="http", host="hooks.example", port=port, size=2)
    assert await pool.post(["127.0.0.1"], head_for(port), b"{}", 5) == 200
    await asyncio.sleep(0.05)  # let the close arrive
    assert await pool.post(["127.0.0.1"], head_for(port), b"{}", 5) == 200
    assert requests == 2
    server.close()


async def test_an_answer_followed_by_bytes_nobody_asked_for_counts_and_its_connection_is_not_kept():
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            # Two answers to one request: the second must not be taken for the next request's.
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server, port = await serve(handler)
    pool = DestinationPool(scheme="http", host="hooks.example", port=port, size=2)
    assert [await pool.post(["127.0.0.1"], head_for(port), b"{}", 5) for _ in range(2)] == [201, 201]
    assert connections == 2
    server.close()


async def test_a_silent_server_times_out():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    server, port = await serve(handler)
    pool = DestinationPool(scheme="http", host="hooks.example", port=port, size=1)
    with pytest.raises(TimeoutError):
        await pool.post(["127.0.0.1"], head_for(port), b"{}", 0.3)
    assert pool.idle == []
    server.close()


def self_signed(name: str, directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


async def test_tls_is_negotiated_for_the_urls_name_and_an_untrusted_certificate_is_refused():
    server_names: list[str | None] = []
    answered = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        answered += 1
        writer.close()

    with tempfile.TemporaryDirectory() as directory:
        context = self_signed("hooks.example", Path(directory))
    context.sni_callback = lambda _socket, name, _context: server_names.append(name)
    server, port = await serve(handler, ssl=context)
    pool = DestinationPool(scheme="https", host="hooks.example", port=port, size=1)
    with pytest.raises(CallbackHTTPError, match="CERTIFICATE_VERIFY_FAILED"):
        await pool.post(["127.0.0.1"], head_for(port), b"{}", 5)
    # Connected to the checked address, but the handshake named the URL's host; nothing was sent.
    assert server_names == ["hooks.example"]
    assert answered == 0
    server.close()
