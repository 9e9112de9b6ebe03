"""Reads over calls and voice-message audio: tenant-scoped call lookups and the §6.1 call object."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from agents.models import AddressKind, Agent, ChannelAddress
from agents.principals import Principal, Role
from orchestrator.errors import ApiError
from orchestrator.timestamps import iso_utc
from voice.models import Call, VoiceAudio


def call_object(call: Call) -> dict[str, Any]:
    """The `GET /calls/<callSid>` body (contract §6.1)."""
    return {
        "callSid": call.call_sid,
        "agentId": call.agent_id,
        "direction": call.direction,
        "status": call.status,
        "from": call.from_address,
        "to": call.to_address,
        "durationSeconds": call.duration_seconds,
        "cost": float(call.cost) if call.cost is not None else None,
        "startedAt": iso_utc(call.started_at),
        "endedAt": iso_utc(call.ended_at),
    }


def _not_found(call_sid: str) -> ApiError:
    return ApiError(404, "call_not_found", f"No call {call_sid!r} of yours.", field="callSid")


def call_get_for_principal(*, principal: Principal, call_sid: str, agent_id: str | None = None) -> Call:
    """The call, if this caller may see it: an agent token its own calls, an org token its organization's
    (optionally narrowed to `agent_id`), the orchestrator token any. Anything else is 404 call_not_found,
    so a caller cannot learn that another tenant's call exists."""
    if not call_sid:
        raise _not_found(call_sid)
    calls = Call.objects.filter(call_sid=call_sid)
    if principal.role is Role.AGENT:
        calls = calls.filter(agent_id=principal.agent_id)
    elif principal.role is Role.ORG_ADMIN:
        calls = calls.filter(organization_id=principal.org_id)
    if agent_id:
        calls = calls.filter(agent_id=agent_id)
    call = calls.first()
    if call is None:
        raise _not_found(call_sid)
    return call


def call_get_of_agent(*, agent: Agent, call_sid: str) -> Call:
    """One of `agent`'s calls, else 404 call_not_found (another agent's call is not found either)."""
    call = Call.objects.filter(call_sid=call_sid, agent=agent).first() if call_sid else None
    if call is None:
        raise _not_found(call_sid)
    return call


def call_find_for_webhook(*, agent_id: str, call_sid: str = "", session_id: str = "") -> Call | None:
    """The agent's call named by a provider callback (by CallSid, else by our session id)."""
    if call_sid:
        found = Call.objects.filter(agent_id=agent_id, call_sid=call_sid).first()
        if found is not None or not session_id:
            return found
    if session_id:
        return Call.objects.filter(agent_id=agent_id, session_id=session_id).first()
    return None


def agent_voice_number(agent: Agent, *, field: str = "agentId") -> str:
    """The agent's own phone number, which its calls come from."""
    number = (
        ChannelAddress.objects.filter(agent=agent, kind=AddressKind.PHONE, released_at__isnull=True)
        .order_by("pk")
        .values_list("address", flat=True)
        .first()
    )
    if not number:
        raise ApiError(400, "channel_not_provisioned", f"Agent {agent.pk!r} has no phone number to call from.",
                       field=field, hint="Provision the agent with the 'voice' capability.")
    return str(number)


def voice_audio_get_live(*, token: str) -> VoiceAudio | None:
    """The stored audio for a URL token, unless it has expired."""
    return VoiceAudio.objects.filter(token=token, expires_at__gt=timezone.now()).first()
