"""make-call against the loopback fake Twilio: the exact request, the §6.2 refusals that change nothing,
and a provider failure that leaves a failed Call row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agents.models import Agent, OptOut, UsageBucket, UsageRecord
from agents.usage import agent_limits_update
from tests.fake_providers import TWILIO_ACCOUNT_SID
from tests.ops_helpers import Api
from tests.voice.support import AGENT_NUMBER, TO, etc_zone_at_local_hour, voice_agent
from voice.models import Call
from voice.outbound import call_make

pytestmark = pytest.mark.django_db

CALLS = rf"/Accounts/{TWILIO_ACCOUNT_SID}/Calls\.json$"
ALLOWED = etc_zone_at_local_hour(14)


def test_it_places_the_call_with_the_outbound_voice_url_of_its_session(live_provider_settings):
    fake = live_provider_settings
    _agent, token = voice_agent()
    status, body = Api(token).post("make-call", {"to": TO, "greeting": "Hi Tom & Jerry", "systemPrompt": "Be brief.",
                                                 "voice": "Rachel", "language": "en-GB", "recipientTimezone": ALLOWED})
    assert status == 200, body
    call = Call.objects.get()
    request = fake.last("twilio", "POST", CALLS)
    assert request.form["To"] == TO
    assert request.form["From"] == AGENT_NUMBER
    assert request.form["Url"] == f"http://localhost:3100/webhooks/agent-a/outbound-voice?session={call.session_id}"
    assert request.form["Method"] == "POST"
    assert request.form["StatusCallback"] == "http://localhost:3100/webhooks/agent-a/call-status"
    assert request.form["StatusCallbackMethod"] == "POST"
    assert request.form_lists["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert "Twiml" not in request.form
    assert body == {"success": True, "callSid": call.call_sid, "sessionId": call.session_id, "status": "queued",
                    "from": AGENT_NUMBER, "to": TO}
    assert call.call_sid.startswith("CA")
    assert (call.direction, call.purpose, call.status) == ("outbound", "conversation", "queued")
    assert (call.greeting, call.system_prompt, call.voice, call.language) == (
        "Hi Tom & Jerry", "Be brief.", "Rachel", "en-GB")
    assert call.started_at is not None and call.ended_at is None
    record = UsageRecord.objects.get()
    assert (record.action_type, record.channel, record.reference) == ("make_call", "voice", call.session_id)


def test_the_agents_own_voice_settings_fill_in_what_the_request_leaves_out(live_provider_settings):
    agent, token = voice_agent(greeting="Hello from Acme", voice="Adam", language="de-DE")
    assert Api(token).post("make-call", {"to": TO, "recipientTimezone": ALLOWED})[0] == 200
    call = Call.objects.get()
    assert (call.greeting, call.voice, call.language) == ("Hello from Acme", "Adam", "de-DE")


def test_the_call_is_recorded_before_the_provider_is_asked(live_provider_settings):
    fake = live_provider_settings
    fake.script("twilio", status=500, json_body={"code": 20500, "message": "Internal error", "status": 500},
                method="POST", path=r"/Calls\.json$")
    _agent, token = voice_agent()
    status, body = Api(token).post("make-call", {"to": TO, "recipientTimezone": ALLOWED})
    assert (status, body["code"]) == (502, "provider_error")
    call = Call.objects.get()
    assert (call.status, call.call_sid) == ("failed", None)
    assert call.ended_at is not None and call.context["error"]["code"]
    # Nothing counted or charged for a call that never started.
    assert not UsageRecord.objects.exists()
    assert all(bucket.actions == 0 and bucket.spend == 0 for bucket in UsageBucket.objects.all())


def test_an_invalid_number_is_refused_before_anything_happens(live_provider_settings):
    _agent, token = voice_agent()
    status, body = Api(token).post("make-call", {"to": "12345"})
    assert (status, body["code"], body["field"]) == (400, "invalid_phone", "to")
    assert not Call.objects.exists() and not live_provider_settings.requests_to("twilio")


def test_it_refuses_a_call_in_the_recipients_quiet_hours_and_says_when_it_may_call(live_provider_settings):
    _agent, token = voice_agent()
    zone = etc_zone_at_local_hour(3)
    status, body = Api(token).post("make-call", {"to": TO, "recipientTimezone": zone})
    assert (status, body["code"]) == (403, "quiet_hours"), body
    next_allowed = datetime.fromisoformat(body["nextAllowedAt"].replace("Z", "+00:00"))
    # 03:xx local → the next 08:00 local, about five hours away.
    assert 4 * 3600 <= (next_allowed - datetime.now(UTC)).total_seconds() <= 5 * 3600 + 60
    assert not Call.objects.exists() and not live_provider_settings.requests_to("twilio")
    assert not UsageBucket.objects.filter(actions__gt=0).exists()


@pytest.mark.parametrize(
    ("to", "zone", "utc_now", "quiet", "next_allowed"),
    [
        # 05:00 in Los Angeles (PST, UTC-8): quiet until 08:00 PST = 16:00 UTC.
        ("+14155550123", None, datetime(2026, 1, 15, 13, 0, tzinfo=UTC), True, "2026-01-15T16:00:00+00:00"),
        ("+14155550123", None, datetime(2026, 1, 15, 20, 0, tzinfo=UTC), False, None),
        # 22:30 in Tokyo (UTC+9): quiet until 08:00 JST the next morning = 23:00 UTC.
        ("+81312345678", None, datetime(2026, 1, 15, 13, 30, tzinfo=UTC), True, "2026-01-15T23:00:00+00:00"),
        ("+81312345678", None, datetime(2026, 1, 15, 3, 0, tzinfo=UTC), False, None),
        # Berlin in summer time (UTC+2): 07:30 local is quiet until 08:00 local = 06:00 UTC.
        ("+4930123456", None, datetime(2026, 7, 1, 5, 30, tzinfo=UTC), True, "2026-07-01T06:00:00+00:00"),
        ("+4930123456", None, datetime(2026, 7, 1, 12, 0, tzinfo=UTC), False, None),
        # recipientTimezone wins over the number: a Los Angeles number carried to Berlin.
        ("+14155550123", "Europe/Berlin", datetime(2026, 1, 15, 20, 30, tzinfo=UTC), True, "2026-01-16T07:00:00+00:00"),
        # An Australian mobile spans the Cocos Islands (UTC+6:30) to Lord Howe (UTC+11 in summer): 09:30 in
        # Sydney is still 05:00 on Cocos, so it is quiet until 08:00 there (01:30 UTC).
        ("+61491570006", None, datetime(2026, 1, 15, 22, 30, tzinfo=UTC), True, "2026-01-16T01:30:00+00:00"),
        ("+61491570006", None, datetime(2026, 1, 16, 2, 0, tzinfo=UTC), False, None),
    ],
)
def test_quiet_hours_are_the_recipients_local_hours(live_provider_settings, to, zone, utc_now, quiet, next_allowed):
    from orchestrator.errors import ApiError

    agent, _token = voice_agent()
    if quiet:
        with pytest.raises(ApiError) as refused:
            call_make(agent=agent, to=to, recipient_timezone=zone, now=utc_now)
        assert (refused.value.status, refused.value.code) == (403, "quiet_hours")
        assert refused.value.extra["nextAllowedAt"] == next_allowed.replace("+00:00", "Z")
        assert not Call.objects.exists() and not live_provider_settings.requests_to("twilio")
    else:
        placed = call_make(agent=agent, to=to, recipient_timezone=zone, now=utc_now)
        assert placed["to"] == to
        assert live_provider_settings.last("twilio", "POST", CALLS).form["To"] == to


def test_a_fourth_call_to_the_same_number_today_is_refused_and_changes_nothing(live_provider_settings):
    fake = live_provider_settings
    _agent, token = voice_agent()
    api = Api(token)
    for _ in range(3):
        assert api.post("make-call", {"to": TO, "recipientTimezone": ALLOWED})[0] == 200
    status, body = api.post("make-call", {"to": TO, "recipientTimezone": ALLOWED})
    assert (status, body["code"], body["limitType"]) == (429, "rate_limited", "calls_per_number")
    assert body["retryAfter"] > 0
    assert Call.objects.count() == 3 and len(fake.requests_to("twilio", "POST", CALLS)) == 3
    # Another number is still fine.
    assert api.post("make-call", {"to": "+14155550124", "recipientTimezone": ALLOWED})[0] == 200


def test_the_per_number_limit_follows_the_agents_setting(live_provider_settings):
    agent, token = voice_agent()
    agent_limits_update(agent=agent, changes={"maxCallsPerDaySameNumber": 1})
    api = Api(token)
    assert api.post("make-call", {"to": TO, "recipientTimezone": ALLOWED})[0] == 200
    assert api.post("make-call", {"to": TO, "recipientTimezone": ALLOWED})[1]["limitType"] == "calls_per_number"


def test_an_opted_out_number_is_not_called(live_provider_settings):
    agent, token = voice_agent()
    OptOut.objects.create(agent=agent, channel="sms", contact=TO, keyword="STOP")
    status, body = Api(token).post("make-call", {"to": TO, "recipientTimezone": ALLOWED})
    assert (status, body["code"]) == (403, "opted_out")
    assert not Call.objects.exists() and not live_provider_settings.requests_to("twilio")


def test_a_blocked_voice_channel_is_refused(live_provider_settings):
    agent, token = voice_agent()
    Agent.objects.filter(pk=agent.pk).update(blocked_channels=["voice"])
    status, body = Api(token).post("make-call", {"to": TO, "recipientTimezone": ALLOWED})
    assert (status, body["code"]) == (403, "channel_blocked")
    assert not Call.objects.exists()


def test_live_mode_without_twilio_answers_503_and_records_nothing(settings):
    settings.DEMO_MODE = False
    settings.TWILIO_ACCOUNT_SID = None
    settings.TWILIO_AUTH_TOKEN = None
    _agent, token = voice_agent()
    status, body = Api(token).post("make-call", {"to": TO, "recipientTimezone": ALLOWED})
    assert (status, body["code"]) == (503, "provider_not_configured")
    assert not Call.objects.exists()


def test_an_agent_without_a_number_cannot_call(live_provider_settings):
    _agent, token = voice_agent(phone=None)
    status, body = Api(token).post("make-call", {"to": TO, "recipientTimezone": ALLOWED})
    assert (status, body["code"]) == (400, "channel_not_provisioned")
    assert not Call.objects.exists()


def test_an_org_token_must_name_the_agent_and_a_foreign_one_is_not_found(live_provider_settings, make_org):
    org, org_token = make_org("Acme")
    voice_agent("agent-a")
    voice_agent("agent-b", org=org, phone="+14155550101")
    api = Api(org_token)
    assert api.post("make-call", {"to": TO})[1]["code"] == "missing_agent_id"
    assert api.post("make-call", {"agentId": "agent-a", "to": TO})[0] == 404
    status, body = api.post("make-call", {"agentId": "agent-b", "to": TO, "recipientTimezone": ALLOWED})
    assert status == 200 and body["from"] == "+14155550101"
    assert Decimal(UsageRecord.objects.get().provider_cost) > 0


def test_an_unknown_time_zone_is_a_400_naming_the_field(live_provider_settings):
    _agent, token = voice_agent()
    status, body = Api(token).post("make-call", {"to": TO, "recipientTimezone": "Mars/Olympus_Mons"})
    assert (status, body["code"], body["field"]) == (400, "invalid_request", "recipientTimezone")
    assert not Call.objects.exists()


def test_a_sandbox_number_twilio_would_refuse_fails_the_call_in_demo_mode_too(settings):
    settings.DEMO_MODE = True
    _agent, token = voice_agent()
    status, body = Api(token).post("make-call", {"to": "+15005550001", "recipientTimezone": ALLOWED})
    assert (status, body["code"], body["providerCode"]) == (502, "provider_error", "21211")
    call = Call.objects.get()
    assert (call.status, call.call_sid) == ("failed", None)
