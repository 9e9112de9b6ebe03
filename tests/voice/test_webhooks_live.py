"""Twilio's voice webhooks for live calls: /voice (inbound) and /outbound-voice (contract §8, issue 12 item 1)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest

from agents.models import AgentStatus
from agents.services import AgentAddresses
from channels_app.models import Message
from tests.channels_app.webhook_support import fixture, post_twilio, webhook_secrets  # noqa: F401
from voice import socket_auth
from voice.models import Call

pytestmark = pytest.mark.usefixtures("webhook_secrets")

PATH = "/webhooks/agent-a/voice"


@pytest.fixture
def agent(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    return agent


def relay_of(response) -> tuple[ET.Element, ET.Element]:
    root = ET.fromstring(response.content)
    connect = root.find("Connect")
    assert connect is not None, response.content
    relay = connect.find("ConversationRelay")
    assert relay is not None
    return connect, relay


def parameters(relay: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in relay.findall("Parameter")}


def test_it_records_an_inbound_call_at_once_and_connects_it_to_conversation_relay(client, agent):
    params = fixture("twilio_voice.json")
    response = post_twilio(client, PATH, params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    call = Call.objects.get()
    assert (call.call_sid, call.direction, call.agent_id) == (params["CallSid"], "inbound", "agent-a")
    assert (call.from_address, call.to_address, call.status) == ("+12125550123", "+14155550100", "ringing")
    assert call.started_at is not None
    connect, relay = relay_of(response)
    assert connect.get("action") == "https://comms.example.com/webhooks/agent-a/call-status"
    url = urlsplit(relay.get("url"))
    assert (url.scheme, url.netloc, url.path) == ("wss", "comms.example.com", "/webhooks/agent-a/voice-ws")
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    assert query["session"] == call.session_id
    assert socket_auth.token_valid(agent_id="agent-a", session_id=call.session_id, expires=query["expires"], token=query["token"])
    assert parameters(relay) == {"sessionId": call.session_id, "agentId": "agent-a", "direction": "inbound"}
    assert relay.get("dtmfDetection") == "true"


def test_a_retried_voice_webhook_keeps_one_call(client, agent):
    params = fixture("twilio_voice.json")
    first = post_twilio(client, PATH, params)
    second = post_twilio(client, PATH, params)
    assert second.status_code == 200
    assert Call.objects.count() == 1
    assert parameters(relay_of(first)[1]) == parameters(relay_of(second)[1])


def test_it_speaks_the_agents_greeting_voice_and_language_after_the_ai_disclosure(client, agent, settings):
    agent.greeting, agent.voice, agent.language = "Bonjour, ici Agent A. Tom & Jerry?", "fr-FR-Neural2-A", "fr-FR"
    agent.save()
    relay = relay_of(post_twilio(client, PATH, fixture("twilio_voice.json")))[1]
    assert relay.get("welcomeGreeting") == "You are speaking with an AI assistant. Bonjour, ici Agent A. Tom & Jerry?"
    assert (relay.get("voice"), relay.get("language")) == ("fr-FR-Neural2-A", "fr-FR")
    assert relay.get("ttsProvider") is None


def test_without_its_own_settings_an_agent_speaks_with_the_server_defaults(client, agent, settings):
    settings.VOICE_DEFAULT_GREETING = "Hi, this is the front desk."
    settings.VOICE_DEFAULT_LANGUAGE = "en-GB"
    settings.VOICE_AI_DISCLOSURE = False
    settings.ELEVENLABS_DEFAULT_VOICE = "21m00Tcm4TlvDq8ikWAM"
    relay = relay_of(post_twilio(client, PATH, fixture("twilio_voice.json")))[1]
    assert relay.get("welcomeGreeting") == "Hi, this is the front desk."
    assert relay.get("language") == "en-GB"
    assert (relay.get("voice"), relay.get("ttsProvider")) == ("21m00Tcm4TlvDq8ikWAM", "ElevenLabs")


def test_the_socket_url_is_ws_when_the_public_base_url_is_http(client, agent, settings):
    settings.PUBLIC_BASE_URL = "http://localhost:3100"
    url = "http://localhost:3100" + PATH
    relay = relay_of(post_twilio(client, PATH, fixture("twilio_voice.json"), signed_url=url))[1]
    assert relay.get("url").startswith("ws://localhost:3100/webhooks/agent-a/voice-ws?session=")


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl"])
def test_it_refuses_an_unsigned_or_forged_voice_webhook_and_records_nothing(client, agent, signature):
    response = post_twilio(client, PATH, fixture("twilio_voice.json"), signature=signature)
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature"
    assert Call.objects.count() == 0


def test_it_refuses_a_voice_webhook_signed_with_another_token(client, agent):
    response = post_twilio(client, PATH, fixture("twilio_voice.json"), token="someone-elses-auth-token")
    assert response.status_code == 403
    assert Call.objects.count() == 0


@pytest.mark.parametrize(
    "change",
    [{"blocked_channels": ["voice"]}, {"blocked_channels": ["*"]}, {"status": AgentStatus.SUSPENDED}],
    ids=["voice-blocked", "all-blocked", "suspended"],
)
def test_a_blocked_voice_channel_or_an_inactive_agent_gets_an_empty_response(client, agent, change):
    for name, value in change.items():
        setattr(agent, name, value)
    agent.save()
    response = post_twilio(client, PATH, fixture("twilio_voice.json"))
    assert response.status_code == 200
    assert ET.fromstring(response.content).tag == "Response"
    assert list(ET.fromstring(response.content)) == []
    assert Call.objects.count() == 0


def test_an_unknown_agent_gets_an_empty_response(client, agent):
    response = post_twilio(client, "/webhooks/nobody/voice", fixture("twilio_voice.json"))
    assert response.status_code == 200
    assert list(ET.fromstring(response.content)) == []
    assert Call.objects.count() == 0


def test_a_blocked_sms_channel_does_not_stop_calls(client, agent):
    agent.blocked_channels = ["sms"]
    agent.save()
    relay_of(post_twilio(client, PATH, fixture("twilio_voice.json")))
    assert Call.objects.count() == 1


def outbound_call(agent, **fields) -> Call:
    defaults = dict(
        agent=agent, organization_id=agent.organization_id, direction="outbound", status="queued",
        from_address="+14155550100", to_address="+12125550199", call_sid="CAoutbound0000000000000000000000001",
    )
    return Call.objects.create(**{**defaults, **fields})


def test_outbound_voice_connects_the_answered_call_of_its_session(client, agent):
    call = outbound_call(agent, greeting="Hi, it's Agent A calling about your order.", language="en-AU")
    path = f"/webhooks/agent-a/outbound-voice?session={call.session_id}"
    params = {**fixture("twilio_voice.json"), "CallSid": call.call_sid, "Direction": "outbound-api", "CallStatus": "in-progress"}
    response = post_twilio(client, path, params)
    assert response.status_code == 200
    connect, relay = relay_of(response)
    assert parameters(relay) == {"sessionId": call.session_id, "agentId": "agent-a", "direction": "outbound"}
    assert relay.get("welcomeGreeting") == "You are speaking with an AI assistant. Hi, it's Agent A calling about your order."
    assert relay.get("language") == "en-AU"
    assert f"session={call.session_id}" in relay.get("url")
    assert Call.objects.count() == 1


def test_outbound_voice_records_the_call_sid_when_the_call_has_none_yet(client, agent):
    call = outbound_call(agent, call_sid=None)
    params = {**fixture("twilio_voice.json"), "CallSid": "CAlate000000000000000000000000000001"}
    relay_of(post_twilio(client, f"/webhooks/agent-a/outbound-voice?session={call.session_id}", params))
    call.refresh_from_db()
    assert call.call_sid == "CAlate000000000000000000000000000001"


@pytest.mark.parametrize("session", ["vs_unknown", ""])
def test_outbound_voice_for_an_unknown_session_gets_an_empty_response(client, agent, session):
    outbound_call(agent)
    response = post_twilio(client, f"/webhooks/agent-a/outbound-voice?session={session}", fixture("twilio_voice.json"))
    assert response.status_code == 200
    assert list(ET.fromstring(response.content)) == []


def test_outbound_voice_does_not_connect_another_agents_call(client, agent, make_agent):
    other, _ = make_agent("agent-b")
    call = outbound_call(other)
    response = post_twilio(client, f"/webhooks/agent-a/outbound-voice?session={call.session_id}", fixture("twilio_voice.json"))
    assert list(ET.fromstring(response.content)) == []


def test_outbound_voice_checks_the_signature_over_the_session_query(client, agent):
    call = outbound_call(agent)
    from django.conf import settings

    signed_for = settings.PUBLIC_BASE_URL + "/webhooks/agent-a/outbound-voice?session=vs_other"
    response = post_twilio(
        client, f"/webhooks/agent-a/outbound-voice?session={call.session_id}", fixture("twilio_voice.json"), signed_url=signed_for
    )
    assert response.status_code == 403


def test_an_inbound_call_webhook_stores_no_message(client, agent):
    post_twilio(client, PATH, fixture("twilio_voice.json"))
    assert Message.objects.count() == 0


def test_a_socket_token_expires_and_is_bound_to_its_agent_and_session():
    now = time.time()
    query = {k: v[0] for k, v in parse_qs(socket_auth.socket_query(agent_id="a", session_id="vs_1", now=now)).items()}
    assert socket_auth.token_valid(agent_id="a", session_id="vs_1", expires=query["expires"], token=query["token"], now=now)
    assert not socket_auth.token_valid(agent_id="b", session_id="vs_1", expires=query["expires"], token=query["token"], now=now)
    assert not socket_auth.token_valid(agent_id="a", session_id="vs_2", expires=query["expires"], token=query["token"], now=now)
    later = int(query["expires"]) + 1
    assert not socket_auth.token_valid(agent_id="a", session_id="vs_1", expires=query["expires"], token=query["token"], now=later)
    assert not socket_auth.token_valid(agent_id="a", session_id="vs_1", expires=str(later), token=query["token"], now=now)
