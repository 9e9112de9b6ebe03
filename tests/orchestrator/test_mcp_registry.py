"""Reaching a connected agent: registry, notifications, sampling (contract §5, issue 3)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp_types import CreateMessageRequestParams, CreateMessageResult, LoggingMessageNotificationParams, TextContent

from orchestrator import agent_registry
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import agent_token, bearer, sse_session, streamable_session

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def connected(agent_id: str) -> Callable[[], Awaitable[bool]]:
    return lambda: agent_registry.is_agent_connected(agent_id)


def disconnected(agent_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await agent_registry.is_agent_connected(agent_id)

    return check


class Inbox:
    """A client's logging_callback: collects `comms.inbound` notifications."""

    def __init__(self) -> None:
        self.events: list[LoggingMessageNotificationParams] = []
        self.arrived = asyncio.Event()

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.events.append(params)
        self.arrived.set()


def answering(text: str) -> Callable[[Any, CreateMessageRequestParams], Awaitable[CreateMessageResult]]:
    async def sampling_callback(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        prompt = params.messages[-1].content
        said = getattr(prompt, "text", "")
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=f"{text} ({said})"), model="test-model"
        )

    return sampling_callback


async def test_notify_agent_reaches_a_connected_sse_client_as_a_log_notification(
    asgi_server: LiveServer, make_agent
) -> None:
    token = await agent_token(make_agent)
    inbox = Inbox()
    event = {"id": "msg_1", "agentId": "agent-a", "channel": "sms", "kind": "message", "body": "Tom & cat"}
    async with sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=inbox):
        await eventually(connected("agent-a"))
        assert await agent_registry.notify_agent("agent-a", event) is True
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert inbox.events[0].logger == "comms.inbound"
    assert inbox.events[0].level == "info"
    assert inbox.events[0].data == event


async def test_notify_agent_reaches_a_streamable_http_client_holding_its_get_stream(
    asgi_server: LiveServer, make_agent
) -> None:
    token = await agent_token(make_agent)
    inbox = Inbox()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token), logging_callback=inbox):
        await eventually(connected("agent-a"))
        assert await agent_registry.notify_agent("agent-a", {"id": "msg_2"}) is True
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert inbox.events[0].data == {"id": "msg_2"}


async def test_notify_agent_answers_false_quickly_when_the_agent_is_not_connected(asgi_server: LiveServer) -> None:
    started = time.monotonic()
    assert await agent_registry.notify_agent("nobody", {"id": "x"}) is False
    assert await agent_registry.is_agent_connected("nobody") is False
    with pytest.raises(agent_registry.AgentNotConnected):
        await agent_registry.sample_agent("nobody", [{"role": "user", "content": "hi"}], timeout=5)
    assert time.monotonic() - started < 1


async def test_sample_agent_returns_the_clients_sampling_answer(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with sse_session(f"{asgi_server.url}/sse?token={token}", sampling_callback=answering("Sure")):
        await eventually(connected("agent-a"))
        text = await agent_registry.sample_agent(
            "agent-a", [{"role": "user", "content": "Can you call back?"}], timeout=5, system_prompt="Be brief."
        )
    assert text == "Sure (Can you call back?)"


async def test_sample_agent_works_over_streamable_http(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with streamable_session(
        f"{asgi_server.url}/mcp", headers=bearer(token), sampling_callback=answering("Yes")
    ):
        await eventually(connected("agent-a"))
        text = await agent_registry.sample_agent("agent-a", [{"role": "user", "content": "hi"}], timeout=5)
    assert text == "Yes (hi)"


async def test_sample_agent_says_so_when_the_client_cannot_sample(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    async with sse_session(f"{asgi_server.url}/sse?token={token}"):
        await eventually(connected("agent-a"))
        with pytest.raises(agent_registry.SamplingNotSupported):
            await agent_registry.sample_agent("agent-a", [{"role": "user", "content": "hi"}], timeout=5)


async def test_sample_agent_times_out_when_the_client_does_not_answer(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)

    async def never(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    async with sse_session(f"{asgi_server.url}/sse?token={token}", sampling_callback=never) as session:
        await eventually(connected("agent-a"))
        with pytest.raises(asyncio.TimeoutError):
            await agent_registry.sample_agent("agent-a", [{"role": "user", "content": "hi"}], timeout=0.3)
        # Let the client take in the server's cancellation before it closes (an SDK client race).
        await session.send_ping()
        assert await agent_registry.is_agent_connected("agent-a")


class HeldSession:
    """A client session held open in its own task, so sessions can close in any order."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        self.opener = opener
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._hold())

    async def _hold(self) -> None:
        async with self.opener():
            self.ready.set()
            await self.stop.wait()

    async def __aenter__(self) -> HeldSession:
        await asyncio.wait_for(self.ready.wait(), timeout=10)
        return self

    async def close(self, *, abruptly: bool = False) -> None:
        if abruptly:
            self.task.cancel()
        else:
            self.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def __aexit__(self, *exc: object) -> None:
        if not self.task.done():
            await self.close()


async def test_the_newest_session_wins_and_closing_an_older_one_keeps_it(asgi_server: LiveServer, make_agent) -> None:
    token = await agent_token(make_agent)
    url = f"{asgi_server.url}/sse?token={token}"
    old_inbox, new_inbox = Inbox(), Inbox()
    async with HeldSession(lambda: sse_session(url, logging_callback=old_inbox)) as old:
        await eventually(connected("agent-a"))
        first = agent_registry.local_session("agent-a")
        async with HeldSession(lambda: sse_session(url, logging_callback=new_inbox)):
            await eventually(lambda: _registered_other_than("agent-a", first))
            newest = agent_registry.local_session("agent-a")
            await old.close()
            await asyncio.sleep(0.2)
            assert agent_registry.local_session("agent-a") is newest
            assert await agent_registry.notify_agent("agent-a", {"id": "to-newest"}) is True
            await asyncio.wait_for(new_inbox.arrived.wait(), timeout=5)
    assert [event.data for event in new_inbox.events] == [{"id": "to-newest"}]
    assert old_inbox.events == []
    await eventually(disconnected("agent-a"))


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_a_dead_client_is_noticed(asgi_server: LiveServer, make_agent, transport: str) -> None:
    token = await agent_token(make_agent)

    def opener() -> Any:
        if transport == "sse":
            return sse_session(f"{asgi_server.url}/sse?token={token}")
        return streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token))

    held = HeldSession(opener)
    async with held:
        await eventually(connected("agent-a"))
        await held.close(abruptly=True)
        await eventually(disconnected("agent-a"))
    assert await agent_registry.notify_agent("agent-a", {"id": "late"}) is False


@pytest.mark.parametrize("transport", ["sse", "streamable"])
async def test_connect_listeners_hear_of_each_registered_agent_and_can_push_at_once(
    asgi_server: LiveServer, make_agent, transport: str
) -> None:
    # A listener pushing the moment the agent registers is how waiting messages go out on connect:
    # over Streamable HTTP that push must find the GET stream already in place, or it is lost.
    token = await agent_token(make_agent)
    heard: list[str] = []
    pushed: list[bool] = []

    async def listener(agent_id: str) -> None:
        heard.append(agent_id)
        pushed.append(await agent_registry.notify_agent(agent_id, {"id": "was-waiting"}))

    inbox = Inbox()
    agent_registry.add_connect_listener(listener)
    try:
        if transport == "sse":
            client = sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=inbox)
        else:
            client = streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token), logging_callback=inbox)
        async with client:
            await asyncio.wait_for(inbox.arrived.wait(), timeout=5)

            async def push_returned() -> bool:
                # notify_agent returns once the push is sent and its token checked again (revocation).
                return bool(pushed)

            await eventually(push_returned)
    finally:
        agent_registry.remove_connect_listener(listener)
    assert heard == ["agent-a"]
    assert pushed == [True]
    assert inbox.events[0].data == {"id": "was-waiting"}


async def _registered_other_than(agent_id: str, session: agent_registry.LiveSession | None) -> bool:
    current = agent_registry.local_session(agent_id)
    return current is not None and current is not session


async def test_a_streamable_http_agent_is_reachable_the_moment_it_reads_as_connected(
    asgi_server: LiveServer, make_agent
) -> None:
    # Nothing may read as connected before the GET stream can carry a push: a message pushed into
    # the gap would be marked delivered and never arrive.
    token = await agent_token(make_agent)
    inbox = Inbox()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token), logging_callback=inbox):
        while agent_registry.local_session("agent-a") is None:
            await asyncio.sleep(0)
        assert await agent_registry.notify_agent("agent-a", {"id": "first-moment"}) is True
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert inbox.events[0].data == {"id": "first-moment"}
