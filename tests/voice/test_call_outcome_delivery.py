"""A call's call_outcome reaches the agent like any inbound event: pushed to its live MCP session, else
POSTed to its callbackUrl, else waiting. Demo mode simulates the whole call on the machine."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from agents.crypto import decrypt
from agents.models import Agent
from channels_app import signatures
from channels_app.models import Message
from tests.channels_app.test_delivery_callbacks import CallbackReceiver, verify
from tests.channels_app.webhook_support import TWILIO_TOKEN, webhook_secrets  # noqa: F401
from tests.live_server import LiveServer
from tests.orchestrator.mcp_clients import bearer, sse_session, streamable_session
from tests.orchestrator.test_mcp_registry import Inbox, connected, eventually
from tests.voice.support import TO, call_status, etc_zone_at_local_hour, outbound_call, voice_agent, wait_until
from voice.models import Call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]

SID = "CA" + "2" * 32


@pytest.fixture(autouse=True)
def close_connections_after_each_request(monkeypatch):
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


async def post_call_status(server: LiveServer, agent_id: str, **params: str) -> httpx.Response:
    path = f"/webhooks/{agent_id}/call-status"
    signature = signatures.twilio_sign(url=settings.PUBLIC_BASE_URL + path, params=params, auth_token=TWILIO_TOKEN)
    async with httpx.AsyncClient() as http:
        return await http.post(server.url + path, content=urlencode(params),
                               headers={"Content-Type": "application/x-www-form-urlencoded",
                                        "X-Twilio-Signature": signature})


def outcomes() -> list[tuple[str, bool]]:
    return [(m.delivered_via, m.delivered_at is not None) for m in Message.objects.filter(kind="call_outcome")]


async def test_the_outcome_is_pushed_to_the_live_session(asgi_server: LiveServer):
    agent, token = await sync_to_async(voice_agent)()
    await sync_to_async(outbound_call)(agent, SID, status="in-progress")
    inbox = Inbox()
    async with sse_session(f"{asgi_server.url}/sse?token={token}", logging_callback=inbox):
        await eventually(connected("agent-a"))
        response = await post_call_status(asgi_server, "agent-a", CallSid=SID, CallStatus="completed", CallDuration="9")
        assert response.status_code == 200
        await asyncio.wait_for(inbox.arrived.wait(), timeout=10)
        # A repeat of the final callback sends nothing more.
        await post_call_status(asgi_server, "agent-a", CallSid=SID, CallStatus="completed", CallDuration="9")
        await asyncio.sleep(0.3)
    assert len(inbox.events) == 1
    event: dict[str, Any] = inbox.events[0].data
    assert (event["kind"], event["channel"], event["callSid"], event["status"]) == ("call_outcome", "voice", SID,
                                                                                     "completed")
    await eventually(lambda: sync_to_async(lambda: outcomes() == [("mcp", True)])(), timeout=5)


def test_the_outcome_is_posted_to_the_callback_url_when_nobody_is_connected(client, settings):
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]  # the receiver is on loopback, refused unless allowed
    receiver = CallbackReceiver()
    try:
        agent, _token = voice_agent(callback_url=receiver.url)
        outbound_call(agent, SID, status="in-progress")
        assert call_status(client, "agent-a", SID, "completed", CallDuration="5").status_code == 200
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        secret = decrypt(Agent.objects.get(pk="agent-a").callback_secret_encrypted)
        assert verify(headers, body, secret)
        event = json.loads(body)
        assert (event["kind"], event["callSid"], event["status"]) == ("call_outcome", SID, "completed")
        assert outcomes() == [("callback", True)]
    finally:
        receiver.close()


async def test_a_demo_call_made_over_mcp_runs_its_course_and_reports_its_outcome(asgi_server: LiveServer, settings):
    settings.DEMO_MODE = True
    settings.VOICE_SIMULATION_STEP_SECONDS = 0.05
    _agent, token = await sync_to_async(voice_agent)()
    inbox = Inbox()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token), logging_callback=inbox) as session:
        result = await session.call_tool("comms_make_call", {"to": TO, "recipientTimezone": etc_zone_at_local_hour(14)})
        assert not result.is_error, result
        placed = result.structured_content
        assert placed["callSid"].startswith("CA") and placed["status"] == "queued"
        await asyncio.wait_for(inbox.arrived.wait(), timeout=15)
        got = await session.call_tool("comms_get_call", {"callSid": placed["callSid"]})
    event = inbox.events[0].data
    assert (event["kind"], event["callSid"], event["status"]) == ("call_outcome", placed["callSid"], "completed")
    call = got.structured_content
    assert (call["status"], call["direction"], call["durationSeconds"]) == ("completed", "outbound", 10)
    assert call["cost"] == 0.014 and call["endedAt"] is not None
    assert await sync_to_async(Call.objects.get)(call_sid=placed["callSid"]) is not None


def test_a_demo_call_placed_outside_the_server_still_completes(client, settings):
    from tests.ops_helpers import Api

    settings.DEMO_MODE = True
    settings.VOICE_SIMULATION_STEP_SECONDS = 0
    _agent, token = voice_agent()
    status, placed = Api(token).post("make-call", {"to": TO, "recipientTimezone": etc_zone_at_local_hour(14)})
    assert status == 200
    wait_until(lambda: Message.objects.filter(kind="call_outcome").exists(), what="the end of the simulated call")
    assert Call.objects.get(call_sid=placed["callSid"]).status == "completed"
    assert Message.objects.filter(kind="call_outcome").count() == 1


async def test_refusals_are_the_same_error_body_over_rest_and_mcp(asgi_server: LiveServer, settings):
    settings.DEMO_MODE = True
    _agent, token = await sync_to_async(voice_agent)()
    cases = [
        ("comms_transfer_call", "POST", "transfer-call", {"callSid": "CA" + "0" * 32, "to": "+14155550177"}),
        ("comms_make_call", "POST", "make-call", {"to": TO, "recipientTimezone": etc_zone_at_local_hour(3)}),
        ("comms_get_call", "GET", "calls/CA" + "0" * 32, {"callSid": "CA" + "0" * 32}),
    ]
    async with sse_session(f"{asgi_server.url}/sse?token={token}") as session:
        for name, method, path, arguments in cases:
            result = await session.call_tool(name, arguments)
            async with httpx.AsyncClient(base_url=f"{asgi_server.url}/api/v1/", headers=bearer(token)) as http:
                if method == "GET":
                    response = await http.get(path)
                else:
                    response = await http.post(path, json=arguments)
            assert result.is_error and response.status_code in (403, 404)
            body = dict(result.structured_content or {})
            if name == "comms_make_call":  # retryAfter counts down between the two calls
                body.pop("retryAfter"), body.pop("nextAllowedAt")
                rest = {k: v for k, v in response.json().items() if k not in ("retryAfter", "nextAllowedAt")}
            else:
                rest = response.json()
            assert body == rest, name
    assert not await sync_to_async(Call.objects.exists)()
