"""transfer-call against the loopback fake Twilio: one escaped <Dial> applied to the agent's own live call."""

from __future__ import annotations

import pytest

from channels_app.providers.twilio_voice import TwilioVoiceProvider
from tests.fake_providers import TWILIO_ACCOUNT_SID
from tests.ops_helpers import Api
from tests.voice.support import AGENT_NUMBER, TO, outbound_call, voice_agent
from voice.models import Call

pytestmark = pytest.mark.django_db

TARGET = "+14155550177"


def live_call(fake, agent) -> Call:
    """A call Twilio knows about (the fake's state), in progress."""
    placed = TwilioVoiceProvider().create_call(agent_id=agent.pk, from_number=AGENT_NUMBER, to_number=TO,
                                               url="http://localhost:3100/x")
    return outbound_call(agent, placed.call_sid, status="in-progress")


def test_it_transfers_the_agents_live_call_with_one_escaped_dial(live_provider_settings):
    fake = live_provider_settings
    agent, token = voice_agent()
    call = live_call(fake, agent)
    status, body = Api(token).post("transfer-call", {"callSid": call.call_sid, "to": TARGET,
                                                     "announcementText": 'Tom & Jerry <"sales">, one moment'})
    assert status == 200, body
    assert body == {"success": True, "callSid": call.call_sid, "transferredTo": TARGET, "status": "transferred"}
    request = fake.last("twilio", "POST", rf"/Accounts/{TWILIO_ACCOUNT_SID}/Calls/{call.call_sid}\.json$")
    assert request.form == {"Twiml": (
        '<Response><Say language="en-US">Tom &amp; Jerry &lt;"sales"&gt;, one moment</Say>'
        f'<Dial callerId="{AGENT_NUMBER}"><Number>{TARGET}</Number></Dial></Response>'
    )}
    call.refresh_from_db()
    assert call.status == "transferred"
    assert [t["to"] for t in call.context["transfers"]] == [TARGET]


def test_without_an_announcement_there_is_only_the_dial(live_provider_settings):
    fake = live_provider_settings
    agent, token = voice_agent()
    call = live_call(fake, agent)
    assert Api(token).post("transfer-call", {"callSid": call.call_sid, "to": TARGET})[0] == 200
    twiml = fake.last("twilio", "POST", call.call_sid).form["Twiml"]
    assert twiml == f'<Response><Dial callerId="{AGENT_NUMBER}"><Number>{TARGET}</Number></Dial></Response>'


def test_it_transfers_to_another_agent_of_the_organization_by_its_id(live_provider_settings):
    fake = live_provider_settings
    agent, token = voice_agent()
    voice_agent("front-desk", phone="+14155550188")
    call = live_call(fake, agent)
    status, body = Api(token).post("transfer-call", {"callSid": call.call_sid, "to": "front-desk"})
    assert (status, body["transferredTo"]) == (200, "+14155550188")
    assert "<Number>+14155550188</Number>" in fake.last("twilio", "POST", call.call_sid).form["Twiml"]
    assert Call.objects.get(pk=call.pk).context["transfers"][0]["agentId"] == "front-desk"


def test_an_agent_of_another_organization_is_not_a_transfer_target(live_provider_settings, make_org):
    fake = live_provider_settings
    other, _ = make_org("Other")
    agent, token = voice_agent()
    voice_agent("elsewhere", org=other, phone="+14155550189")
    call = live_call(fake, agent)
    before = len(fake.requests_to("twilio"))
    status, body = Api(token).post("transfer-call", {"callSid": call.call_sid, "to": "elsewhere"})
    assert (status, body["code"], body["field"]) == (404, "agent_not_found", "to")
    assert len(fake.requests_to("twilio")) == before


def test_another_agents_call_or_an_unknown_call_is_not_found(live_provider_settings):
    fake = live_provider_settings
    agent_a, _ = voice_agent("agent-a")
    _agent_b, token_b = voice_agent("agent-b", phone="+14155550101")
    call = live_call(fake, agent_a)
    before = len(fake.requests_to("twilio"))
    for sid in (call.call_sid, "CA" + "0" * 32):
        status, body = Api(token_b).post("transfer-call", {"callSid": sid, "to": TARGET})
        assert (status, body["code"]) == (404, "call_not_found")
    assert len(fake.requests_to("twilio")) == before
    assert Call.objects.get(pk=call.pk).status == "in-progress"


def test_a_call_that_has_ended_cannot_be_transferred(live_provider_settings):
    agent, token = voice_agent()
    call = outbound_call(agent, "CA" + "4" * 32, status="completed")
    status, body = Api(token).post("transfer-call", {"callSid": call.call_sid, "to": TARGET})
    assert (status, body["code"]) == (409, "call_not_live")
    assert not live_provider_settings.requests_to("twilio")


def test_a_provider_refusal_is_a_502_and_leaves_the_call_as_it_was(live_provider_settings):
    agent, token = voice_agent()
    call = outbound_call(agent, "CA" + "5" * 32, status="in-progress")  # unknown to the fake: Twilio answers 404
    status, body = Api(token).post("transfer-call", {"callSid": call.call_sid, "to": TARGET})
    assert (status, body["code"], body["providerStatus"]) == (502, "provider_error", 404)
    assert Call.objects.get(pk=call.pk).status == "in-progress"


def test_an_invalid_target_number_is_refused(live_provider_settings):
    agent, token = voice_agent()
    call = outbound_call(agent, "CA" + "6" * 32, status="in-progress")
    status, body = Api(token).post("transfer-call", {"callSid": call.call_sid, "to": "+1 555"})
    assert (status, body["code"]) == (400, "invalid_phone")


def test_an_inbound_call_is_transferred_with_the_agents_number_as_caller_id(live_provider_settings):
    fake = live_provider_settings
    agent, token = voice_agent()
    placed = TwilioVoiceProvider().create_call(agent_id=agent.pk, from_number=AGENT_NUMBER, to_number=TO,
                                               url="http://localhost:3100/x")
    # A caller rang the agent: the call goes from the caller to the agent's number.
    Call.objects.create(agent=agent, organization_id=agent.organization_id, direction="inbound",
                        status="in-progress", from_address=TO, to_address=AGENT_NUMBER, call_sid=placed.call_sid)
    assert Api(token).post("transfer-call", {"callSid": placed.call_sid, "to": TARGET})[0] == 200
    twiml = fake.last("twilio", "POST", placed.call_sid).form["Twiml"]
    assert f'callerId="{AGENT_NUMBER}"' in twiml and f"<Number>{TARGET}</Number>" in twiml
