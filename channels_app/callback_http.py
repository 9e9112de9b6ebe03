"""A small HTTP/1.1 client for callbacks: one POST at a time per kept-alive connection, on asyncio streams.

Why not httpx: measured on our 2-core VMs, one httpx POST on a kept-alive connection cost 0.9 ms of CPU
(httpcore alone 0.5 ms), more than the whole inbound webhook it follows (about 0.6 ms); the same exchange
on asyncio streams costs 35 µs. A callback is one request shape (POST, JSON body, no cookies, no
redirects, no proxies), so this file holds only that: asyncio does TLS (SNI and certificate checked for
the URL's name), httptools (uvicorn's parser, already a dependency) reads the response.

Connections are opened to an address channels_app.destinations checked, never to a name (no second
DNS lookup), and kept per destination up to its concurrency bound.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import SplitResult, quote, unquote

import httptools

# What we read of an answer: enough for any acknowledgement; a longer one ends the connection.
RESPONSE_READ_CAP = 64 * 1024
IDLE_SECONDS = 30.0


class CallbackHTTPError(Exception):
    """The exchange failed (connect, TLS, timeout, a malformed or cut-off answer)."""


class _Answer:
    """httptools callbacks: the status, the bytes of the body read so far, whether it is complete."""

    def __init__(self) -> None:
        self.complete = False
        self.body_bytes = 0
        self.headers_done = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Only meaningful here: once the message is complete the parser has moved on.
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = field(default_factory=time.monotonic)

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.idle_since < IDLE_SECONDS
        )

    def close(self) -> None:
        self.writer.close()


@cache
def _tls_context() -> ssl.SSLContext:
    try:
        import certifi  # what the provider SDKs (through httpx and requests) verify against
    except ImportError:  # pragma: no cover - installed with the SDKs
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def request_head(parts: SplitResult, *, host: str, headers: dict[str, str], length: int) -> bytes:
    """The request line and headers of a POST to `parts`, with `host` in the Host header."""
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
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class DestinationPool:
    """Kept-alive connections to one destination (scheme, host, port)."""

    def __init__(self, *, scheme: str, host: str, port: int, size: int) -> None:
        self.scheme, self.host, self.port, self.size = scheme, host, port, size
        self.idle: list[_Connection] = []

    async def _open(self, address: str) -> _Connection:
        if self.scheme == "https":
            reader, writer = await asyncio.open_connection(
                address, self.port, ssl=_tls_context(), server_hostname=self.host
            )
        else:
            reader, writer = await asyncio.open_connection(address, self.port)
        return _Connection(reader, writer)

    def _take_idle(self, addresses: list[str]) -> _Connection | None:
        while self.idle:
            connection = self.idle.pop()
            peer = connection.writer.get_extra_info("peername")
            if connection.usable() and peer and peer[0] in addresses:
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
        answer = _Answer()
        parser = answer.parser
        received_any = False
        try:
            connection.writer.write(head + body)
            while not answer.complete:
                data = await connection.reader.read(65536)
                if not data:
                    if not received_any:
                        raise _StaleConnection
                    if answer.headers_done:
                        break  # a body delimited by the end of the connection
                    raise CallbackHTTPError("the answer was cut off")
                received_any = True
                parser.feed_data(data)
                if answer.body_bytes > RESPONSE_READ_CAP:
                    break
        except _StaleConnection:
            connection.close()
            raise
        except (OSError, ssl.SSLError, httptools.HttpParserError) as exc:
            connection.close()
            raise CallbackHTTPError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            connection.close()  # a timeout or cancellation mid-answer: the connection's state is unknown
            raise
        status = int(parser.get_status_code())
        if answer.complete and answer.keep_alive and len(self.idle) < self.size:
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
