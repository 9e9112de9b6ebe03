"""TwiML of the scripted outbound calls (transfer, the call-on-behalf secretary, voice messages), built with
the twilio library's VoiceResponse so that every text and URL is escaped by the library, never by hand.

Pure functions: they take what to say and where to go, and return the document as a string. Documents
passed inline to the Calls API (`Twiml`) leave out the XML declaration: Twilio accepts either, and
inline TwiML is limited to 4,000 characters.
"""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

# How long the secretary waits for the callee to start answering, and the bridge for the requester to pick up.
GATHER_TIMEOUT_SECONDS = 6
DIAL_TIMEOUT_SECONDS = 30


def _say(response: VoiceResponse, text: str, language: str) -> None:
    if language:
        response.say(text, language=language)
    else:
        response.say(text)


def empty() -> str:
    return str(VoiceResponse())


def transfer(*, to: str, caller_id: str, announcement: str = "", language: str = "") -> str:
    """An optional announcement, then one <Dial> of the transfer target."""
    response = VoiceResponse()
    if announcement:
        _say(response, announcement, language)
    dial = response.dial(caller_id=caller_id) if caller_id else response.dial()
    dial.number(to)
    return str(response.to_xml(xml_declaration=False))


def secretary_question(*, question: str, action_url: str, language: str, no_input: str) -> str:
    """Ask the callee a yes/no question; the answer (speech or one key), or its absence, goes to action_url."""
    response = VoiceResponse()
    gather = response.gather(
        input="speech dtmf",
        num_digits=1,
        action=action_url,
        method="POST",
        timeout=GATHER_TIMEOUT_SECONDS,
        speech_timeout="auto",
        # Silence is posted to the action too, so the route records "no_answer" instead of Twilio
        # falling through to the next verb without telling us.
        action_on_empty_result=True,
        **({"language": language} if language else {}),
    )
    if language:
        gather.say(question, language=language)
    else:
        gather.say(question)
    # Reached only if the action cannot be fetched at all.
    _say(response, no_input, language)
    response.hangup()
    return str(response.to_xml(xml_declaration=False))


def secretary_bridge(*, text: str, requester: str, caller_id: str, language: str, action_url: str) -> str:
    """Connect the callee with the requester; how the bridge ended (DialCallStatus) is posted to action_url."""
    response = VoiceResponse()
    _say(response, text, language)
    dial = response.dial(caller_id=caller_id, timeout=DIAL_TIMEOUT_SECONDS, action=action_url, method="POST")
    dial.number(requester)
    return str(response)


def goodbye(*, text: str, language: str) -> str:
    response = VoiceResponse()
    _say(response, text, language)
    response.hangup()
    return str(response)


def play_message(*, audio_url: str, disclosure: str = "", language: str = "") -> str:
    """Play the voice message (after a short spoken disclosure, when one is given), then hang up."""
    response = VoiceResponse()
    if disclosure:
        _say(response, disclosure, language)
    response.play(audio_url)
    response.hangup()
    return str(response.to_xml(xml_declaration=False))
