"""HTTP path mounts (MCP transports) and WebSocket routes of the ASGI application."""

from __future__ import annotations

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
        await app(scope, receive, send)


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
