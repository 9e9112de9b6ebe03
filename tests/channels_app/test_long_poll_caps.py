"""Concurrent long polls are capped per agent and per organization (issue 14, item 5): one tenant's
polls can no longer take every long-call thread and delay another organization's poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from asgiref.sync import sync_to_async

from channels_app.delivery import waiting as waiting_queue
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import agent_token, bearer
from tests.orchestrator.test_mcp_registry import eventually

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


def waiting(agent_id: str, count: int) -> Callable[[], Awaitable[bool]]:
    """Whether `count` long polls of the agent are waiting in the server (it runs in this process)."""

    async def check() -> bool:
        return len(waiting_queue._local_waiters.get(agent_id, ())) >= count

    return check


async def poll(http: httpx.AsyncClient, token: str, timeout: float) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await http.get("/api/v1/wait-for-message", params={"timeoutSeconds": timeout}, headers=bearer(token))
    return response, time.monotonic() - started


async def test_one_agent_holding_many_polls_does_not_delay_another_orgs_poll(
    asgi_server: LiveServer, make_agent, make_org, settings
) -> None:
    greedy = await agent_token(make_agent, "greedy")
    other_org, _ = await sync_to_async(make_org)("Other", "other")
    patient = await agent_token(make_agent, "patient", org=other_org)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    # A server that has been up a while: the long-call pool's threads and their database connections
    # exist already (starting 64 of them costs seconds on a loaded machine, which is not the point here).
    settings.LONG_POLLS_PER_AGENT = settings.LONG_POLLS_PER_ORG = 1000
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=30, limits=limits) as http:
        await asyncio.gather(*(poll(http, greedy, 0) for _ in range(70)))
    settings.LONG_POLLS_PER_AGENT, settings.LONG_POLLS_PER_ORG = 4, 16
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=30, limits=limits) as http:
        # More polls than the long-call pool has threads (LONG_CALL_THREADS, 64 by default).
        flood = [asyncio.ensure_future(poll(http, greedy, 12)) for _ in range(70)]
        await eventually(waiting("greedy", 4), timeout=30)
        response, took = await poll(http, patient, 1)
        results = await asyncio.gather(*flood)
    assert response.status_code == 200 and response.json()["messages"] == []
    # Without the caps it waits for a long-call thread, i.e. for the flood's 12 s polls to end.
    assert took < 6, f"the other organization's 1 s poll took {took:.1f} s"
    statuses = [r.status_code for r, _ in results]
    assert statuses.count(200) == 4 and statuses.count(429) == 66
    refused = next(r for r, _ in results if r.status_code == 429)
    body = refused.json()
    assert (body["code"], body["limitType"]) == ("rate_limited", "long_polls_per_agent")
    assert 1 <= body["retryAfter"] <= 12 and refused.headers["Retry-After"] == str(body["retryAfter"])


async def test_an_organization_has_a_cap_of_its_own(asgi_server: LiveServer, make_agent, settings) -> None:
    settings.LONG_POLLS_PER_AGENT, settings.LONG_POLLS_PER_ORG = 2, 3
    first = await agent_token(make_agent, "first")
    second = await agent_token(make_agent, "second")
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=30) as http:
        # Each token used once first, as a running agent's is: a token's first use records last_used_at,
        # and the suite's in-memory SQLite refuses concurrent readers of a table being written ("table is
        # locked", a 500; seen once in a full run) where a server's database file would wait.
        for token in (first, second):
            assert (await poll(http, token, 0))[0].status_code == 200
        # Held for 12 s: on a loaded machine the setup below can take longer than a 6 s poll lasts.
        holding = [asyncio.ensure_future(poll(http, first, 12)) for _ in range(2)]
        holding.append(asyncio.ensure_future(poll(http, second, 12)))
        await eventually(waiting("first", 2), timeout=30)
        await eventually(waiting("second", 1), timeout=30)
        refused, took = await poll(http, second, 6)
        assert refused.status_code == 429 and took < 4
        assert refused.json()["limitType"] == "long_polls_per_org"
        results = await asyncio.gather(*holding)
        assert [r.status_code for r, _ in results] == [200, 200, 200]
        # Slots come back when polls end.
        again, _ = await poll(http, second, 0)
        assert again.status_code == 200
