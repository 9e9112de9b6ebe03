"""Two server processes sharing agent sessions through Redis (issue 3: reaching an agent from anywhere).

Runs when REDIS_URL is set (CI's PostgreSQL + Redis pass); the second process is uvicorn in a
subprocess on the same database and Redis. This test process plays the other server process.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrator import agent_registry
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import agent_token, sse_session
from tests.orchestrator.test_mcp_registry import HeldSession, Inbox, answering, connected, eventually

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


async def test_a_sample_request_issued_in_one_process_reaches_the_agent_connected_to_another(
    second_asgi_server: LiveServer, make_agent
) -> None:
    token = await agent_token(make_agent)
    inbox = Inbox()
    url = f"{second_asgi_server.url}/sse?token={token}"
    async with sse_session(url, sampling_callback=answering("From B"), logging_callback=inbox):
        await eventually(connected("agent-a"), timeout=10)
        assert agent_registry.local_session("agent-a") is None
        # REST views ask synchronously (channel-status); they see the other process's session too.
        assert await asyncio.to_thread(agent_registry.is_agent_connected_sync, "agent-a") is True
        text = await agent_registry.sample_agent("agent-a", [{"role": "user", "content": "hello"}], timeout=5)
        pushed = await agent_registry.notify_agent("agent-a", {"id": "msg_remote"})
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert text == "From B (hello)"
    assert pushed is True
    assert inbox.events[0].logger == "comms.inbound"
    assert inbox.events[0].data == {"id": "msg_remote"}


async def test_a_remote_agent_that_disconnects_reads_as_not_connected_quickly(
    second_asgi_server: LiveServer, make_agent
) -> None:
    token = await agent_token(make_agent)
    async with sse_session(f"{second_asgi_server.url}/sse?token={token}"):
        await eventually(connected("agent-a"), timeout=10)
    started = time.monotonic()
    await eventually(lambda: _not_connected("agent-a"))
    with pytest.raises(agent_registry.AgentNotConnected):
        await agent_registry.sample_agent("agent-a", [{"role": "user", "content": "hi"}], timeout=5)
    assert time.monotonic() - started < 3


async def test_the_newest_session_wins_across_processes(
    asgi_server: LiveServer, second_asgi_server: LiveServer, make_agent
) -> None:
    token = await agent_token(make_agent)
    remote_inbox, local_inbox = Inbox(), Inbox()
    remote = HeldSession(lambda: sse_session(f"{second_asgi_server.url}/sse?token={token}", logging_callback=remote_inbox))
    async with remote:
        await eventually(connected("agent-a"), timeout=10)
        async with sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=local_inbox):
            await eventually(_local("agent-a"))
            # The older session lives in the other process; closing it must not unregister ours.
            await remote.close()
            await asyncio.sleep(0.3)
            assert await agent_registry.notify_agent("agent-a", {"id": "newest"}) is True
            await asyncio.wait_for(local_inbox.arrived.wait(), timeout=5)
            assert await agent_registry.is_agent_connected("agent-a")
    assert [event.data for event in local_inbox.events] == [{"id": "newest"}]
    assert remote_inbox.events == []


def _local(agent_id: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return agent_registry.local_session(agent_id) is not None

    return check


async def _not_connected(agent_id: str) -> bool:
    return not await agent_registry.is_agent_connected(agent_id)


async def test_revoking_a_token_in_one_process_closes_its_sessions_in_every_process(
    asgi_server: LiveServer, second_asgi_server: LiveServer, make_agent
) -> None:
    """Issue 14, item 1: the end request travels through the channel layer."""
    from asgiref.sync import sync_to_async

    from agents.models import AgentToken
    from agents.services import token_revoke
    from tests.orchestrator.test_mcp_session_revocation import raw_sse

    token = await agent_token(make_agent)
    other = await agent_token(make_agent, "agent-b")
    async with raw_sse(f"{second_asgi_server.url}/sse?token={token}") as (_, remote_ended), \
            raw_sse(f"{asgi_server.url}/sse?token={token}") as (_, local_ended), \
            raw_sse(f"{second_asgi_server.url}/sse?token={other}") as (_, bystander_ended):
        token_id = await sync_to_async(lambda: AgentToken.objects.get(agent_id="agent-a").pk)()
        await sync_to_async(token_revoke)(token_id=token_id, kind="agent")
        await asyncio.wait_for(asyncio.gather(remote_ended, local_ended), timeout=10)
        await asyncio.sleep(0.3)
        assert not bystander_ended.done()


async def test_a_remote_session_whose_token_was_revoked_gets_no_push_that_counts(
    second_asgi_server: LiveServer, make_agent
) -> None:
    from asgiref.sync import sync_to_async

    from agents.models import AgentToken

    token = await agent_token(make_agent)
    inbox = Inbox()
    async with sse_session(f"{second_asgi_server.url}/sse?token={token}", logging_callback=inbox):
        await eventually(connected("agent-a"), timeout=10)
        # Revoked in the database only: the end request has not reached the other process yet.
        await sync_to_async(AgentToken.objects.filter(agent_id="agent-a").update)(revoked_at="2026-01-01T00:00:00Z")
        assert await agent_registry.notify_agent("agent-a", {"id": "too-late"}) is False
