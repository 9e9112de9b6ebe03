"""call-on-behalf: the secretary's TwiML sent to Twilio, the signed <Gather> action that reads a yes or
a no (speech or keypad), the bridge, and the answer reported as the call_outcome's body."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings

from channels_app.models import Message
from tests.channels_app.webhook_support import post_twilio
from tests.fake_providers import TWILIO_ACCOUNT_SID
from tests.ops_helpers import Api
from tests.voice.support import AGENT_NUMBER, call_status, etc_zone_at_local_hour, voice_agent
from voice.models import Call
from voice.outbound import secretary_reading

pytestmark = pytest.mark.django_db

TARGET = "+14155550142"
REQUESTER = "+12125550111"
CALLS = rf"/Accounts/{TWILIO_ACCOUNT_SID}/Calls\.json$"


def place(token: str, **extra: str) -> dict:
    status, body = Api(token).post("call-on-behalf", {
        "target": TARGET, "requesterPhone": REQUESTER, "targetName": "Dana", "requesterName": "Tom & Jerry",
        "message": "the <contract> renewal", "recipientTimezone": etc_zone_at_local_hour(14), **extra})
    assert status == 200, body
    return body


def answer(client, call: Call, **fields: str):
    params = {"CallSid": call.call_sid, "CallStatus": "in-progress", "From": AGENT_NUMBER, "To": TARGET, **fields}
    path = action_url(call).removeprefix(settings.PUBLIC_BASE_URL)
    return post_twilio(client, path, params, token=settings.TWILIO_AUTH_TOKEN)


def action_url(call: Call) -> str:
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{call.agent_id}/secretary?session={call.session_id}"


def test_the_secretary_call_asks_the_question_with_a_gather_that_posts_to_its_session(live_provider_settings):
    fake = live_provider_settings
    _agent, token = voice_agent()
    body = place(token)
    call = Call.objects.get()
    request = fake.last("twilio", "POST", CALLS)
    assert (request.form["To"], request.form["From"]) == (TARGET, AGENT_NUMBER)
    assert request.form["StatusCallback"] == "http://localhost:3100/webhooks/agent-a/call-status"
    assert "Url" not in request.form
    assert request.form["Twiml"] == (
        '<Response><Gather action="http://localhost:3100/webhooks/agent-a/secretary?session='
        f'{call.session_id}" actionOnEmptyResult="true" input="speech dtmf" language="en-US" method="POST" '
        'numDigits="1" speechTimeout="auto" timeout="6"><Say language="en-US">Hello Dana. This is an automated '
        'assistant calling on behalf of Tom &amp; Jerry about: the &lt;contract&gt; renewal. Can you take a call '
        'from Tom &amp; Jerry now? Say yes or press 1 to be connected. Say no or press 2.</Say></Gather>'
        '<Say language="en-US">I did not hear an answer. Goodbye.</Say><Hangup /></Response>'
    )
    assert body["callSid"] == call.call_sid and body["sessionId"] == call.session_id
    assert (body["from"], body["to"], body["status"]) == (AGENT_NUMBER, TARGET, "queued")
    assert "Dana" in body["description"] and REQUESTER in body["description"]
    assert (call.purpose, call.context["requesterPhone"]) == ("call_on_behalf", REQUESTER)
    assert parse_qs(urlsplit(action_url(call)).query) == {"session": [call.session_id]}


def test_a_spoken_yes_bridges_the_requester_and_becomes_the_outcome(client, live_provider_settings):
    _agent, token = voice_agent()
    place(token)
    call = Call.objects.get()
    response = answer(client, call, SpeechResult="Yes, sure, put them through.", Confidence="0.92")
    assert response.status_code == 200 and response["Content-Type"] == "text/xml"
    bridge_path = f"/webhooks/agent-a/secretary?session={call.session_id}&step=bridge"
    assert response.content.decode() == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Say language="en-US">Thank you. Connecting you now.</Say>'
        f'<Dial action="http://localhost:3100{bridge_path.replace("&", "&amp;")}" callerId="{AGENT_NUMBER}" '
        f'method="POST" timeout="30"><Number>{REQUESTER}</Number></Dial></Response>'
    )
    # The requester picked up and they talked; Twilio reports the bridge's end to the Dial's action.
    bridged = post_twilio(client, bridge_path, {"CallSid": call.call_sid, "DialCallStatus": "completed",
                                                "DialCallDuration": "80"}, token=settings.TWILIO_AUTH_TOKEN)
    assert bridged.status_code == 200 and b"<Hangup />" in bridged.content
    call_status(client, "agent-a", call.call_sid, "completed", CallDuration="95")
    outcome = Message.objects.get(kind="call_outcome")
    assert outcome.body == 'accepted: "Yes, sure, put them through."; bridge: completed'
    assert outcome.status == "completed"


def test_a_requester_who_does_not_pick_up_is_reported_and_the_callee_told(client, live_provider_settings):
    _agent, token = voice_agent()
    place(token)
    call = Call.objects.get()
    answer(client, call, Digits="1")
    bridged = post_twilio(client, f"/webhooks/agent-a/secretary?session={call.session_id}&step=bridge",
                          {"CallSid": call.call_sid, "DialCallStatus": "no-answer"}, token=settings.TWILIO_AUTH_TOKEN)
    assert "Sorry, Tom &amp; Jerry could not be reached right now. Goodbye." in bridged.content.decode()
    call_status(client, "agent-a", call.call_sid, "completed", CallDuration="40")
    assert Message.objects.get(kind="call_outcome").body == "accepted (pressed 1); bridge: no-answer"


def test_a_2_on_the_keypad_declines_politely(client, live_provider_settings):
    _agent, token = voice_agent()
    place(token)
    call = Call.objects.get()
    response = answer(client, call, Digits="2")
    text = response.content.decode()
    assert "<Dial" not in text and "<Hangup />" in text
    assert "No problem. I will let Tom &amp; Jerry know. Goodbye." in text
    call_status(client, "agent-a", call.call_sid, "completed", CallDuration="20")
    assert Message.objects.get(kind="call_outcome").body == "declined (pressed 2)"


def test_silence_ends_the_call_and_reports_no_answer(client, live_provider_settings):
    _agent, token = voice_agent()
    place(token)
    call = Call.objects.get()
    text = answer(client, call).content.decode()
    assert "I did not hear an answer. Goodbye." in text and "<Dial" not in text
    call_status(client, "agent-a", call.call_sid, "completed", CallDuration="15")
    assert Message.objects.get(kind="call_outcome").body == "no_answer"


def test_an_unclear_answer_is_asked_once_more(client, live_provider_settings):
    _agent, token = voice_agent()
    place(token)
    call = Call.objects.get()
    text = answer(client, call, SpeechResult="Who is this?").content.decode()
    assert "Sorry, I did not catch that." in text and "attempt=2" in text and "<Gather" in text
    assert "answer" not in Call.objects.get().context


def test_a_call_nobody_picked_up_reports_no_answer(client, live_provider_settings):
    _agent, token = voice_agent()
    place(token)
    call = Call.objects.get()
    call_status(client, "agent-a", call.call_sid, "no-answer")
    outcome = Message.objects.get(kind="call_outcome")
    assert (outcome.status, outcome.body) == ("no-answer", "no_answer")


def test_the_gather_action_is_signed_like_every_twilio_webhook(client, live_provider_settings):
    _agent, token = voice_agent()
    place(token)
    call = Call.objects.get()
    path = action_url(call).removeprefix(settings.PUBLIC_BASE_URL)
    assert post_twilio(client, path, {"Digits": "1"}, signature="").status_code == 403
    # A signature for another session's URL does not carry over.
    forged = post_twilio(client, path, {"Digits": "1"}, token=settings.TWILIO_AUTH_TOKEN,
                         signed_url=f"{settings.PUBLIC_BASE_URL}/webhooks/agent-a/secretary?session=vs_other")
    assert forged.status_code == 403
    assert "answer" not in Call.objects.get().context


def test_an_unknown_session_gets_an_empty_response(client, live_provider_settings):
    voice_agent()
    response = post_twilio(client, "/webhooks/agent-a/secretary?session=vs_unknown", {"Digits": "1"},
                           token=settings.TWILIO_AUTH_TOKEN)
    assert response.status_code == 200 and b"<Dial" not in response.content


def test_quiet_hours_apply_to_the_target(live_provider_settings):
    _agent, token = voice_agent()
    status, body = Api(token).post("call-on-behalf", {"target": TARGET, "requesterPhone": REQUESTER,
                                                      "recipientTimezone": etc_zone_at_local_hour(3)})
    assert (status, body["code"]) == (403, "quiet_hours")
    assert not Call.objects.exists() and not live_provider_settings.requests_to("twilio")


@pytest.mark.parametrize(
    ("speech", "digits", "reading"),
    [
        ("Yes", "", "accepted"), ("yeah okay", "", "accepted"), ("Sure, go ahead.", "", "accepted"),
        ("No problem, connect me", "", "accepted"), ("No.", "", "declined"), ("Not now, I'm busy", "", "declined"),
        ("Sorry, I can't talk", "", "declined"), ("", "1", "accepted"), ("", "2", "declined"), ("", "9", None),
        ("", "", ""), ("What?", "", None),
    ],
)
def test_it_reads_yes_and_no(speech, digits, reading):
    assert secretary_reading(speech=speech, digits=digits) == reading


def test_the_secretary_speaks_english_whatever_the_agents_language(live_provider_settings):
    _agent, token = voice_agent(language="de-DE")
    place(token)
    twiml = live_provider_settings.last("twilio", "POST", CALLS).form["Twiml"]
    assert 'language="en-US"' in twiml and "de-DE" not in twiml
    assert Call.objects.get().language == "en-US"


def test_an_english_speaking_agent_keeps_its_variant(live_provider_settings):
    _agent, token = voice_agent(language="en-GB")
    place(token)
    assert 'language="en-GB"' in live_provider_settings.last("twilio", "POST", CALLS).form["Twiml"]
