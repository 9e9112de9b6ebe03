"""Who may open the voice socket: a signed per-call token or Twilio's signature, nothing else (issue 12 item 2)."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import InvalidStatus

from channels_app import signatures
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.voice.relay_client import amake_call, eventually, relay, socket_url
from voice import socket_auth
from voice.models import Call

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)

TWILIO_TOKEN = "test-twilio-auth-token-0123456789"


@pytest.fixture
def agents(make_agent, settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    make_agent("agent-a")
    make_agent("agent-b")


async def refused(url: str) -> int:
    with pytest.raises(InvalidStatus) as refusal:
        async with relay(url, call=None):  # type: ignore[arg-type]
            pass
    return refusal.value.response.status_code


async def accepted(url: str, call: Call, headers: dict[str, str] | None = None) -> None:
    async with relay(url, call, headers=headers) as caller:
        await caller.setup()
        # The server bound the call: it is in progress now.
        await eventually(lambda: status_of(call), "in-progress")


async def status_of(call: Call) -> str:
    return str(await sync_to_async(lambda: Call.objects.get(pk=call.pk).status)())


def query_without(query: str, name: str) -> str:
    return "&".join(part for part in query.split("&") if not part.startswith(name + "="))


async def test_a_signed_socket_url_is_accepted_and_binds_the_call(asgi_server: LiveServer, agents) -> None:
    call = await amake_call("agent-a")
    await accepted(socket_url(asgi_server.url, "agent-a", call.session_id), call)


async def test_it_refuses_a_socket_without_any_credential(asgi_server: LiveServer, agents) -> None:
    call = await amake_call("agent-a")
    assert await refused(socket_url(asgi_server.url, "agent-a", call.session_id, query=f"session={call.session_id}")) == 403
    await accepted(socket_url(asgi_server.url, "agent-a", call.session_id), call)


async def test_it_refuses_a_forged_token(asgi_server: LiveServer, agents) -> None:
    call = await amake_call("agent-a")
    query = socket_auth.socket_query(agent_id="agent-a", session_id=call.session_id)
    forged = query_without(query, "token") + "&token=" + "0" * 64
    assert await refused(socket_url(asgi_server.url, "agent-a", call.session_id, query=forged)) == 403
    await accepted(socket_url(asgi_server.url, "agent-a", call.session_id, query=query), call)


async def test_it_refuses_an_expired_token(asgi_server: LiveServer, agents, settings) -> None:
    call = await amake_call("agent-a")
    stale = socket_auth.socket_query(
        agent_id="agent-a", session_id=call.session_id, now=time.time() - settings.VOICE_WS_TOKEN_TTL_SECONDS - 5
    )
    assert await refused(socket_url(asgi_server.url, "agent-a", call.session_id, query=stale)) == 403
    await accepted(socket_url(asgi_server.url, "agent-a", call.session_id), call)


async def test_it_refuses_a_token_on_another_agents_path(asgi_server: LiveServer, agents) -> None:
    theirs = await amake_call("agent-b", call_sid="CAtheirs00000000000000000000000001")
    query = socket_auth.socket_query(agent_id="agent-b", session_id=theirs.session_id)
    # agent-b's valid token, presented on agent-a's socket path.
    assert await refused(socket_url(asgi_server.url, "agent-a", theirs.session_id, query=query)) == 403
    await accepted(socket_url(asgi_server.url, "agent-b", theirs.session_id, query=query), theirs)


async def test_it_refuses_a_token_made_for_another_call(asgi_server: LiveServer, agents) -> None:
    mine = await amake_call("agent-a")
    other = await amake_call("agent-a", call_sid="CAother0000000000000000000000000001")
    query = socket_auth.socket_query(agent_id="agent-a", session_id=other.session_id)
    swapped = query.replace(f"session={other.session_id}", f"session={mine.session_id}")
    assert await refused(socket_url(asgi_server.url, "agent-a", mine.session_id, query=swapped)) == 403
    await accepted(socket_url(asgi_server.url, "agent-a", other.session_id, query=query), other)


async def test_it_accepts_twilios_signature_of_the_socket_url_and_refuses_a_wrong_one(
    asgi_server: LiveServer, agents
) -> None:
    call = await amake_call("agent-a")
    query = f"session={call.session_id}"
    signed = socket_auth.socket_base_url("agent-a") + "?" + query
    good = signatures.twilio_sign(url=signed, params={}, auth_token=TWILIO_TOKEN)
    bad = signatures.twilio_sign(url=signed, params={}, auth_token="another-account-token")
    url = socket_url(asgi_server.url, "agent-a", call.session_id, query=query)
    with pytest.raises(InvalidStatus) as refusal:
        async with relay(url, call, headers={"X-Twilio-Signature": bad}):
            pass
    assert refusal.value.response.status_code == 403
    await accepted(url, call, headers={"X-Twilio-Signature": good})


async def test_it_refuses_a_socket_for_a_call_that_has_ended(asgi_server: LiveServer, agents) -> None:
    call = await amake_call("agent-a")
    live = await amake_call("agent-a", call_sid="CAlive00000000000000000000000000001")
    await sync_to_async(Call.objects.filter(pk=call.pk).update)(status="completed")
    assert await refused(socket_url(asgi_server.url, "agent-a", call.session_id)) == 403
    await accepted(socket_url(asgi_server.url, "agent-a", live.session_id), live)


async def test_it_closes_a_socket_whose_setup_names_another_call(asgi_server: LiveServer, agents) -> None:
    call = await amake_call("agent-a")
    async with relay(socket_url(asgi_server.url, "agent-a", call.session_id), call) as caller:
        await caller.send({"type": "setup", "callSid": "CAsomeoneelse000000000000000000001", "customParameters": {}})
        await caller.socket.wait_closed()
    assert (await sync_to_async(Call.objects.get)(pk=call.pk)).call_sid == call.call_sid

