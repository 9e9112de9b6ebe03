"""A live call whose socket and agent live in two server processes sharing Redis (issue 12 item 3).

Runs when REDIS_URL is set (CI's PostgreSQL + Redis pass), like tests/orchestrator/test_mcp_redis.py:
the second process is uvicorn in a subprocess; this test process holds the voice socket.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from orchestrator import agent_registry
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import sse_session
from tests.orchestrator.test_mcp_registry import connected, eventually
from tests.voice.relay_client import amake_call, relay, socket_url
from tests.voice.relay_client import eventually as eventually_equal
from tests.voice.test_live_call import Prompts, Sampler, aturns, call_tool, turn_count

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


@pytest.fixture
def agent(make_agent):
    _agent, token = make_agent("agent-a", display_name="Agent A")
    return token


async def test_a_sampling_agent_connected_to_another_process_answers_the_caller(
    asgi_server: LiveServer, second_asgi_server: LiveServer, agent: str
) -> None:
    sampler = Sampler("Answered from process B.")
    call = await amake_call("agent-a")
    async with sse_session(f"{second_asgi_server.url}/sse?token={agent}", sampling_callback=sampler):
        await eventually(connected("agent-a"), timeout=10)
        assert agent_registry.local_session("agent-a") is None
        async with relay(socket_url(asgi_server.url, "agent-a", call.session_id), call) as caller:
            await caller.setup()
            await caller.say("Who is this?")
            assert await caller.reply() == "Answered from process B."
    assert sampler.conversation() == [("user", "Who is this?")]
    await eventually_equal(lambda: turn_count(call), 1)
    assert (await aturns(call))[0].answered_by == "agent_sampling"


async def test_a_voice_reply_made_in_another_process_reaches_the_callers_socket(
    asgi_server: LiveServer, second_asgi_server: LiveServer, agent: str
) -> None:
    prompts = Prompts()
    call = await amake_call("agent-a")
    async with sse_session(f"{second_asgi_server.url}/sse?token={agent}", logging_callback=prompts) as session:
        await eventually(connected("agent-a"), timeout=10)
        async with relay(socket_url(asgi_server.url, "agent-a", call.session_id), call) as caller:
            await caller.setup()
            await caller.say("Are you open today?")
            event = await prompts.next()
            assert (event["kind"], event["body"], event["callSid"]) == ("voice_prompt", "Are you open today?", call.call_sid)
            # The tool runs in process B; the socket is here: the reply crosses through the channel layer.
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="Yes, ", last=False)
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="until six.")
            assert [await caller.frame(), await caller.frame()] == [
                {"type": "text", "token": "Yes, ", "last": False},
                {"type": "text", "token": "until six.", "last": True},
            ]
            await caller.say("Bye.")
            await prompts.next()
            await call_tool(session, "comms_end_call", callSid=call.call_sid, text="Goodbye!")
            assert await caller.frame() == {"type": "text", "token": "Goodbye!", "last": True}
            assert (await caller.frame())["type"] == "end"
    await eventually_equal(lambda: turn_count(call), 2)
    assert (await aturns(call))[0].reply_text == "Yes, until six."


async def test_the_socket_may_live_in_the_other_process_too(
    asgi_server: LiveServer, second_asgi_server: LiveServer, agent: str
) -> None:
    prompts = Prompts()
    call = await amake_call("agent-a")
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", logging_callback=prompts) as session:
        await eventually(connected("agent-a"))
        async with relay(socket_url(second_asgi_server.url, "agent-a", call.session_id), call) as caller:
            await caller.setup()
            await caller.say("Hello from the far socket.")
            assert (await prompts.next())["body"] == "Hello from the far socket."
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="Heard you.")
            assert await caller.reply() == "Heard you."
    status = await sync_to_async(lambda: type(call).objects.get(pk=call.pk).status)()
    assert status == "in-progress"
