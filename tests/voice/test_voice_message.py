"""send-voice-message: ElevenLabs TTS through its SDK, the audio served at an unguessable expiring URL with
its real type, and a call whose TwiML plays it."""

from __future__ import annotations

import io
import wave
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import UsageBucket, UsageRecord
from channels_app.models import Message
from channels_app.providers import elevenlabs_tts
from tests.fake_providers import FAKE_MP3, TWILIO_ACCOUNT_SID
from tests.ops_helpers import Api
from tests.voice.support import AGENT_NUMBER, TO, etc_zone_at_local_hour, voice_agent, wait_until
from voice.models import Call, VoiceAudio

pytestmark = pytest.mark.django_db

CALLS = rf"/Accounts/{TWILIO_ACCOUNT_SID}/Calls\.json$"
ALLOWED = etc_zone_at_local_hour(14)
TEXT = "Your table for two is confirmed at 7 pm. Tom & Jerry's, 5th Avenue."


def fetch(url: str):
    return Client().get(urlsplit(url).path)


def test_it_synthesizes_stores_and_calls_with_a_play_of_the_audio_url(live_provider_settings):
    fake = live_provider_settings
    _agent, token = voice_agent()
    status, body = Api(token).post("send-voice-message", {"to": TO, "text": TEXT, "voice": "pNInz6obpgDQGcFmaJgB",
                                                          "recipientTimezone": ALLOWED})
    assert status == 200, body
    tts = fake.last("elevenlabs", "POST")
    assert tts.path == "/v1/text-to-speech/pNInz6obpgDQGcFmaJgB"
    assert tts.json["text"] == TEXT and tts.json["model_id"] == elevenlabs_tts.MODEL_ID
    assert tts.query["output_format"] == [elevenlabs_tts.OUTPUT_FORMAT]
    audio = VoiceAudio.objects.get()
    call = Call.objects.get()
    url = f"http://localhost:3100/media/voice/{audio.token}.mp3"
    assert body == {"success": True, "callSid": call.call_sid, "status": "queued", "from": AGENT_NUMBER, "to": TO,
                    "audioUrl": url, "durationSeconds": round(len(FAKE_MP3) * 8 / 128_000, 1)}
    request = fake.last("twilio", "POST", CALLS)
    assert (request.form["To"], request.form["From"]) == (TO, AGENT_NUMBER)
    assert request.form["StatusCallback"] == "http://localhost:3100/webhooks/agent-a/call-status"
    assert request.form["Twiml"] == (
        '<Response><Say language="en-US">This is an automated voice message from Agent-A.</Say>'
        f"<Play>{url}</Play><Hangup /></Response>"
    )
    assert len(audio.token) >= 43 and audio.call_id == call.pk and call.purpose == "voice_message"
    # The audio is asked for before the call, so the order of the provider requests says so too.
    services = [r.service for r in fake.requests]
    assert services.index("elevenlabs") < services.index("twilio")
    record = UsageRecord.objects.get()
    assert record.action_type == "send_voice_message"


def test_the_audio_url_serves_the_mp3_with_its_type_until_it_expires(live_provider_settings):
    _agent, token = voice_agent()
    url = Api(token).post("send-voice-message", {"to": TO, "text": TEXT, "recipientTimezone": ALLOWED})[1]["audioUrl"]
    response = fetch(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert response.content == FAKE_MP3 and response["Content-Length"] == str(len(FAKE_MP3))
    assert Client().head(urlsplit(url).path).status_code == 200
    assert fetch(url.replace(".mp3", "x.mp3")).status_code == 404
    VoiceAudio.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = fetch(url)
    assert expired.status_code == 404 and expired.json()["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_voice_is_a_valid_wav_served_as_audio_wav_and_the_demo_call_plays_it_through(settings):
    settings.DEMO_MODE = True
    settings.VOICE_SIMULATION_STEP_SECONDS = 0
    _agent, token = voice_agent()
    status, body = Api(token).post("send-voice-message", {"to": TO, "text": "one two three four five",
                                                          "recipientTimezone": ALLOWED})
    assert status == 200, body
    assert body["audioUrl"].endswith(".wav") and body["durationSeconds"] == 2.0
    response = fetch(body["audioUrl"])
    assert response["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as audio:
        assert audio.getnchannels() == 1 and audio.getframerate() == 8000
        assert audio.getnframes() / audio.getframerate() == pytest.approx(2.0)
    # The simulated call lasts as long as its audio.
    wait_until(lambda: Call.objects.get().status == "completed", what="the end of the simulated call")
    wait_until(lambda: Message.objects.filter(kind="call_outcome").exists(), what="the call outcome")
    assert Call.objects.get().duration_seconds == 2
    assert Message.objects.get(kind="call_outcome").call_sid == body["callSid"]


def test_quiet_hours_apply_and_nothing_is_synthesized_or_called(live_provider_settings):
    _agent, token = voice_agent()
    status, body = Api(token).post("send-voice-message", {"to": TO, "text": TEXT,
                                                          "recipientTimezone": etc_zone_at_local_hour(23)})
    assert (status, body["code"]) == (403, "quiet_hours")
    assert not live_provider_settings.requests and not Call.objects.exists() and not VoiceAudio.objects.exists()


def test_a_tts_failure_is_a_502_with_a_failed_call_and_no_phone_call(live_provider_settings):
    fake = live_provider_settings
    fake.script("elevenlabs", status=500, json_body={"detail": {"status": "error", "message": "boom"}})
    _agent, token = voice_agent()
    status, body = Api(token).post("send-voice-message", {"to": TO, "text": TEXT, "recipientTimezone": ALLOWED})
    assert (status, body["code"]) == (502, "provider_error")
    assert Call.objects.get().status == "failed"
    assert not fake.requests_to("twilio") and not VoiceAudio.objects.exists()
    assert not UsageRecord.objects.exists() and not UsageBucket.objects.filter(actions__gt=0).exists()


def test_empty_or_overlong_text_is_refused(live_provider_settings):
    _agent, token = voice_agent()
    api = Api(token)
    assert api.post("send-voice-message", {"to": TO, "text": "  "})[1]["field"] == "text"
    assert api.post("send-voice-message", {"to": TO, "text": "x" * 5001})[1]["field"] == "text"
    assert not live_provider_settings.requests
