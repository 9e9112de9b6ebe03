"""LINE and ElevenLabs through their real SDKs against the loopback fake."""

from __future__ import annotations

import uuid

import pytest

from channels_app.providers import elevenlabs_tts, registry
from channels_app.providers.base import OutboundMessage, ProviderError
from channels_app.providers.elevenlabs_tts import ElevenLabsTtsProvider
from channels_app.providers.line import RETRY_KEY_NAMESPACE, LineMessagingProvider
from tests.fake_providers import ELEVENLABS_API_KEY, FAKE_MP3, LINE_CHANNEL_ACCESS_TOKEN

LINE_USER = "U" + "4af4980629" + "0" * 22


def line_message(**kwargs) -> OutboundMessage:
    fields = {"channel": "line", "from_address": "", "to_address": LINE_USER, "body": "Tom & cat; 👋\r\nこんにちは"}
    fields.update(kwargs)
    return OutboundMessage(**fields)


def test_it_pushes_a_line_text_with_the_channel_token(live_provider_settings) -> None:
    result = registry.line_provider().send(line_message())
    request = live_provider_settings.last("line", "POST", "/v2/bot/message/push")
    assert request.bearer == LINE_CHANNEL_ACCESS_TOKEN
    assert request.json["to"] == LINE_USER
    assert request.json["messages"] == [{"type": "text", "text": "Tom & cat; 👋\r\nこんにちは"}]
    assert result.external_id.isdigit()
    assert (result.status, result.provider) == ("sent", "line")


def test_it_pushes_media_as_image_messages(live_provider_settings) -> None:
    registry.line_provider().send(line_message(body="", media_urls=("https://example.org/a.jpg",)))
    assert live_provider_settings.last("line").json["messages"] == [
        {"type": "image", "originalContentUrl": "https://example.org/a.jpg", "previewImageUrl": "https://example.org/a.jpg"}
    ]


def test_it_uses_an_agents_own_line_channel_token(live_provider_settings) -> None:
    live_provider_settings.line_tokens.add("agent-own-token")
    provider = registry.line_provider({"channel_access_token": "agent-own-token", "channel_secret": "s"})
    provider.send(line_message())
    assert live_provider_settings.last("line").bearer == "agent-own-token"


def test_it_sends_a_uuid_retry_key_derived_from_the_idempotency_key(live_provider_settings) -> None:
    registry.line_provider().send(line_message(idempotency_key="agent-a:k1"))
    expected = str(uuid.uuid5(RETRY_KEY_NAMESPACE, "agent-a:k1"))
    assert live_provider_settings.last("line").headers["x-line-retry-key"] == expected


def test_it_maps_an_invalid_line_recipient_to_a_permanent_error(live_provider_settings) -> None:
    with pytest.raises(ProviderError) as raised:
        registry.line_provider().send(line_message(to_address="not-a-user"))
    assert (raised.value.permanent, raised.value.status, raised.value.reason) == (True, 400, "invalid_recipient")


def test_it_maps_a_refused_line_token_to_a_permanent_auth_error(live_provider_settings) -> None:
    with pytest.raises(ProviderError) as raised:
        LineMessagingProvider("revoked").send(line_message())
    assert (raised.value.permanent, raised.value.reason) == (True, "auth_failed")


def test_it_treats_a_line_server_error_as_transient(live_provider_settings) -> None:
    live_provider_settings.script("line", status=500, json_body={"message": "oops"})
    with pytest.raises(ProviderError) as raised:
        registry.line_provider().send(line_message())
    assert raised.value.permanent is False


def test_it_fetches_line_bot_info(live_provider_settings) -> None:
    info = registry.line_provider().bot_info()
    assert live_provider_settings.last("line", "GET").path == "/v2/bot/info"
    assert (info.basic_id, info.display_name) == ("@123fake", "Fake LINE bot")


def test_it_synthesizes_speech_with_the_api_key_header(live_provider_settings, settings) -> None:
    settings.ELEVENLABS_DEFAULT_VOICE = "pNInz6obpgDQGcFmaJgB"
    audio = ElevenLabsTtsProvider().synthesize("Tom & cat; 👋")
    request = live_provider_settings.last("elevenlabs", "POST")
    assert request.path == "/v1/text-to-speech/pNInz6obpgDQGcFmaJgB"
    assert request.headers["xi-api-key"] == ELEVENLABS_API_KEY
    assert request.json["text"] == "Tom & cat; 👋"
    assert request.json["model_id"] == elevenlabs_tts.MODEL_ID
    assert request.query["output_format"] == [elevenlabs_tts.OUTPUT_FORMAT]
    assert audio.audio == FAKE_MP3
    assert (audio.content_type, audio.voice_id, audio.characters) == ("audio/mpeg", "pNInz6obpgDQGcFmaJgB", len("Tom & cat; 👋"))


def test_it_uses_the_requested_voice_over_the_default(live_provider_settings) -> None:
    ElevenLabsTtsProvider().synthesize("hi", voice_id="voice-x")
    assert live_provider_settings.last("elevenlabs", "POST").path == "/v1/text-to-speech/voice-x"


def test_it_lists_voices(live_provider_settings) -> None:
    voices = ElevenLabsTtsProvider().list_voices()
    assert [v.name for v in voices] == ["Rachel", "Adam"]


def test_it_maps_a_refused_elevenlabs_key_to_a_permanent_auth_error(live_provider_settings) -> None:
    with pytest.raises(ProviderError) as raised:
        elevenlabs_tts.check_api_key("sk_wrong")
    assert (raised.value.permanent, raised.value.status, raised.value.code) == (True, 401, "invalid_api_key")


def test_it_treats_elevenlabs_throttling_as_transient(live_provider_settings) -> None:
    live_provider_settings.script(
        "elevenlabs", status=429, json_body={"detail": {"status": "too_many_concurrent_requests", "message": "busy"}}
    )
    with pytest.raises(ProviderError) as raised:
        ElevenLabsTtsProvider().synthesize("hi")
    assert (raised.value.permanent, raised.value.reason) == (False, "rate_limited")
