"""manage.py simulate_call: a whole call against a running server, signed like Twilio (issue 12 item 6)."""

from __future__ import annotations

import asyncio
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.services import AgentAddresses
from channels_app.models import Message
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.orchestrator.mcp_clients import sse_session
from tests.orchestrator.test_mcp_registry import Inbox, connected, eventually
from tests.voice.test_live_call import Sampler
from voice.models import Call

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


@pytest.fixture
def agent(make_agent, settings):
    settings.TWILIO_AUTH_TOKEN = "test-twilio-auth-token-0123456789"
    _agent, token = make_agent("agent-a", display_name="Agent A", addresses=AgentAddresses(phone="+14155550100"))
    return token


async def simulate(server: LiveServer, *says: str, **options: str) -> str:
    out = io.StringIO()
    arguments = ["simulate_call", "--agent", "agent-a", "--server", server.url]
    for said in says:
        arguments += ["--say", said]
    await asyncio.to_thread(call_command, *arguments, stdout=out, **options)
    return out.getvalue()


async def test_it_calls_the_agent_and_prints_its_answers(asgi_server: LiveServer, agent: str) -> None:
    sampler = Sampler("We open at nine.")
    inbox = Inbox()
    async with sse_session(f"{asgi_server.url}/sse?token={agent}", sampling_callback=sampler, logging_callback=inbox):
        await eventually(connected("agent-a"))
        output = await simulate(asgi_server, "When do you open?", "Thanks!")

        # The hang-up's final status reaches the connected agent as the call's outcome.
        async def outcome_arrived() -> bool:
            return any(isinstance(e.data, dict) and e.data.get("kind") == "call_outcome" for e in inbox.events)

        await eventually(outcome_arrived, timeout=30)
    lines = [line.strip() for line in output.splitlines()]
    assert lines[1] == "greeting: You are speaking with an AI assistant. Hello! How can I help you today?"
    assert lines[2:6] == ["caller: When do you open?", "agent: We open at nine.", "caller: Thanks!", "agent: We open at nine."]
    call = await asyncio.to_thread(Call.objects.get)
    assert (call.direction, call.to_address, call.from_address) == ("inbound", "+14155550100", "+15555550123")
    assert lines[0].startswith(f"call: {call.call_sid} from +15555550123 to +14155550100")


async def test_it_hangs_up_like_twilio_so_the_call_ends_and_reports_its_outcome(
    asgi_server: LiveServer, agent: str
) -> None:
    output = await simulate(asgi_server, "Hi", "Please call me back", "Tomorrow at ten", "Yes")
    assert output.splitlines()[-1].strip().startswith("call: hung up after ")
    call = await asyncio.to_thread(Call.objects.get)
    # Twilio reports the end to the number's StatusCallback; a simulated call must not stay in progress.
    assert call.status == "completed"
    assert call.ended_at is not None
    assert call.duration_seconds is not None and call.duration_seconds >= 1
    kinds = await asyncio.to_thread(
        lambda: sorted(Message.objects.filter(call_sid=call.call_sid).values_list("kind", flat=True))
    )
    assert kinds == ["call_outcome", "voicemail"]


async def test_with_no_agent_connected_it_prints_the_answering_machine(asgi_server: LiveServer, agent: str) -> None:
    output = await simulate(asgi_server, "Hi", "Please call me back", "Tomorrow at ten", "Yes")
    assert "Agent A can't take your call right now" in output
    assert "agent: Thank you. I'll pass your message on to Agent A. Goodbye." in output
    assert "ended by the server" in output


async def test_it_needs_a_secret_to_sign_with(asgi_server: LiveServer, agent: str, settings) -> None:
    settings.TWILIO_AUTH_TOKEN = None
    with pytest.raises(CommandError, match="Set TWILIO_AUTH_TOKEN"):
        await simulate(asgi_server, "Hello")
    assert await asyncio.to_thread(Call.objects.count) == 0


async def test_it_says_so_when_the_agent_takes_no_calls(asgi_server: LiveServer, agent: str) -> None:
    from agents.models import Agent

    await asyncio.to_thread(Agent.objects.filter(pk="agent-a").update, blocked_channels=["voice"])
    with pytest.raises(CommandError, match="empty <Response/>"):
        await simulate(asgi_server, "Hello")
    # Refused at the webhook, so never answered: no final report was posted either.
    assert await asyncio.to_thread(lambda: list(Call.objects.values_list("status", flat=True))) in ([], ["ringing"])
