"""TwiML for live calls, built with the twilio library's builders (never by string formatting).

Pure functions: the caller reads the call and the agent and passes plain values in.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from twilio.twiml.voice_response import Connect, VoiceResponse

AI_DISCLOSURE = "You are speaking with an AI assistant."


@dataclass(frozen=True)
class RelaySettings:
    """What the caller hears and in which language, after the agent's and the server's defaults."""

    greeting: str
    language: str
    voice: str
    tts_provider: str | None


def relay_settings(*, greeting: str = "", language: str = "", voice: str = "") -> RelaySettings:
    """The call's own values, else VOICE_DEFAULT_GREETING / VOICE_DEFAULT_LANGUAGE; the AI disclosure
    goes first when VOICE_AI_DISCLOSURE is on. A call without a voice of its own speaks with
    ELEVENLABS_DEFAULT_VOICE when one is set (an ElevenLabs voice id), else Twilio's default voice."""
    text = greeting.strip() or settings.VOICE_DEFAULT_GREETING
    if settings.VOICE_AI_DISCLOSURE:
        text = f"{AI_DISCLOSURE} {text}"
    tts_provider = None
    if not voice and settings.ELEVENLABS_DEFAULT_VOICE:
        voice, tts_provider = settings.ELEVENLABS_DEFAULT_VOICE, "ElevenLabs"
    return RelaySettings(
        greeting=text, language=language or settings.VOICE_DEFAULT_LANGUAGE, voice=voice, tts_provider=tts_provider
    )


def conversation_relay(
    *, socket_url: str, action_url: str, relay: RelaySettings, parameters: dict[str, str]
) -> str:
    """`<Response><Connect action=…><ConversationRelay url=… welcomeGreeting=… …><Parameter …/>…`."""
    response = VoiceResponse()
    connect = Connect(action=action_url, method="POST")
    extra = {"voice": relay.voice} if relay.voice else {}
    if relay.tts_provider:
        extra["tts_provider"] = relay.tts_provider
    element = connect.conversation_relay(
        url=socket_url,
        welcome_greeting=relay.greeting,
        language=relay.language,
        dtmf_detection=True,
        interruptible="any",
        **extra,
    )
    for name, value in parameters.items():
        element.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def empty() -> str:
    """`<Response/>`: Twilio hangs up, and stops retrying the webhook."""
    return str(VoiceResponse())
