"""The agent's side of a live call when its client cannot sample (contract §7): answer the caller
of a `voice_prompt` with comms_voice_reply, or end the call with comms_end_call."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agents.principals import Principal, resolve_agent_id
from agents.selectors import agent_get_for_principal
from orchestrator.operations import OperationInput, operation
from voice import live

MAX_SPOKEN_CHARS = 4000


class VoiceReplyInput(OperationInput):
    agent_id: str | None = None
    call_sid: str = Field(min_length=1, max_length=64)
    text: str = Field(max_length=MAX_SPOKEN_CHARS)
    last: bool = True
    # Beyond the contract's fields, for what ConversationRelay can do besides speaking: audio played
    # before the text (Twilio fetches it, so only https), keypad tones (an IVR on an outbound call).
    play_url: str | None = Field(default=None, max_length=2000, pattern=r"^https://[^\s]+$")
    digits: str | None = Field(default=None, pattern=r"^[0-9*#wW]{1,32}$")


class EndCallInput(OperationInput):
    agent_id: str | None = None
    call_sid: str = Field(min_length=1, max_length=64)
    text: str = Field(default="", max_length=MAX_SPOKEN_CHARS)


@operation(
    path="voice-reply",
    method="POST",
    tool="comms_voice_reply",
    input_model=VoiceReplyInput,
    summary="Say something to the caller of a live call (the answer to a voice_prompt)",
    description=(
        "Speaks `text` to the caller of your live call `callSid`. The answer to a `voice_prompt` "
        "notification, for clients that cannot sample. Stream a long answer with several calls with "
        "`last: false` and a final one with `last: true` (the default). Answer within "
        "VOICE_TURN_TIMEOUT_SECONDS of the prompt, or the answering machine takes the call over. "
        "Optionally `playUrl` (https audio played first) and `digits` (keypad tones sent first, 0-9 * # w)."
    ),
)
def voice_reply(principal: Principal, data: VoiceReplyInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    call = live.call_live_for_agent(agent_id=agent.id, call_sid=data.call_sid)
    message = {"type": "voice.reply", "text": data.text, "last": data.last, "play": data.play_url or "", "digits": data.digits or ""}
    live.call_message_send(session_id=call.session_id, message=message)
    return {"success": True, "callSid": data.call_sid, "last": data.last}


@operation(
    path="end-call",
    method="POST",
    tool="comms_end_call",
    input_model=EndCallInput,
    summary="End a live call, optionally saying goodbye first",
    description="Says `text` (if given) to the caller of your live call `callSid`, then hangs up.",
)
def end_call(principal: Principal, data: EndCallInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    call = live.call_live_for_agent(agent_id=agent.id, call_sid=data.call_sid)
    live.call_message_send(session_id=call.session_id, message={"type": "voice.end", "text": data.text})
    return {"success": True, "callSid": data.call_sid, "status": "ending"}
