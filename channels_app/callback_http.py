"""A small HTTP/1.1 client for callbacks: one POST at a time per kept-alive connection, on an asyncio protocol.

Why not httpx: measured on our 2-core VMs, one httpx POST on a kept-alive connection cost 0.9 ms of CPU
(httpcore alone 0.5 ms), more than the whole inbound webhook it follows (about 0.6 ms); the same exchange
on asyncio streams costs 35 µs, and less on a protocol of our own (_Connection). A callback is one request
shape (POST, JSON body, no cookies, no redirects, no proxies), so this file holds only that: asyncio does
TLS (SNI and certificate checked for the URL's name), httptools (uvicorn's parser, already a dependency)
reads the response as it arrives.

Connections are opened to an address channels_app.destinations checked, never to a name (no second
DNS lookup), and kept per destination up to its concurrency bound.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from functools import cache
from typing import cast
from urllib.parse import SplitResult, quote, unquote

import httptools

# What we read of an answer: enough for any acknowledgement; a longer one ends the connection.
RESPONSE_READ_CAP = 64 * 1024
IDLE_SECONDS = 30.0


class CallbackHTTPError(Exception):
    """The exchange failed (connect, TLS, timeout, a malformed or cut-off answer)."""


class _Connection(asyncio.Protocol):
    """One connection, one exchange at a time: the answer is parsed as its bytes arrive (data_received,
    httptools calling back on_headers_complete, on_body, on_message_complete), and the exchange's future
    settles once it is complete, cut off, or the connection ends.

    A protocol of our own rather than asyncio's streams, with one parser for the connection's life: a
    parser per answer made a reference cycle (parser ↔ its callbacks) per callback for the collector."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.ended = False  # the server closed its side, or the connection was lost
        self.idle_since = time.monotonic()
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None  # while an exchange is in progress
        # The answer of the exchange in progress:
        self.received_any = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.body_bytes = 0
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport, but have its methods).
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else None

    def usable(self) -> bool:
        return (
            not self.ended
            and self.transport is not None
            and not self.transport.is_closing()
            and time.monotonic() - self.idle_since < IDLE_SECONDS
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write a request; the future settles when its answer is complete (or raises why not)."""
        assert self.transport is not None
        self.received_any = self.headers_done = self.complete = self.keep_alive = False
        self.body_bytes = self.status = 0
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def _settle(self, error: BaseException | None = None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    # --- httptools' callbacks

    def on_headers_complete(self) -> None:
        if self.complete:
            # A second answer in the bytes of the first: the connection's state is unknown, not kept.
            self.ended = True
            return
        self.headers_done = True
        # Only meaningful here: once the message is complete the parser has moved on.
        self.keep_alive = bool(self.parser.should_keep_alive())
        self.status = int(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # --- asyncio's callbacks

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection's state is unknown
            self.ended = True
            self.close()
            return
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.ended = True
            self.close()
            self._settle(CallbackHTTPError(f"{type(exc).__name__}: {exc}"))
            return
        if self.complete or self.body_bytes > RESPONSE_READ_CAP:
            self._settle()

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        self.ended = True
        if self.waiter is None:
            return
        if not self.received_any:
            self._settle(_StaleConnection())
        elif self.headers_done:
            self._settle()  # a body delimited by the end of the connection
        elif exc is not None:
            self._settle(CallbackHTTPError(f"{type(exc).__name__}: {exc}"))
        else:
            self._settle(CallbackHTTPError("the answer was cut off"))


@cache
def _tls_context() -> ssl.SSLContext:
    try:
        import certifi  # what the provider SDKs (through httpx and requests) verify against
    except ImportError:  # pragma: no cover - installed with the SDKs
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def request_lines(parts: SplitResult, *, host: str, headers: dict[str, str]) -> bytes:
    """The request line and `headers` of a POST to `parts`, with `host` in the Host header: a request head
    but for its Content-Length and the blank line that ends it (request_head adds them)."""
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=?-._~")
    port = parts.port
    host_header = host.encode("idna").decode() if not host.isascii() else host
    if ":" in host_header:
        host_header = f"[{host_header}]"
    if port is not None:
        host_header += f":{port}"
    lines = [f"POST {target} HTTP/1.1", f"Host: {host_header}"]
    if parts.username or parts.password:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n").encode()


def request_head(parts: SplitResult, *, host: str, headers: dict[str, str], length: int) -> bytes:
    """The request line and headers of a POST to `parts`, with `host` in the Host header."""
    return request_lines(parts, host=host, headers=headers) + b"Content-Length: %d\r\n\r\n" % length


class DestinationPool:
    """Kept-alive connections to one destination (scheme, host, port)."""

    def __init__(self, *, scheme: str, host: str, port: int, size: int) -> None:
        self.scheme, self.host, self.port, self.size = scheme, host, port, size
        self.idle: list[_Connection] = []

    async def _open(self, address: str) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.scheme == "https":
            _transport, connection = await loop.create_connection(
                _Connection, address, self.port, ssl=_tls_context(), server_hostname=self.host
            )
        else:
            _transport, connection = await loop.create_connection(_Connection, address, self.port)
        return connection

    def _take_idle(self, addresses: list[str]) -> _Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if connection.usable() and connection.peer in addresses:
                return connection
            connection.close()
        return None

    async def post(self, addresses: list[str], head: bytes, body: bytes, timeout: float) -> int:
        """POST over a kept-alive connection to one of `addresses` (all checked); returns the status."""
        async with asyncio.timeout(timeout):
            connection = self._take_idle(addresses)
            if connection is not None:
                try:
                    return await self._exchange(connection, head, body)
                except _StaleConnection:
                    pass  # the server had closed it while idle; nothing was answered: a fresh one
            error: Exception | None = None
            for address in addresses:
                try:
                    connection = await self._open(address)
                except (OSError, ssl.SSLError) as exc:
                    error = exc
                    continue
                try:
                    return await self._exchange(connection, head, body)
                except _StaleConnection as exc:
                    raise CallbackHTTPError("the connection closed before an answer") from exc
            raise CallbackHTTPError(f"connection failed: {error}")

    async def _exchange(self, connection: _Connection, head: bytes, body: bytes) -> int:
        try:
            await connection.send(head + body)
        except BaseException:
            connection.close()  # failed, timed out or cancelled mid-answer: the connection's state is unknown
            raise
        status = connection.status
        if connection.complete and connection.keep_alive and not connection.ended and len(self.idle) < self.size:
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            connection.close()
        return status

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class _StaleConnection(Exception):
    """A reused connection ended before any byte of an answer (the server closed it while idle)."""
