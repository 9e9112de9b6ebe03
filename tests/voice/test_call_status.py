"""Twilio call status callbacks: signed, forward-only, priced, and exactly one call_outcome per call."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import UsageRecord
from channels_app.models import Message
from tests.channels_app.webhook_support import post_twilio, webhook_secrets  # noqa: F401
from tests.ops_helpers import Api
from tests.voice.support import AGENT_NUMBER, TO, call_status, outbound_call, voice_agent
from voice.models import Call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_secrets")]

SID = "CA" + "1" * 32


@pytest.fixture
def agent_token():
    return voice_agent()


@pytest.fixture
def agent(agent_token):
    return agent_token[0]


def test_the_status_moves_forward_and_the_end_produces_one_waiting_call_outcome(client, agent_token):
    agent, token = agent_token
    call = outbound_call(agent)
    for status in ("initiated", "ringing", "in-progress"):
        response = call_status(client, "agent-a", SID, status)
        assert response.status_code == 200
        assert response["Content-Type"] == "text/xml"
        assert b"<Response />" in response.content
    call.refresh_from_db()
    assert call.status == "in-progress" and call.ended_at is None
    assert not Message.objects.exists()
    call_status(client, "agent-a", SID, "completed", CallDuration="75", Price="-0.02800", PriceUnit="USD")
    call.refresh_from_db()
    assert (call.status, call.duration_seconds, call.cost) == ("completed", 75, Decimal("0.028"))
    assert call.ended_at is not None
    outcome = Message.objects.get()
    assert (outcome.kind, outcome.channel, outcome.call_sid, outcome.status) == ("call_outcome", "voice", SID, "completed")
    assert (outcome.from_address, outcome.to_address, outcome.direction) == (AGENT_NUMBER, TO, "outbound")
    assert outcome.delivered_at is None  # nobody connected, no callback: it waits
    status, waiting = Api(token).get("waiting-messages")
    assert status == 200 and waiting["count"] == 1
    event = waiting["messages"][0]
    assert (event["kind"], event["channel"], event["callSid"], event["status"]) == ("call_outcome", "voice", SID,
                                                                                     "completed")


def test_duplicate_and_late_callbacks_are_acknowledged_and_change_nothing(client, agent):
    call = outbound_call(agent)
    call_status(client, "agent-a", SID, "completed", CallDuration="30")
    for status in ("completed", "in-progress", "ringing", "no-answer", "busy"):
        assert call_status(client, "agent-a", SID, status).status_code == 200
    call.refresh_from_db()
    assert (call.status, call.duration_seconds) == ("completed", 30)
    assert Message.objects.filter(kind="call_outcome").count() == 1


def test_a_call_nobody_answered_ends_with_its_status_and_no_charge(client, agent):
    outbound_call(agent)
    call_status(client, "agent-a", SID, "ringing")
    call_status(client, "agent-a", SID, "no-answer", CallDuration="0")
    call = Call.objects.get()
    assert (call.status, call.cost, call.duration_seconds) == ("no-answer", Decimal("0"), 0)
    assert Message.objects.get().status == "no-answer"


def test_without_a_price_the_price_table_prices_the_call_and_a_later_price_corrects_it(
    client, agent, live_provider_settings
):
    from tests.voice.support import etc_zone_at_local_hour

    _, issued = voice_agent("agent-p", phone="+14155550109")
    status, placed = Api(issued).post("make-call", {"to": TO, "recipientTimezone": etc_zone_at_local_hour(14)})
    assert status == 200
    sid = placed["callSid"]
    call_status(client, "agent-p", sid, "completed", CallDuration="61")
    call = Call.objects.get(call_sid=sid)
    assert call.cost == Decimal("0.0280")  # two started minutes at 0.014
    assert UsageRecord.objects.get(reference=call.session_id).provider_cost == Decimal("0.028")
    call_status(client, "agent-p", sid, "completed", CallDuration="61", Price="-0.0300")
    call.refresh_from_db()
    assert call.cost == Decimal("0.03")
    assert UsageRecord.objects.get(reference=call.session_id).provider_cost == Decimal("0.03")
    assert Message.objects.filter(kind="call_outcome").count() == 1


def test_an_unsigned_or_forged_callback_is_refused_and_changes_nothing(client, agent):
    call = outbound_call(agent)
    path = "/webhooks/agent-a/call-status"
    params = {"CallSid": SID, "CallStatus": "completed", "CallDuration": "10"}
    assert post_twilio(client, path, params, signature="").status_code == 403
    assert post_twilio(client, path, params, token="not-the-auth-token").status_code == 403
    # Signed for another agent's URL: the signature covers the path.
    forged = post_twilio(client, path, params, signed_url="https://comms.example.com/webhooks/agent-b/call-status")
    assert forged.status_code == 403
    call.refresh_from_db()
    assert call.status == "queued" and not Message.objects.exists()


def test_another_agents_callback_cannot_touch_this_agents_call(client, agent):
    call = outbound_call(agent)
    voice_agent("agent-b", phone="+14155550101")
    assert call_status(client, "agent-b", SID, "completed").status_code == 200
    call.refresh_from_db()
    assert call.status == "queued" and not Message.objects.exists()


def test_an_unknown_call_is_acknowledged(client, agent):
    response = call_status(client, "agent-a", "CA" + "9" * 32, "completed")
    assert response.status_code == 200 and not Message.objects.exists()
    assert call_status(client, "nobody", SID, "completed").status_code == 200


def test_the_answering_side_is_recorded(client, agent):
    outbound_call(agent)
    call_status(client, "agent-a", SID, "in-progress", AnsweredBy="machine_start")
    assert Call.objects.get().context["answeredBy"] == "machine_start"


def test_an_inbound_call_ends_with_an_inbound_call_outcome(client, agent):
    Call.objects.create(agent=agent, organization_id=agent.organization_id, direction="inbound", status="in-progress",
                        from_address=TO, to_address=AGENT_NUMBER, call_sid=SID)
    call_status(client, "agent-a", SID, "completed", CallDuration="12")
    outcome = Message.objects.get()
    assert (outcome.direction, outcome.from_address, outcome.to_address) == ("inbound", TO, AGENT_NUMBER)


def test_a_call_whose_end_was_recorded_first_by_the_live_side_still_reports_once(client, agent):
    # The live-voice side may mark the call completed when its socket closes, before Twilio's callback.
    call = outbound_call(agent, status="completed")
    call_status(client, "agent-a", SID, "completed", CallDuration="40")
    call_status(client, "agent-a", SID, "completed", CallDuration="40")
    call.refresh_from_db()
    outcome = Message.objects.get(kind="call_outcome")
    assert (outcome.status, call.duration_seconds, call.context["outcomeMessageId"]) == ("completed", 40, outcome.pk)
    assert call.ended_at is not None and call.cost is not None


def test_a_failed_final_report_after_a_recorded_completion_keeps_the_status_and_reports_it(client, agent):
    outbound_call(agent, status="completed")
    call_status(client, "agent-a", SID, "failed", ErrorCode="31005")
    outcome = Message.objects.get(kind="call_outcome")
    assert (outcome.status, outcome.error_code) == ("completed", "31005")


def test_the_call_status_url_provision_hands_out_is_served(client, settings, orchestrator_token):
    settings.DEMO_MODE = True
    status, provisioned = Api(orchestrator_token).post("provision", {
        "agentId": "bot", "displayName": "Bot", "capabilities": ["voice"]})
    assert status == 200, provisioned
    url = provisioned["webhookUrls"]["callStatus"]
    assert url == f"{settings.PUBLIC_BASE_URL}/webhooks/bot/call-status"
    number = provisioned["channels"]["voiceAi"]["number"]
    from agents.models import Agent

    Call.objects.create(agent=Agent.objects.get(pk="bot"), organization_id="default", direction="inbound",
                        status="in-progress", from_address=TO, to_address=number, call_sid=SID)
    params = {"CallSid": SID, "CallStatus": "completed", "CallDuration": "3"}
    response = post_twilio(client, url.removeprefix(settings.PUBLIC_BASE_URL), params)
    assert response.status_code == 200
    assert Call.objects.get().status == "completed"
    assert Message.objects.get().kind == "call_outcome"
