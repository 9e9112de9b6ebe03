"""How an agent connects to this server: MCP client configs and a curl check, built from PUBLIC_BASE_URL.

Used by `manage.py connect_info` and `load_demo_data`; the integration guide can render the same text.
"""

from __future__ import annotations

import json

TOKEN_PLACEHOLDER = "<agent token>"


def sse_url(base_url: str, token: str | None = None) -> str:
    return f"{base_url.rstrip('/')}/sse?token={token or TOKEN_PLACEHOLDER}"


def streamable_http_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/mcp"


def sse_client_config(base_url: str, token: str | None = None) -> dict[str, object]:
    """Claude Desktop style: it speaks stdio, so `mcp-remote` bridges to our SSE endpoint."""
    return {"mcpServers": {"comms": {"command": "npx", "args": ["-y", "mcp-remote", sse_url(base_url, token)]}}}


def streamable_http_client_config(base_url: str, token: str | None = None) -> dict[str, object]:
    """For clients that speak Streamable HTTP and can send a header (Claude Code, Cursor, the MCP SDKs)."""
    return {
        "mcpServers": {
            "comms": {
                "type": "http",
                "url": streamable_http_url(base_url),
                "headers": {"Authorization": f"Bearer {token or TOKEN_PLACEHOLDER}"},
            }
        }
    }


def connect_instructions(*, base_url: str, token: str | None = None) -> str:
    """Plain text a person can follow (and paste from) to connect an MCP client."""
    shown = token or TOKEN_PLACEHOLDER
    base = base_url.rstrip("/")
    lines = [
        f"How to connect an agent to {base}",
        "",
        "MCP over SSE (HTTP+SSE transport):",
        f"  {sse_url(base, token)}",
        "",
        "Claude Desktop (claude_desktop_config.json), via mcp-remote:",
        _indent(json.dumps(sse_client_config(base, token), indent=2)),
        "",
        "MCP Streamable HTTP (token in a header):",
        _indent(json.dumps(streamable_http_client_config(base, token), indent=2)),
        "",
        "Check the server (and, with a token, who you are) with curl:",
        f'  curl -H "Authorization: Bearer {shown}" {base}/api/v1/health',
    ]
    if token is None:
        lines += [
            "",
            "Replace <agent token> with a token printed by load_demo_data or create_agent,",
            "or issue a fresh one: .venv/bin/python manage.py issue_token --agent <agentId> --revoke-existing",
        ]
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
