"""comms_wait_for_message: the long poll for clients that cannot receive MCP notifications (contract §7)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agents.principals import Principal, resolve_agent_id
from agents.selectors import agent_get_for_principal
from channels_app.delivery import waiting
from channels_app.long_polls import long_poll_slot
from orchestrator.operations import OperationInput, operation


class WaitForMessageInput(OperationInput):
    agent_id: str | None = None
    channel: str | None = Field(default=None, pattern="^(sms|email|whatsapp|line|voice)$")
    timeout_seconds: float = Field(default=waiting.WAIT_DEFAULT_SECONDS, ge=0, le=waiting.WAIT_MAX_SECONDS)
    limit: int = Field(default=50, ge=1, le=100)


@operation(
    path="wait-for-message",
    method="GET",
    tool="comms_wait_for_message",
    input_model=WaitForMessageInput,
    long_running=True,
    summary="Wait for the next inbound messages (long poll); returns and acknowledges them",
    description=(
        "Blocks until at least one waiting message (SMS, email, WhatsApp, LINE, voicemail, call outcome, "
        "delivery failure) is there, then returns and acknowledges it; an empty list after timeoutSeconds "
        "(default 25, max 60). For clients that do not show MCP notifications."
    ),
)
def wait_for_message(principal: Principal, data: WaitForMessageInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    with long_poll_slot(agent_id=agent.id, org_id=agent.organization_id, timeout=data.timeout_seconds):
        messages = waiting.messages_wait(
            agent_id=agent.id, channel=data.channel, timeout=data.timeout_seconds, limit=data.limit
        )
    return {"messages": messages, "count": len(messages), "acknowledged": len(messages)}
