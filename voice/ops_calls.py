"""Outbound voice operations (contract §6.1, §7): make-call, call-on-behalf, send-voice-message,
transfer-call and calls/<callSid>. One input model and one thin handler each; REST views and MCP tools
are generated from them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agents.principals import Principal, Role, resolve_agent_id
from agents.selectors import agent_get_for_principal
from orchestrator.op_outputs import Output
from orchestrator.operations import OperationInput, operation
from voice import outbound
from voice.selectors import call_get_for_principal, call_object

AGENT_ID = Field(default=None, description="Optional with an agent token (taken from it).")
TIMEZONE = Field(default=None, max_length=64, description="IANA zone of the recipient (e.g. Europe/Berlin); "
                 "without it the zones of the number are used. Calls are allowed 8:00-21:00 local time.")


class PlacedCallOutput(Output):
    success: bool
    call_sid: str
    session_id: str
    status: str
    from_: str = Field(alias="from")
    to: str


class CallOnBehalfOutput(PlacedCallOutput):
    description: str


class VoiceMessageOutput(Output):
    success: bool
    call_sid: str
    status: str
    from_: str = Field(alias="from")
    to: str
    audio_url: str = Field(description="Public, unguessable, expires after 24 hours.")
    duration_seconds: float | None


class TransferOutput(Output):
    success: bool
    call_sid: str
    transferred_to: str = Field(description="The E.164 number the call was handed to.")
    status: str


class CallOutput(Output):
    call_sid: str | None
    agent_id: str
    direction: str = Field(description="inbound or outbound")
    status: str
    from_: str = Field(alias="from")
    to: str
    duration_seconds: int | None
    cost: float | None = Field(description="USD; null while the provider has not priced the call.")
    started_at: str | None
    ended_at: str | None


class MakeCallInput(OperationInput):
    agent_id: str | None = AGENT_ID
    to: str = Field(description="E.164 number to call.")
    greeting: str = Field(default="", max_length=1000, description="First words of the AI; the agent's own if absent.")
    system_prompt: str = Field(default="", max_length=20000)
    voice: str = Field(default="", max_length=100)
    language: str = Field(default="", max_length=20, description="e.g. en-US")
    recipient_timezone: str | None = TIMEZONE


@operation(
    path="make-call",
    calls_providers=True,
    method="POST",
    tool="comms_make_call",
    input_model=MakeCallInput,
    output_model=PlacedCallOutput,
    summary="Call a number; the agent talks with the callee over the live voice session",
    description="Places an outbound call from the agent's number. Quiet hours (8:00-21:00 recipient local time), "
    "opt-outs, rate limits and maxCallsPerDaySameNumber are checked first. A call_outcome event follows when it ends.",
)
def make_call(principal: Principal, data: MakeCallInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    return outbound.call_make(agent=agent, to=data.to, greeting=data.greeting, system_prompt=data.system_prompt,
                     voice=data.voice, language=data.language, recipient_timezone=data.recipient_timezone)


class CallOnBehalfInput(OperationInput):
    agent_id: str | None = AGENT_ID
    target: str = Field(description="E.164 number of the person to reach.")
    requester_phone: str = Field(description="E.164 number of the person who wants to talk; bridged in on yes.")
    target_name: str = Field(default="", max_length=100)
    requester_name: str = Field(default="", max_length=100)
    message: str = Field(default="", max_length=500, description="What the call is about.")
    recipient_timezone: str | None = TIMEZONE


@operation(
    path="call-on-behalf",
    calls_providers=True,
    method="POST",
    tool="comms_call_on_behalf",
    input_model=CallOnBehalfInput,
    output_model=CallOnBehalfOutput,
    summary="A secretary calls someone and asks whether they can take a call from the requester",
    description="The callee answers by voice (yes/no) or keypad (1/2); on yes the requester is connected. The "
    "answer arrives as the call_outcome's body: accepted, declined or no_answer, with what was said.",
)
def call_on_behalf(principal: Principal, data: CallOnBehalfInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    return outbound.call_on_behalf(agent=agent, target=data.target, requester_phone=data.requester_phone,
                          target_name=data.target_name, requester_name=data.requester_name, message=data.message,
                          recipient_timezone=data.recipient_timezone)


class VoiceMessageInput(OperationInput):
    agent_id: str | None = AGENT_ID
    to: str = Field(description="E.164 number to call.")
    text: str = Field(description="What to say (synthesized by ElevenLabs), up to 5,000 characters.")
    voice: str = Field(default="", max_length=100, description="ElevenLabs voice id; the agent's or the default.")
    recipient_timezone: str | None = TIMEZONE


@operation(
    path="send-voice-message",
    calls_providers=True,
    method="POST",
    tool="comms_send_voice_message",
    input_model=VoiceMessageInput,
    output_model=VoiceMessageOutput,
    summary="Call a number and play a synthesized voice message",
)
def send_voice_message(principal: Principal, data: VoiceMessageInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    return outbound.voice_message_send(agent=agent, to=data.to, text=data.text, voice=data.voice,
                              recipient_timezone=data.recipient_timezone)


class TransferInput(OperationInput):
    agent_id: str | None = AGENT_ID
    call_sid: str = Field(max_length=64, description="The agent's own live call.")
    to: str = Field(max_length=64, description="E.164 number, or the id of another agent of your organization.")
    announcement_text: str = Field(default="", max_length=1000, description="Said to the caller before the transfer.")


@operation(
    path="transfer-call",
    error_statuses=(409,),  # call_not_live
    calls_providers=True,
    method="POST",
    tool="comms_transfer_call",
    input_model=TransferInput,
    output_model=TransferOutput,
    summary="Transfer the agent's live call to a number or to another agent",
)
def transfer_call(principal: Principal, data: TransferInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    return outbound.call_transfer(agent=agent, call_sid=data.call_sid, to=data.to, announcement=data.announcement_text)


class GetCallInput(OperationInput):
    agent_id: str | None = Field(default=None, description="Narrows an org token's lookup to one agent.")
    call_sid: str = Field(max_length=64)


@operation(
    path="calls/<str:callSid>",
    method="GET",
    tool="comms_get_call",
    input_model=GetCallInput,
    output_model=CallOutput,
    summary="A call of the agent (or, with an org token, of the organization): status, duration, cost",
    path_params=("callSid",),
)
def get_call(principal: Principal, data: GetCallInput) -> dict[str, Any]:
    agent_id = resolve_agent_id(principal, data.agent_id) if principal.role is Role.AGENT else data.agent_id
    call = call_get_for_principal(principal=principal, call_sid=data.call_sid, agent_id=agent_id)
    return call_object(call)
