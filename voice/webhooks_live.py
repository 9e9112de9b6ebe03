"""Twilio's voice webhooks for live calls: answer with ConversationRelay TwiML (contract §8).

`/voice` is an inbound call to the agent's number: the call is on record before Twilio gets its TwiML.
`/outbound-voice?session=…` is the call make-call placed, fetched by Twilio when the callee answers.
Both connect the call to our voice socket with a URL signed for this agent and call session.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents.models import Agent
from channels_app.providers.base import webhook_url
from channels_app.webhooks import refuse_signature, twilio_params
from orchestrator import metrics
from voice import live, socket_auth, twiml
from voice.models import Call


def _twiml(body: str, *, kind: str, outcome: str) -> HttpResponse:
    metrics.labelled(metrics.WEBHOOKS_RECEIVED, type=kind, outcome=outcome).inc()
    return HttpResponse(body.encode(), content_type="text/xml")


def _relay(call: Call, agent: Agent) -> str:
    return twiml.conversation_relay(
        socket_url=socket_auth.socket_url(agent_id=call.agent_id, session_id=call.session_id),
        # When the relay session ends Twilio posts here; call-status answers <Response/>, which hangs up.
        action_url=webhook_url(call.agent_id, "call-status"),
        relay=twiml.relay_settings(
            greeting=call.greeting or agent.greeting,
            language=call.language or agent.language,
            voice=call.voice or agent.voice,
        ),
        parameters={"sessionId": call.session_id, "agentId": call.agent_id, "direction": call.direction},
    )


@csrf_exempt
@require_POST
def voice_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    """An inbound call: record it, then connect it to the agent over ConversationRelay."""
    params = twilio_params(request)
    if params is None:
        return refuse_signature("voice")
    agent = live.agent_for_voice(agent_id)
    if agent is None or not live.agent_takes_calls(agent):
        return _twiml(twiml.empty(), kind="voice", outcome="ignored")
    call = live.call_start_inbound(agent=agent, params=params)
    if call is None:
        return _twiml(twiml.empty(), kind="voice", outcome="ignored")
    return _twiml(_relay(call, agent), kind="voice", outcome="stored")


@csrf_exempt
@require_POST
def outbound_voice_webhook(request: HttpRequest, agent_id: str) -> HttpResponse:
    """The callee of an outbound call answered: connect them to the agent for the call's session."""
    params = twilio_params(request)
    if params is None:
        return refuse_signature("outbound_voice")
    agent = live.agent_for_voice(agent_id)
    if agent is None or not live.agent_takes_calls(agent):
        return _twiml(twiml.empty(), kind="outbound_voice", outcome="ignored")
    call = live.call_for_outbound_twiml(
        agent=agent, session_id=request.GET.get("session", ""), call_sid=params.get("CallSid", "")
    )
    if call is None:
        return _twiml(twiml.empty(), kind="outbound_voice", outcome="ignored")
    return _twiml(_relay(call, agent), kind="outbound_voice", outcome="stored")
