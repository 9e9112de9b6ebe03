"""HTTP path mounts (MCP transports) and WebSocket routes of the ASGI application."""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.typing import ASGIApplication

Scope = dict[str, Any]

logger = logging.getLogger(__name__)


class PathDispatcher:
    """Send exact paths (and their trailing-slash twins) to mounted ASGI apps, paths under a prefix to
    that prefix's app (with the prefix as its root_path), the rest to Django."""

    def __init__(self, *, mounts: dict[str, Any], default: Any, prefixes: dict[str, Any] | None = None) -> None:
        self.mounts = dict(mounts)
        for path, app in list(mounts.items()):
            self.mounts.setdefault(path.rstrip("/") + "/", app)
        self.prefixes = {"/" + prefix.strip("/") + "/": app for prefix, app in (prefixes or {}).items()}
        self.default = default

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        for prefix, prefixed_app in self.prefixes.items():
            if path.startswith(prefix):
                await prefixed_app({**scope, "root_path": scope.get("root_path", "") + prefix[:-1]}, receive, send)
                return
        # The 1 MB body cap is enforced in front of this dispatcher (orchestrator.body_limit).
        await self.mounts.get(path, self.default)(scope, receive, send)


async def send_json(send: Any, status: int, body: dict[str, Any]) -> None:
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


def static_prefixes() -> dict[str, Any]:
    """`STATIC_URL` served from `STATIC_ROOT` (filled by `manage.py collectstatic`) when not DEBUG.

    Daphne and uvicorn serve no files, so without this a production server's admin comes up
    unstyled unless a proxy serves them. With DEBUG, Django's staticfiles view serves the apps'
    files directly (orchestrator/urls.py) and no collectstatic is needed. Starlette (the MCP SDK's
    web layer) does the file serving: ETag and Last-Modified with 304s, HEAD, ranges, and no path
    outside the directory.
    """
    from django.conf import settings

    if settings.DEBUG or not settings.SERVE_STATIC_FILES:
        return {}
    from starlette.middleware.exceptions import ExceptionMiddleware
    from starlette.staticfiles import StaticFiles

    if not settings.STATIC_ROOT.is_dir():
        logger.warning(
            "SERVE_STATIC_FILES is on but %s does not exist: run `manage.py collectstatic --no-input` "
            "or the admin pages come up unstyled.", settings.STATIC_ROOT
        )
    # StaticFiles answers 404/405 by raising HTTPException, which only a Starlette app turns into a response.
    return {settings.STATIC_URL: ExceptionMiddleware(StaticFiles(directory=settings.STATIC_ROOT, check_dir=False))}


def websocket_urlpatterns() -> list[Any]:
    patterns: list[Any] = []
    try:
        from voice.routing import websocket_urlpatterns as voice_patterns
    except ImportError:
        voice_patterns = []
    patterns.extend(voice_patterns)
    return patterns


__all__ = ["ASGIApplication", "PathDispatcher", "http_mounts", "static_prefixes", "websocket_urlpatterns"]


class RefuseUnknownSocket:
    """The last WebSocket route: an upgrade on any path no route serves is refused (HTTP 403) with one
    log line. Channels' URLRouter would raise instead, and the server log a traceback for every probe."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] == "websocket.connect":
            logger.warning("Refused a WebSocket upgrade on %s: no such route", scope.get("path", ""))
            await send({"type": "websocket.close", "code": 1008})


def websocket_routes() -> list[Any]:
    """The WebSocket routes, then the refusal of everything else."""
    from django.urls import re_path

    # Channels routes to ASGI apps; Django's stubs type re_path for views only.
    refuse: Any = RefuseUnknownSocket()
    return [*websocket_urlpatterns(), re_path(r"", refuse)]
