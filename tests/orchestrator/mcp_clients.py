"""Helpers for MCP tests: the SDK's real clients connected to the live server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from asgiref.sync import sync_to_async
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


@contextlib.asynccontextmanager
async def sse_session(
    url: str, *, headers: dict[str, str] | None = None, **session_kwargs: Any
) -> AsyncIterator[ClientSession]:
    async with sse_client(url, headers=headers, timeout=10) as (read, write):
        async with ClientSession(read, write, **session_kwargs) as session:
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def streamable_session(
    url: str, *, headers: dict[str, str] | None = None, **session_kwargs: Any
) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(10, read=60)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, **session_kwargs) as session:
                await session.initialize()
                yield session


async def agent_token(make_agent: Any, agent_id: str = "agent-a", **kwargs: Any) -> str:
    """Create an agent from an async test (the ORM is synchronous)."""
    _, token = await sync_to_async(make_agent)(agent_id, **kwargs)
    return str(token)


async def org_token(make_org: Any, name: str = "Acme") -> tuple[Any, str]:
    return await sync_to_async(make_org)(name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
