"""Twilio calls and phone numbers through the real SDK against the loopback fake."""

from __future__ import annotations

import pytest

from channels_app.providers.base import ProviderError
from channels_app.providers.twilio_voice import TwilioVoiceProvider
from tests.fake_providers import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN

ACCOUNT = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}"
TWIML = '<Response><Say>Tom &amp; Jerry; "quoted"</Say><Connect><ConversationRelay url="wss://x/y?a=1&amp;b=2"/></Connect></Response>'


def test_it_creates_a_call_with_inline_twiml_and_our_call_status_callback(live_provider_settings) -> None:
    fake = live_provider_settings
    result = TwilioVoiceProvider().create_call(
        agent_id="agent-a", from_number="+14155550100", to_number="+14155550199", twiml=TWIML, timeout_seconds=25
    )
    request = fake.last("twilio", "POST", r"/Calls\.json$")
    assert request.path == f"{ACCOUNT}/Calls.json"
    assert request.basic_auth == (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    assert request.form["Twiml"] == TWIML
    assert request.form["To"] == "+14155550199"
    assert request.form["From"] == "+14155550100"
    assert request.form["Timeout"] == "25"
    assert request.form["StatusCallback"] == "http://localhost:3100/webhooks/agent-a/call-status"
    assert request.form["StatusCallbackMethod"] == "POST"
    assert request.form_lists["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert "Url" not in request.form
    assert result.call_sid.startswith("CA") and len(result.call_sid) == 34
    assert (result.status, result.from_number, result.to_number) == ("queued", "+14155550100", "+14155550199")


def test_it_creates_a_call_that_fetches_its_twiml_from_a_url(live_provider_settings) -> None:
    TwilioVoiceProvider().create_call(
        agent_id="agent-a",
        from_number="+14155550100",
        to_number="+14155550199",
        url="http://localhost:3100/webhooks/agent-a/outbound-voice?session=s1",
    )
    form = live_provider_settings.last("twilio", "POST", r"/Calls\.json$").form
    assert form["Url"] == "http://localhost:3100/webhooks/agent-a/outbound-voice?session=s1"
    assert form["Method"] == "POST"
    assert "Twiml" not in form


def test_it_refuses_a_call_with_both_or_neither_twiml_and_url(live_provider_settings) -> None:
    provider = TwilioVoiceProvider()
    with pytest.raises(ValueError):
        provider.create_call(agent_id="a", from_number="+14155550100", to_number="+14155550199")
    with pytest.raises(ValueError):
        provider.create_call(agent_id="a", from_number="+14155550100", to_number="+14155550199", twiml=TWIML, url="http://x")


def test_it_transfers_a_live_call_by_updating_its_twiml(live_provider_settings) -> None:
    fake = live_provider_settings
    provider = TwilioVoiceProvider()
    call = provider.create_call(agent_id="a", from_number="+14155550100", to_number="+14155550199", twiml=TWIML)
    transfer = "<Response><Say>Transferring you.</Say><Dial>+14155550123</Dial></Response>"
    result = provider.transfer_call(call.call_sid, twiml=transfer)
    request = fake.last("twilio", "POST", rf"/Calls/{call.call_sid}\.json$")
    assert request.form == {"Twiml": transfer}
    assert result.status == "in-progress"


def test_it_ends_a_call_by_setting_its_status_to_completed(live_provider_settings) -> None:
    provider = TwilioVoiceProvider()
    call = provider.create_call(agent_id="a", from_number="+14155550100", to_number="+14155550199", twiml=TWIML)
    result = provider.update_call(call.call_sid, status="completed")
    assert live_provider_settings.last("twilio", "POST", call.call_sid).form == {"Status": "completed"}
    assert result.status == "completed"
    assert provider.fetch_call(call.call_sid).status == "completed"


def test_it_reports_an_unknown_call_as_not_found(live_provider_settings) -> None:
    with pytest.raises(ProviderError) as raised:
        TwilioVoiceProvider().update_call("CA" + "0" * 32, status="completed")
    assert (raised.value.permanent, raised.value.status, raised.value.reason) == (True, 404, "not_found")


def test_it_searches_local_numbers_that_do_sms_and_voice(live_provider_settings) -> None:
    found = TwilioVoiceProvider().search_numbers("us", limit=2, area_code="415")
    request = live_provider_settings.last("twilio", "GET", "AvailablePhoneNumbers")
    assert request.path == f"{ACCOUNT}/AvailablePhoneNumbers/US/Local.json"
    assert request.query["AreaCode"] == ["415"]
    assert request.query["SmsEnabled"] == ["true"]
    assert request.query["VoiceEnabled"] == ["true"]
    assert request.query["PageSize"] == ["2"]
    assert [n.number for n in found] == ["+14155551000", "+14155551001"]
    assert found[0].country == "US"


def test_it_buys_a_number_with_its_webhooks_pointed_at_the_agent(live_provider_settings, settings) -> None:
    settings.PUBLIC_BASE_URL = "https://comms.example.net"
    bought = TwilioVoiceProvider().purchase_number("+14155551003", agent_id="agent-a")
    form = live_provider_settings.last("twilio", "POST", "IncomingPhoneNumbers").form
    assert form == {
        "PhoneNumber": "+14155551003",
        "FriendlyName": "agent agent-a",
        "SmsUrl": "https://comms.example.net/webhooks/agent-a/sms",
        "SmsMethod": "POST",
        "VoiceUrl": "https://comms.example.net/webhooks/agent-a/voice",
        "VoiceMethod": "POST",
        "StatusCallback": "https://comms.example.net/webhooks/agent-a/call-status",
        "StatusCallbackMethod": "POST",
    }
    assert bought.number == "+14155551003"
    assert bought.sid.startswith("PN") and bought.sid in live_provider_settings.twilio_numbers


def test_it_reports_a_number_that_is_no_longer_available(live_provider_settings) -> None:
    with pytest.raises(ProviderError) as raised:
        TwilioVoiceProvider().purchase_number("+19995550000", agent_id="agent-a")
    assert (raised.value.code, raised.value.permanent, raised.value.reason) == ("21422", True, "not_found")


def test_it_releases_a_number_by_deleting_it(live_provider_settings) -> None:
    provider = TwilioVoiceProvider()
    bought = provider.purchase_number("+14155551004", agent_id="agent-a")
    provider.release_number(bought.sid)
    request = live_provider_settings.last("twilio", "DELETE")
    assert request.path == f"{ACCOUNT}/IncomingPhoneNumbers/{bought.sid}.json"
    assert bought.sid not in live_provider_settings.twilio_numbers


def test_it_reads_a_final_call_status_callback() -> None:
    from decimal import Decimal

    from channels_app.providers.twilio_voice import parse_call_status

    update = parse_call_status(
        {"CallSid": "CA" + "2" * 32, "CallStatus": "completed", "CallDuration": "63", "Price": "-0.02800", "AnsweredBy": "human"}
    )
    assert update is not None
    assert (update.call_sid, update.status, update.duration_seconds, update.cost, update.answered_by) == (
        "CA" + "2" * 32,
        "completed",
        63,
        Decimal("0.02800"),
        "human",
    )
    assert parse_call_status({"MessageSid": "SM1"}) is None


@pytest.mark.parametrize(
    ("current", "new", "advances"),
    [("queued", "ringing", True), ("in-progress", "completed", True), ("completed", "in-progress", False), ("busy", "failed", False)],
)
def test_it_moves_call_status_forward_only(current: str, new: str, advances: bool) -> None:
    from channels_app.providers.base import call_status_advances

    assert call_status_advances(current, new) is advances


def test_it_points_a_pooled_whatsapp_sender_at_the_agents_webhooks(live_provider_settings) -> None:
    sender_sid = "XE" + "c" * 32
    assert TwilioVoiceProvider().configure_whatsapp_sender(sender_sid, agent_id="agent-a") is True
    request = live_provider_settings.last("twilio", "POST", "Channels/Senders")
    assert request.path == f"/v2/Channels/Senders/{sender_sid}"
    assert request.basic_auth == (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    assert request.json["webhook"]["callback_url"] == "http://localhost:3100/webhooks/agent-a/whatsapp"
    assert request.json["webhook"]["callback_method"] == "POST"
    assert request.json["webhook"]["status_callback_url"] == "http://localhost:3100/webhooks/agent-a/message-status"


def test_it_leaves_a_console_configured_whatsapp_sender_alone(live_provider_settings) -> None:
    assert TwilioVoiceProvider().configure_whatsapp_sender("", agent_id="agent-a") is False
    assert TwilioVoiceProvider().configure_whatsapp_sender("PN" + "1" * 32, agent_id="agent-a") is False
    assert live_provider_settings.requests_to("twilio") == []


def test_it_maps_an_rfc9457_error_from_the_senders_api(live_provider_settings) -> None:
    live_provider_settings.script(
        "twilio",
        status=404,
        path="Channels/Senders",
        json_body={
            "type": "https://www.twilio.com/docs/errors/20404",
            "title": "Not Found",
            "status": 404,
            "code": 20404,
            "detail": "Sender XE… was not found",
        },
    )
    with pytest.raises(ProviderError) as raised:
        TwilioVoiceProvider().configure_whatsapp_sender("XE" + "d" * 32, agent_id="agent-a")
    assert (raised.value.code, raised.value.status, raised.value.reason, raised.value.permanent) == ("20404", 404, "not_found", True)
    assert raised.value.message == "Sender XE… was not found"
