"""Messaging operations (contract §6.1, §7): send-message, waiting-messages and the consent tools.

Each is one input model and one thin handler; REST views and MCP tools are generated from them.
Consent tools also answer over REST: POST /api/v1/consent/record, /consent/revoke, GET /consent/check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from agents.consent import consent_object, consent_record, consent_revoke, consent_status
from agents.principals import Principal, resolve_agent_id
from agents.selectors import agent_get_for_principal
from channels_app.addresses import normalize_recipient
from channels_app.channel_registry import channel_names
from channels_app.delivery.waiting import messages_take_waiting
from channels_app.services import SendMessageInput, message_send
from orchestrator.op_outputs import (
    ConsentCheckOutput,
    ConsentRecordOutput,
    ConsentRevokeOutput,
    SendMessageOutput,
    WaitingMessagesOutput,
)
from orchestrator.operations import OperationInput, one_of, operation

if TYPE_CHECKING:
    ContactChannel = str
else:
    # The registry's names, so the REST, MCP and OpenAPI schemas enumerate exactly those.
    ContactChannel = one_of(channel_names)


@operation(
    path="send-message",
    error_statuses=(409,),
    calls_providers=True,
    method="POST",
    tool="comms_send_message",
    input_model=SendMessageInput,
    output_model=SendMessageOutput,
    summary="Send an SMS, email, WhatsApp or LINE message",
    description="Send a message from the agent's own number or address. Policy checks (blocked channels, "
    "opt-outs, rate and spend limits, WhatsApp 24-hour window) run first; a refusal says why and when to retry.",
)
def send_message(principal: Principal, data: SendMessageInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    return message_send(agent=agent, request=data)


class WaitingMessagesInput(OperationInput):
    agent_id: str | None = None
    channel: ContactChannel | None = None
    limit: int = Field(default=50, ge=1, le=500)


@operation(
    path="waiting-messages",
    method="GET",
    tool="comms_get_waiting_messages",
    input_model=WaitingMessagesInput,
    output_model=WaitingMessagesOutput,
    summary="Fetch (and acknowledge) the agent's waiting inbound messages and events",
)
def get_waiting_messages(principal: Principal, data: WaitingMessagesInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    messages = messages_take_waiting(agent_id=agent.pk, channel=data.channel, limit=data.limit)
    return {"messages": messages, "count": len(messages), "acknowledged": len(messages)}


class ConsentInput(OperationInput):
    agent_id: str | None = None
    contact_address: str = Field(description="E.164 number, email address or LINE id.")
    channel: ContactChannel


class RecordConsentInput(ConsentInput):
    consent_type: Literal["express", "implied", "transactional"] = "express"
    source: str = Field(default="", max_length=200)
    notes: str = ""


@operation(
    path="consent/record",
    method="POST",
    tool="comms_record_consent",
    input_model=RecordConsentInput,
    output_model=ConsentRecordOutput,
    summary="Record that a contact consented to be contacted on a channel",
)
def record_consent(principal: Principal, data: RecordConsentInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    contact = normalize_recipient(data.channel, data.contact_address, field="contactAddress")
    consent = consent_record(agent=agent, channel=data.channel, contact=contact, consent_type=data.consent_type,
                             source=data.source, notes=data.notes)
    return {"success": True, **consent_object(consent)}


@operation(
    path="consent/revoke",
    method="POST",
    tool="comms_revoke_consent",
    input_model=ConsentInput,
    output_model=ConsentRevokeOutput,
    summary="Record that a contact withdrew consent (also stops further sends to them)",
)
def revoke_consent(principal: Principal, data: ConsentInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    contact = normalize_recipient(data.channel, data.contact_address, field="contactAddress")
    revoked = consent_revoke(agent=agent, channel=data.channel, contact=contact)
    return {"success": True, "agentId": agent.pk, "contactAddress": contact, "channel": data.channel,
            "revoked": revoked, "optedOut": True}


@operation(
    path="consent/check",
    method="GET",
    tool="comms_check_consent",
    input_model=ConsentInput,
    output_model=ConsentCheckOutput,
    summary="Check whether a contact consented and whether they opted out",
)
def check_consent(principal: Principal, data: ConsentInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    contact = normalize_recipient(data.channel, data.contact_address, field="contactAddress")
    return consent_status(agent=agent, channel=data.channel, contact=contact)
