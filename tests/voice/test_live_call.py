"""A whole live call: ConversationRelay over a real WebSocket, the agent over real MCP clients, the
answering machine when no agent answers (issue 12 items 2-4, 6)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from mcp_types import CreateMessageRequestParams, CreateMessageResult, LoggingMessageNotificationParams, TextContent
from prometheus_client import REGISTRY

from channels_app.models import Message
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import bearer, sse_session
from tests.orchestrator.test_mcp_registry import connected, eventually
from tests.voice.relay_client import CALLER, amake_call, relay, socket_url
from tests.voice.relay_client import eventually as eventually_equal
from voice.models import Call, CallTurn

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


class Sampler:
    """A sampling client that answers at once, and remembers what it was asked."""

    def __init__(self, answer: str = "We open at nine.") -> None:
        self.answer = answer
        self.requests: list[CreateMessageRequestParams] = []

    async def __call__(self, context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        self.requests.append(params)
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text=self.answer), model="test")

    def conversation(self, index: int = -1) -> list[tuple[str, str]]:
        return [(m.role, getattr(m.content, "text", "")) for m in self.requests[index].messages]


class Prompts:
    """A client's logging_callback: the inbound events it was pushed, to await one by one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        await self.queue.put(dict(params.data))

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), timeout=timeout)


def turns(call: Call) -> list[CallTurn]:
    return list(CallTurn.objects.filter(call=call).order_by("sequence"))


async def aturns(call: Call) -> list[CallTurn]:
    return await sync_to_async(turns)(call)


async def turn_count(call: Call) -> int:
    return len(await aturns(call))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def call_tool(session: Any, name: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, result.structured_content
    return dict(result.structured_content)


@pytest.fixture
def agent(make_agent):
    agent, token = make_agent("agent-a", display_name="Agent A")
    return token


async def start(server: LiveServer, **call_fields: Any) -> tuple[Call, str]:
    call = await amake_call("agent-a", **call_fields)
    return call, socket_url(server.url, "agent-a", call.session_id)


# --- the answering machine ----------------------------------------------------------------------


async def test_with_no_agent_connected_the_answering_machine_takes_a_message_and_leaves_a_voicemail(
    asgi_server: LiveServer, agent: str
) -> None:
    call, url = await start(asgi_server)
    async with relay(url, call) as caller:
        await caller.setup()
        await caller.say("Hi, is Agent A there?")
        assert "Agent A can't take your call right now" in await caller.reply()
        await caller.say("Tell them the parcel for order 1234 arrived damaged.")
        assert "called back" in await caller.reply()
        await caller.say("Call me tomorrow morning on this number.")
        assert "order 1234" in await caller.reply()
        await caller.say("Yes, that's right.")
        assert "Goodbye" in await caller.reply()
        end = await caller.frame()
        assert end["type"] == "end"
        assert json.loads(end["handoffData"]) == {"reason": "voicemail_taken", "callSid": call.call_sid}
    await eventually_equal(lambda: sync_to_async(Message.objects.filter(kind="voicemail").count)(), 1)
    voicemail = await sync_to_async(Message.objects.get)(kind="voicemail")
    assert (voicemail.channel, voicemail.direction, voicemail.call_sid) == ("voice", "inbound", call.call_sid)
    assert voicemail.from_address == CALLER
    assert voicemail.body.startswith(
        "Message: Tell them the parcel for order 1234 arrived damaged.\nCall back: Call me tomorrow morning on this number."
    )
    # Delivered like any inbound message: it waits for the agent, fetched through waiting-messages.
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=bearer(agent)) as http:
        waiting = (await http.get("/api/v1/waiting-messages")).json()
    assert [(m["kind"], m["channel"], m["callSid"], m["from"]) for m in waiting["messages"]] == [
        ("voicemail", "voice", call.call_sid, CALLER)
    ]
    assert "Message: Tell them the parcel" in waiting["messages"][0]["body"]
    await eventually_equal(lambda: turn_count(call), 4)
    recorded = await aturns(call)
    assert {t.answered_by for t in recorded} == {"answering_machine"}
    assert recorded[0].caller_text == "Hi, is Agent A there?"


async def test_a_caller_who_hangs_up_mid_message_still_leaves_a_voicemail(asgi_server: LiveServer, agent: str) -> None:
    call, url = await start(asgi_server)
    async with relay(url, call) as caller:
        await caller.setup()
        await caller.say("Hello?")
        await caller.reply()
        await caller.say("It's Dana, please call me back.")
        await caller.reply()
    await eventually_equal(lambda: sync_to_async(Message.objects.filter(kind="voicemail").count)(), 1)
    voicemail = await sync_to_async(Message.objects.get)(kind="voicemail")
    assert voicemail.body.startswith("Message: It's Dana, please call me back.\nCall back: (not given)")


async def test_a_caller_who_hangs_up_after_the_apology_leaves_what_they_said_first(
    asgi_server: LiveServer, agent: str
) -> None:
    call, url = await start(asgi_server)
    async with relay(url, call) as caller:
        await caller.setup()
        await caller.say("Hi, this is Bob, call me at 415 555 0188.")
        assert "can't take your call" in await caller.reply()
    await eventually_equal(lambda: sync_to_async(Message.objects.filter(kind="voicemail").count)(), 1)
    voicemail = await sync_to_async(Message.objects.get)(kind="voicemail")
    assert voicemail.body.startswith("Message: Hi, this is Bob, call me at 415 555 0188.\nCall back: (not given)")


async def test_a_caller_who_says_nothing_leaves_no_voicemail(asgi_server: LiveServer, agent: str) -> None:
    call, url = await start(asgi_server)
    async with relay(url, call) as caller:
        await caller.setup()
        await caller.send({"type": "error", "description": "caller hung up"})
    # The close writes the call's transcript (the error frame); only then is it settled that no voicemail came.
    await eventually_equal(lambda: sync_to_async(lambda: len(Call.objects.get(pk=call.pk).transcript))(), 1)
    assert await sync_to_async(Message.objects.filter(kind="voicemail").count)() == 0


async def test_a_setup_the_database_refuses_for_a_moment_is_tried_again_and_the_call_goes_on(
    asgi_server: LiveServer, agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from voice import live

    bind, refusals = live.call_bind, []

    def locked_once(**kwargs: Any) -> bool:
        if not refusals:
            refusals.append(kwargs["call_sid"])
            raise OperationalError("database table is locked: voice_call")
        return bind(**kwargs)

    monkeypatch.setattr(live, "call_bind", locked_once)
    call, url = await start(asgi_server)
    async with relay(url, call) as caller:
        await caller.setup()
        await caller.say("Hi, is Agent A there?")
        assert "Agent A can't take your call right now" in await caller.reply()
    assert refusals == [call.call_sid]
    await eventually_equal(lambda: sync_to_async(lambda: Call.objects.get(pk=call.pk).status)(), "in-progress")


async def test_a_frame_that_fails_loses_nothing_of_the_call(
    asgi_server: LiveServer, agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while handling one frame is logged; the call goes on, and when it ends its voicemail, its
    transcript and the live-sessions gauge are settled as for any call."""
    from voice.conversation import Conversation

    dtmf = Conversation.dtmf

    async def broken(self: Conversation, digit: str) -> None:
        raise RuntimeError("a bug in handling keypad digits")

    monkeypatch.setattr(Conversation, "dtmf", broken)
    sessions_before = metric("mcp_active_voice_sessions")
    call, url = await start(asgi_server)
    async with relay(url, call) as caller:
        await caller.setup()
        await caller.send({"type": "dtmf", "digit": "5"})
        await caller.say("Hi, this is Bob, call me at 415 555 0188.")
        assert "can't take your call" in await caller.reply()
        assert metric("mcp_active_voice_sessions") == sessions_before + 1
    monkeypatch.setattr(Conversation, "dtmf", dtmf)
    await eventually_equal(lambda: sync_to_async(Message.objects.filter(kind="voicemail").count)(), 1)
    await eventually_equal(lambda: asyncio.sleep(0, metric("mcp_active_voice_sessions")), sessions_before)

    def caller_said() -> bool:
        transcript = Call.objects.get(pk=call.pk).transcript
        return ("caller", "Hi, this is Bob, call me at 415 555 0188.") in [(e["speaker"], e["text"]) for e in transcript]

    # The transcript is written after the voicemail, by the same writer, so it is waited for too.
    await eventually_equal(sync_to_async(caller_said), True)


async def test_a_setup_that_cannot_be_checked_closes_the_socket_and_leaves_no_live_session(
    asgi_server: LiveServer, agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from websockets.exceptions import ConnectionClosed

    from voice import live

    def broken(**kwargs: Any) -> bool:
        raise RuntimeError("a bug in binding the call")

    monkeypatch.setattr(live, "call_bind", broken)
    sessions_before = metric("mcp_active_voice_sessions")
    call, url = await start(asgi_server)
    async with relay(url, call) as caller:
        await caller.setup()
        with pytest.raises(ConnectionClosed) as closed:
            await caller.frame()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    await eventually_equal(lambda: asyncio.sleep(0, metric("mcp_active_voice_sessions")), sessions_before)


# --- a sampling agent ---------------------------------------------------------------------------


async def test_a_sampling_agent_answers_the_caller_turn_after_turn(asgi_server: LiveServer, agent: str) -> None:
    sampler = Sampler()
    call, url = await start(asgi_server)
    turns_before = metric("mcp_voice_turn_seconds_count")
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", sampling_callback=sampler):
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            assert metric("mcp_active_voice_sessions") == 1
            await caller.say("When do you open?")
            assert await caller.reply() == "We open at nine."
            sampler.answer = "Until six."
            await caller.say("And close?")
            assert await caller.reply() == "Until six."
    assert sampler.conversation() == [
        ("user", "When do you open?"), ("assistant", "We open at nine."), ("user", "And close?")
    ]
    assert "live phone call" in (sampler.requests[0].system_prompt or "")
    assert call.call_sid in (sampler.requests[0].system_prompt or "")
    await eventually_equal(lambda: turn_count(call), 2)
    first, second = await aturns(call)
    assert (first.caller_text, first.reply_text, first.answered_by) == ("When do you open?", "We open at nine.", "agent_sampling")
    assert first.first_reply_at is not None and first.first_reply_at >= first.prompt_at
    assert second.reply_text == "Until six."
    assert metric("mcp_voice_turn_seconds_count") == turns_before + 2
    await eventually_equal(lambda: asyncio.sleep(0, metric("mcp_active_voice_sessions")), 0)
    transcript = (await sync_to_async(Call.objects.get)(pk=call.pk)).transcript
    assert [(e["speaker"], e["text"]) for e in transcript] == [
        ("caller", "When do you open?"), ("agent", "We open at nine."), ("caller", "And close?"), ("agent", "Until six.")
    ]


async def test_the_metrics_endpoint_lists_voice_sessions_and_turn_seconds(asgi_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=asgi_server.url) as http:
        text = (await http.get("/metrics")).text
    assert "mcp_active_voice_sessions" in text
    assert "mcp_voice_turn_seconds_bucket" in text


async def test_an_interruption_records_what_the_caller_heard_and_the_agent_learns_it(
    asgi_server: LiveServer, agent: str
) -> None:
    sampler = Sampler("We open at nine, and on Sundays at ten.")
    call, url = await start(asgi_server)
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", sampling_callback=sampler):
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            await caller.say("When do you open?")
            await caller.reply()
            await caller.send({"type": "interrupt", "utteranceUntilInterrupt": "We open at nine", "durationUntilInterruptMs": 900})
            await caller.say("Sorry, on Sundays?")
            await caller.reply()
    assert sampler.conversation() == [
        ("user", "When do you open?"), ("assistant", "We open at nine"), ("user", "Sorry, on Sundays?")
    ]
    await eventually_equal(lambda: turn_count(call), 2)
    first = (await aturns(call))[0]
    assert (first.interrupted, first.heard_text) == (True, "We open at nine")


async def test_keypad_digits_reach_the_agent_with_the_next_utterance_and_errors_are_survived(
    asgi_server: LiveServer, agent: str
) -> None:
    sampler = Sampler("Extension 5, connecting.")
    call, url = await start(asgi_server)
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", sampling_callback=sampler):
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            await caller.send({"type": "dtmf", "digit": "5"})
            await caller.send({"type": "error", "description": "Invalid message received: not json"})
            await caller.send({"type": "no-such-frame"})
            await caller.socket.send("this is not json")
            await caller.say("That one please.")
            assert await caller.reply() == "Extension 5, connecting."
    assert sampler.conversation() == [
        ("user", "[The caller pressed 5 on the keypad]"), ("user", "That one please.")
    ]
    await eventually_equal(lambda: sync_to_async(lambda: len(Call.objects.get(pk=call.pk).transcript))(), 4)
    transcript = await sync_to_async(lambda: Call.objects.get(pk=call.pk).transcript)()
    assert [(e["speaker"], e["text"]) for e in transcript] == [
        ("caller", "[pressed 5]"),
        ("error", "Invalid message received: not json"),
        ("caller", "That one please."),
        ("agent", "Extension 5, connecting."),
    ]


async def test_a_sampling_agent_that_answers_too_late_hands_the_call_to_the_answering_machine(
    asgi_server: LiveServer, agent: str, settings
) -> None:
    settings.VOICE_TURN_TIMEOUT_SECONDS = 0.3
    release = asyncio.Event()

    async def slow(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        await release.wait()
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="late"), model="test")

    call, url = await start(asgi_server)
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", sampling_callback=slow):
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            await caller.say("Anyone?")
            assert "can't take your call" in await caller.reply()
            release.set()
            await caller.say("It's about the invoice.")
            assert "called back" in await caller.reply()


# --- an agent that cannot sample: voice_prompt and comms_voice_reply -------------------------------


async def test_a_non_sampling_agent_gets_a_voice_prompt_and_streams_its_answer_with_comms_voice_reply(
    asgi_server: LiveServer, agent: str
) -> None:
    prompts = Prompts()
    call, url = await start(asgi_server)
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", logging_callback=prompts) as session:
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            await caller.say("Is my table for four still on? Tom & Jerry 🙂")
            event = await prompts.next()
            assert {k: event[k] for k in ("agentId", "channel", "kind", "direction", "from", "to", "body", "callSid")} == {
                "agentId": "agent-a", "channel": "voice", "kind": "voice_prompt", "direction": "inbound",
                "from": CALLER, "to": call.to_address, "body": "Is my table for four still on? Tom & Jerry 🙂",
                "callSid": call.call_sid,
            }
            assert event["id"].startswith("vp_") and event["createdAt"]
            assert await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="Yes, ", last=False) == {
                "success": True, "callSid": call.call_sid, "last": False
            }
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="table for four", last=False)
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text=" at seven.")
            assert [await caller.frame() for _ in range(3)] == [
                {"type": "text", "token": "Yes, ", "last": False},
                {"type": "text", "token": "table for four", "last": False},
                {"type": "text", "token": " at seven.", "last": True},
            ]
            waiting = await call_tool(session, "comms_get_waiting_messages")
    # Pushed only: a voice prompt is never stored, so it never waits.
    assert waiting["count"] == 0
    assert await sync_to_async(Message.objects.count)() == 0
    await eventually_equal(lambda: turn_count(call), 1)
    turn = (await aturns(call))[0]
    assert (turn.reply_text, turn.answered_by) == ("Yes, table for four at seven.", "agent_voice_prompt")


async def test_comms_end_call_says_goodbye_and_ends_the_relay(asgi_server: LiveServer, agent: str) -> None:
    prompts = Prompts()
    call, url = await start(asgi_server)
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", logging_callback=prompts) as session:
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            await caller.say("That's all, thanks.")
            await prompts.next()
            assert await call_tool(session, "comms_end_call", callSid=call.call_sid, text="Bye now.") == {
                "success": True, "callSid": call.call_sid, "status": "ending"
            }
            assert await caller.frame() == {"type": "text", "token": "Bye now.", "last": True}
            end = await caller.frame()
    assert end["type"] == "end"
    assert json.loads(end["handoffData"]) == {"reason": "agent_ended", "callSid": call.call_sid}


async def test_a_non_sampling_agent_that_does_not_reply_in_time_hands_over_to_the_answering_machine(
    asgi_server: LiveServer, agent: str, settings
) -> None:
    settings.VOICE_TURN_TIMEOUT_SECONDS = 0.3
    prompts = Prompts()
    call, url = await start(asgi_server)
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", logging_callback=prompts) as session:
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            await caller.say("Hello?")
            await prompts.next()
            assert "can't take your call" in await caller.reply()
            # Too late: the answering machine has the call, and the reply is not spoken.
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="Sorry, I'm here!")
            await caller.say("Please call me back.")
            assert "called back" in await caller.reply()
    assert prompts.queue.empty()


async def test_an_interruption_cancels_the_pending_turn_and_its_late_reply_is_not_spoken(
    asgi_server: LiveServer, agent: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="voice.conversation")

    def logged(text: str):  # type: ignore[no-untyped-def]
        async def count() -> int:
            return sum(text in record.getMessage() for record in caplog.records)

        return count

    prompts = Prompts()
    call, url = await start(asgi_server)
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", logging_callback=prompts) as session:
        await eventually(connected("agent-a"))
        async with relay(url, call) as caller:
            await caller.setup()
            await caller.say("Book a table.")
            await prompts.next()
            await caller.send({"type": "interrupt", "utteranceUntilInterrupt": "", "durationUntilInterruptMs": 100})
            await eventually_equal(logged("Caller interrupted"), 1)
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="For how many?")
            # The reply travels through the channel layer: wait until the call has dropped it before the
            # caller speaks again, or it could land in the next turn (replies carry no turn id).
            await eventually_equal(logged("Dropped a late reply"), 1)
            await caller.say("Actually for two.")
            second = await prompts.next()
            assert second["body"] == "Actually for two."
            await call_tool(session, "comms_voice_reply", callSid=call.call_sid, text="Two it is.")
            assert await caller.reply() == "Two it is."
    await eventually_equal(lambda: turn_count(call), 2)
    first = (await aturns(call))[0]
    assert (first.caller_text, first.reply_text, first.answered_by) == ("Book a table.", "", "nobody")


async def test_comms_voice_reply_refuses_another_agents_call_and_an_ended_call(
    asgi_server: LiveServer, agent: str, make_agent
) -> None:
    await sync_to_async(make_agent)("agent-b")
    theirs = await amake_call("agent-b", call_sid="CAtheirs00000000000000000000000001")
    ended = await amake_call("agent-a", call_sid="CAended000000000000000000000000001", status="completed")
    async with sse_session(f"{asgi_server.url}/sse?token={agent}") as session:
        for sid in (theirs.call_sid, ended.call_sid, "CAnosuchcall"):
            result = await session.call_tool("comms_voice_reply", {"callSid": sid, "text": "hi"})
            assert result.is_error and result.structured_content["code"] == "call_not_found"
        result = await session.call_tool("comms_end_call", {"callSid": theirs.call_sid})
        assert result.is_error and result.structured_content["code"] == "call_not_found"
        result = await session.call_tool("comms_voice_reply", {"callSid": ended.call_sid})
        assert result.is_error and result.structured_content["code"] == "invalid_request"


async def test_an_outbound_call_talks_to_the_callee(asgi_server: LiveServer, agent: str) -> None:
    sampler = Sampler("Hi, I'm calling about your order.")
    call, url = await start(asgi_server, direction="outbound", system_prompt="You sell bikes.")
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", sampling_callback=sampler):
        await eventually(connected("agent-a"))
        async with relay(url, call) as callee:
            await callee.setup()
            await callee.say("Hello?")
            assert await callee.reply() == "Hi, I'm calling about your order."
    assert (sampler.requests[0].system_prompt or "").startswith("You sell bikes.")
    assert CALLER in (sampler.requests[0].system_prompt or "")



async def test_a_reply_can_play_audio_and_send_keypad_digits_before_its_text(asgi_server: LiveServer, agent: str) -> None:
    prompts = Prompts()
    call, url = await start(asgi_server, direction="outbound")
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", logging_callback=prompts) as session:
        await eventually(connected("agent-a"))
        for bad in ({"digits": "1; DROP"}, {"playUrl": "http://insecure.example.com/a.mp3"}):
            result = await session.call_tool("comms_voice_reply", {"callSid": call.call_sid, "text": "", **bad})
            assert result.is_error and result.structured_content["code"] == "invalid_request"
        async with relay(url, call) as callee:
            await callee.setup()
            await callee.say("Press 1 for sales.")
            await prompts.next()
            await call_tool(
                session, "comms_voice_reply", callSid=call.call_sid, text="Connecting.",
                playUrl="https://cdn.example.com/chime.mp3", digits="1w#",
            )
            assert [await callee.frame() for _ in range(3)] == [
                {"type": "play", "source": "https://cdn.example.com/chime.mp3", "loop": 1, "preemptible": False, "interruptible": True},
                {"type": "sendDigits", "digits": "1w#"},
                {"type": "text", "token": "Connecting.", "last": True},
            ]
