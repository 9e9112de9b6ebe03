"""Delivery to a live MCP session: pushed as a `comms.inbound` notification, once, after `initialized`."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from channels_app import signatures
from channels_app.models import Message
from tests.channels_app.webhook_support import TWILIO_TOKEN, fixture, webhook_secrets  # noqa: F401
from tests.live_server import LiveServer
from tests.orchestrator.mcp_clients import agent_token, bearer, sse_session, streamable_session
from tests.orchestrator.test_mcp_registry import Inbox, connected, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]

PATH = "/webhooks/agent-a/sms"


async def post_sms(server: LiveServer, **overrides: str) -> httpx.Response:
    params = dict(fixture("twilio_sms.json"), **overrides)
    signature = signatures.twilio_sign(url=settings.PUBLIC_BASE_URL + PATH, params=params, auth_token=TWILIO_TOKEN)
    async with httpx.AsyncClient() as http:
        return await http.post(
            server.url + PATH,
            content=urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        )


def message_state() -> list[tuple[str, str | None, bool]]:
    return [(m.delivered_via, m.body, m.delivered_at is not None) for m in Message.objects.order_by("created_at")]


async def settles_to(expected: list[tuple[str, str | None, bool]]) -> bool:
    """The client may see the notification a moment before the server records the delivery."""
    async def check() -> bool:
        return await sync_to_async(message_state)() == expected

    try:
        await eventually(check, timeout=5)
    except AssertionError:
        return False
    return True


async def test_a_webhook_reaches_a_connected_client_as_a_comms_inbound_notification(asgi_server: LiveServer, make_agent):
    token = await agent_token(make_agent)
    inbox = Inbox()
    async with sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=inbox):
        await eventually(connected("agent-a"))
        response = await post_sms(asgi_server)
        assert response.status_code == 200
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert len(inbox.events) == 1
    event: dict[str, Any] = inbox.events[0].data
    assert inbox.events[0].logger == "comms.inbound"
    assert (event["agentId"], event["channel"], event["kind"]) == ("agent-a", "sms", "message")
    assert event["body"] == fixture("twilio_sms.json")["Body"]
    # Delivered once, by the push; retention 0 erased the body once it was sent.
    assert await settles_to([("mcp", None, True)]), await sync_to_async(message_state)()


async def test_a_message_waits_while_the_agent_is_offline_and_is_pushed_when_it_connects(asgi_server: LiveServer, make_agent):
    token = await agent_token(make_agent)
    assert (await post_sms(asgi_server)).status_code == 200
    await asyncio.sleep(0.2)
    assert await sync_to_async(message_state)() == [("", fixture("twilio_sms.json")["Body"], False)]
    inbox = Inbox()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token), logging_callback=inbox):
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert [e.data["body"] for e in inbox.events] == [fixture("twilio_sms.json")["Body"]]
    assert await settles_to([("mcp", None, True)]), await sync_to_async(message_state)()


async def test_several_waiting_messages_are_pushed_in_order_once(asgi_server: LiveServer, make_agent):
    token = await agent_token(make_agent)
    for n in range(3):
        await post_sms(asgi_server, MessageSid=f"SM{n:032d}", Body=f"message {n}")
    inbox = Inbox()
    async with sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=inbox):
        await eventually(lambda: asyncio.sleep(0, len(inbox.events) >= 3))
        await asyncio.sleep(0.2)
    assert [e.data["body"] for e in inbox.events] == ["message 0", "message 1", "message 2"]


async def test_a_pending_wait_call_gets_the_message_instead_of_the_push(asgi_server: LiveServer, make_agent):
    token = await agent_token(make_agent)
    inbox = Inbox()
    async with sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=inbox) as session:
        await eventually(connected("agent-a"))
        waiting = asyncio.create_task(session.call_tool("comms_wait_for_message", {"timeoutSeconds": 10}))
        await asyncio.sleep(0.3)
        await post_sms(asgi_server)
        result = await asyncio.wait_for(waiting, timeout=10)
    assert not result.is_error
    assert result.structured_content["count"] == 1
    assert result.structured_content["messages"][0]["from"] == "+12125550123"
    assert inbox.events == []
    assert await settles_to([("wait", None, True)]), await sync_to_async(message_state)()


async def test_a_webhook_in_one_process_reaches_a_client_connected_to_another(
    asgi_server: LiveServer, second_asgi_server: LiveServer, make_agent
):
    token = await agent_token(make_agent)
    inbox = Inbox()
    async with sse_session(f"{second_asgi_server.url}/sse?token={token}", logging_callback=inbox):
        await eventually(connected("agent-a"), timeout=10)
        assert (await post_sms(asgi_server)).status_code == 200
        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    assert inbox.events[0].data["body"] == fixture("twilio_sms.json")["Body"]
    assert await settles_to([("mcp", None, True)]), await sync_to_async(message_state)()


async def test_a_long_poll_does_not_hold_up_other_tool_calls(asgi_server: LiveServer, make_agent):
    import time

    token = await agent_token(make_agent)
    url = f"{asgi_server.url}/sse?token={token}"
    async with sse_session(url) as waiting_session, sse_session(url) as other:
        waiting = asyncio.create_task(waiting_session.call_tool("comms_wait_for_message", {"timeoutSeconds": 3}))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await other.call_tool("comms_ping", {})
        assert time.monotonic() - started < 1.5
        result = await waiting
    assert result.structured_content == {"messages": [], "count": 0, "acknowledged": 0}
