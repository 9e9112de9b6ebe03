"""The 1 MB request cap on the bytes actually read, for every HTTP route (contract §1, §3).

A `Content-Length` over the cap is refused before a byte of the body is read. A body without one
(chunked) is counted as it arrives: once it passes the cap the client gets 413 at once, and the
application behind sees the client leave (`http.disconnect`), so it stops reading and answers nothing
more. Nothing past the cap is ever buffered: Django would otherwise spool a chunked body to disk
without limit, and the MCP SDK would read it all into memory first.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import ApiError
from orchestrator.routing import send_json

Scope = dict[str, Any]
Message = dict[str, Any]

TOO_LARGE = ApiError(413, "payload_too_large", "Request bodies are limited to 1 MB; send media by URL.")


class BodyLimit:
    """ASGI wrapper: HTTP requests whose body passes `max_bytes` get 413 `payload_too_large`."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_json(send, TOO_LARGE.status, TOO_LARGE.body())
            return
        if declared is not None:
            # The server delivers no more than Content-Length says: nothing to count.
            await self.app(scope, receive, send)
            return
        await _CountedRequest(self.app, self.max_bytes, send).run(scope, receive)


class _CountedRequest:
    def __init__(self, app: Any, max_bytes: int, send: Any) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.downstream_send = send
        self.read = 0
        self.refused = False
        self.started = False

    async def run(self, scope: Scope, receive: Any) -> None:
        async def counted_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message: Message = await receive()
            if message["type"] == "http.request":
                self.read += len(message.get("body", b""))
                if self.read > self.max_bytes:
                    await self._refuse()
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                return  # the client already has its 413
            if message["type"] == "http.response.start":
                self.started = True
            await self.downstream_send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self) -> None:
        self.refused = True
        if not self.started:
            await send_json(self.downstream_send, TOO_LARGE.status, TOO_LARGE.body())


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
