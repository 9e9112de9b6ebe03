"""HTTP path mounts (MCP transports) and WebSocket routes of the ASGI application."""

from __future__ import annotations

import json
from typing import Any

from asgiref.typing import ASGIApplication

Scope = dict[str, Any]


class PathDispatcher:
    """Send exact paths (and their trailing-slash twins) to mounted ASGI apps, the rest to Django."""

    def __init__(self, *, mounts: dict[str, Any], default: Any) -> None:
        self.mounts = dict(mounts)
        for path, app in list(mounts.items()):
            self.mounts.setdefault(path.rstrip("/") + "/", app)
        self.default = default

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        app = self.mounts.get(scope.get("path", ""), self.default)
        if app is not self.default and _declared_length(scope) > MAX_BODY_BYTES:
            # Django's middleware enforces the cap for its own views; mounted apps get it here.
            await _send_json(send, 413, {"error": "Request bodies are limited to 1 MB.", "code": "payload_too_large"})
            return
        await app(scope, receive, send)


MAX_BODY_BYTES = 1024 * 1024


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def http_mounts() -> dict[str, Any]:
    """Paths served by the MCP SDK's ASGI apps (contract §5)."""
    from orchestrator.mcp_transport import mcp_http_mounts

    return mcp_http_mounts()


def websocket_urlpatterns() -> list[Any]:
    patterns: list[Any] = []
    try:
        from voice.routing import websocket_urlpatterns as voice_patterns
    except ImportError:
        voice_patterns = []
    patterns.extend(voice_patterns)
    return patterns


__all__ = ["ASGIApplication", "PathDispatcher", "http_mounts", "websocket_urlpatterns"]
