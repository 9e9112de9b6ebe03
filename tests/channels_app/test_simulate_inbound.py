"""simulate_inbound: a correctly signed webhook to a running server, so the whole loop shows without a provider."""

from __future__ import annotations

import asyncio
import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from agents.services import AgentAddresses
from channels_app.models import Message
from tests.live_server import LiveServer
from tests.orchestrator.mcp_clients import sse_session
from tests.orchestrator.test_mcp_registry import Inbox, connected, eventually

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_mode(settings):
    # Demo mode with no provider secrets at all: the demo signing secrets are used, never skipped.
    settings.DEMO_MODE = True
    settings.TWILIO_AUTH_TOKEN = None
    settings.RESEND_WEBHOOK_SECRET = None
    settings.LINE_CHANNEL_SECRET = None


def simulate(server: LiveServer, *args: str) -> str:
    out = io.StringIO()
    call_command("simulate_inbound", *args, "--server", server.url, stdout=out)
    return out.getvalue()


async def test_a_simulated_sms_appears_in_the_connected_mcp_client(asgi_server: LiveServer, make_agent, demo_mode):
    _agent, token = await sync_to_async(make_agent)("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    inbox = Inbox()
    async with sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=inbox):
        await eventually(connected("agent-a"))
        output = await asyncio.to_thread(
            simulate, asgi_server, "sms", "--agent", "agent-a", "--from", "+15551234567", "--body", "Tom & cat; 🙂"
        )
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert "→ 200" in output
    event = inbox.events[0].data
    assert (event["channel"], event["from"], event["to"], event["body"]) == ("sms", "+15551234567", "+14155550100", "Tom & cat; 🙂")


@pytest.mark.parametrize(
    ("channel", "sender"),
    [("whatsapp", "+34612345678"), ("email", "alice@example.com"), ("line", "U4af4980629a2b3c4d5e6f708192a3b4c")],
)
async def test_every_channel_can_be_simulated(asgi_server: LiveServer, make_agent, demo_mode, channel, sender):
    await sync_to_async(make_agent)(
        "agent-a", addresses=AgentAddresses(phone="+14155550100", whatsapp="+14155550100", email="agent-a@agents.example.com", line=True)
    )
    await asyncio.to_thread(simulate, asgi_server, channel, "--agent", "agent-a", "--from", sender, "--body", "hello")
    message = await sync_to_async(Message.objects.get)()
    assert (message.channel, message.from_address, message.body) == (channel, sender, "hello")


async def test_it_fails_loudly_in_live_mode_without_a_secret(asgi_server: LiveServer, make_agent, settings):
    settings.DEMO_MODE = False
    settings.TWILIO_AUTH_TOKEN = None
    await sync_to_async(make_agent)("agent-a")
    with pytest.raises(CommandError, match="TWILIO_AUTH_TOKEN"):
        await asyncio.to_thread(simulate, asgi_server, "sms", "--agent", "agent-a", "--from", "+15551234567")


async def test_it_says_which_url_it_signed_when_the_server_refuses_the_signature(
    asgi_server: LiveServer, make_agent, demo_mode, monkeypatch
):
    # A server started with another PORT checks Twilio's signature over another URL than this command signed.
    from channels_app import signatures
    from channels_app.management.commands import simulate_inbound

    class OtherPort:
        def __getattr__(self, name: str) -> object:
            return getattr(signatures, name)

        @staticmethod
        def public_url(path: str) -> str:
            return "http://localhost:3999" + path

    monkeypatch.setattr(simulate_inbound, "signatures", OtherPort())
    await sync_to_async(make_agent)("agent-a", addresses=AgentAddresses(phone="+14155550100"))

    with pytest.raises(CommandError, match=r"signed for http://localhost:3999/webhooks/agent-a/sms; run it with the PORT"):
        await asyncio.to_thread(simulate, asgi_server, "sms", "--agent", "agent-a", "--from", "+15551234567")
    assert not await sync_to_async(Message.objects.exists)()
