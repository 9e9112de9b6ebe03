"""Text to speech through ElevenLabs.

Quirks: `convert` streams the audio back as an iterator of byte chunks; we join them (voice messages are
short). Without ELEVENLABS_DEFAULT_VOICE we use the premade "Rachel" voice every account has. The
multilingual model detects the language itself, so `language` is not sent (passing `language_code` to a
model that does not support it is an error). ElevenLabs bills characters against a plan rather than
per request, so cost is the price table's per-1,000-characters estimate. The MP3 is constant bit rate
(OUTPUT_FORMAT), so its length in seconds follows from its size.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import httpx
from django.conf import settings
from elevenlabs import ElevenLabs
from elevenlabs.core.api_error import ApiError

from channels_app.providers import pricing
from channels_app.providers.base import ProviderError, ProviderNotConfigured, TtsAudio, Voice

PROVIDER = "elevenlabs"
DEFAULT_VOICE_ID = "21m00Tcm4TlvDq8ikWAM"  # "Rachel", a premade voice available to every account
MODEL_ID = "eleven_multilingual_v2"
OUTPUT_FORMAT = "mp3_44100_128"
OUTPUT_BITS_PER_SECOND = 128_000
TIMEOUT_SECONDS = 30.0


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None) -> ElevenLabs:
    return ElevenLabs(api_key=api_key, base_url=base_url, timeout=TIMEOUT_SECONDS)


def client_for(api_key: str) -> ElevenLabs:
    return _client(api_key, settings.ELEVENLABS_API_BASE_URL)


def map_error(exc: Exception) -> ProviderError:
    if isinstance(exc, ApiError):
        status = int(exc.status_code or 0)
        detail = exc.body.get("detail") if isinstance(exc.body, dict) else None
        code = detail.get("status") if isinstance(detail, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else None
        if status == 429 or status >= 500:
            permanent, reason = False, ("rate_limited" if status == 429 else "unavailable")
        elif status in (401, 403):
            permanent, reason = True, "auth_failed"
        elif status == 404:
            permanent, reason = True, "not_found"
        else:
            permanent, reason = True, "rejected"
        return ProviderError(
            str(message or f"ElevenLabs answered HTTP {status}"),
            provider=PROVIDER,
            permanent=permanent,
            code=str(code) if code else None,
            status=status,
            reason=reason,
        )
    return ProviderError(f"ElevenLabs unreachable: {exc.__class__.__name__}", provider=PROVIDER, permanent=False)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except (ApiError, httpx.HTTPError) as exc:
        raise map_error(exc) from exc


class ElevenLabsTtsProvider:
    name = PROVIDER

    def __init__(self, api_key: str | None = None) -> None:
        key = api_key or settings.ELEVENLABS_API_KEY
        if not key:
            raise ProviderNotConfigured("tts", ("ELEVENLABS_API_KEY",))
        self.client = client_for(key)

    def synthesize(self, text: str, *, voice_id: str | None = None, language: str | None = None) -> TtsAudio:
        voice = voice_id or settings.ELEVENLABS_DEFAULT_VOICE or DEFAULT_VOICE_ID
        with translate_errors():
            audio = b"".join(
                self.client.text_to_speech.convert(voice, text=text, model_id=MODEL_ID, output_format=OUTPUT_FORMAT)
            )
        return TtsAudio(
            audio=audio,
            content_type="audio/mpeg",
            voice_id=voice,
            characters=len(text),
            cost=pricing.estimate_tts_cost(len(text)),
            duration_seconds=len(audio) * 8 / OUTPUT_BITS_PER_SECOND,
        )

    def list_voices(self) -> list[Voice]:
        with translate_errors():
            response = self.client.voices.get_all()
        return [Voice(voice_id=v.voice_id, name=str(v.name or v.voice_id), category=str(v.category or "")) for v in response.voices]


def is_configured() -> bool:
    return bool(settings.ELEVENLABS_API_KEY)


def readiness_check() -> None:
    ElevenLabsTtsProvider().list_voices()


def check_api_key(api_key: str) -> int:
    """List voices with an explicit key (the admin's credential test); returns how many there are."""
    return len(ElevenLabsTtsProvider(api_key).list_voices())
