"""MCP transports mounted in the ASGI application (contract §5). Filled in by the MCP server work."""

from __future__ import annotations

from typing import Any


def mcp_http_mounts() -> dict[str, Any]:
    return {}
