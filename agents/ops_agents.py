"""Agent operations (contract §6.1, §7): provision, deprovision, channel-status, usage, billing,
agent-limits and regenerate-token. Provision, deprovision, agent-limits and regenerate-token need an
org or orchestrator token."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from agents.models import DEFAULT_ORG_ID, Organization
from agents.principals import Principal, Role, require_admin, resolve_agent_id
from agents.provisioning import ProvisionInput, agent_channel_status, agent_deprovision, agent_provision
from agents.selectors import agent_get_for_principal, organization_get_for_principal
from agents.services import agent_token_issue
from agents.usage import agent_limits_update, billing_summary, limits_object, usage_dashboard
from orchestrator.op_outputs import (
    AgentLimitsOutput,
    BillingOutput,
    ChannelStatusOutput,
    DeprovisionOutput,
    ProvisionOutput,
    RegenerateTokenOutput,
    UsageOutput,
)
from orchestrator.operations import OperationInput, operation


class AgentInput(OperationInput):
    agent_id: str | None = Field(default=None, description="Optional with an agent token (taken from it).")


@operation(
    path="channel-status",
    method="GET",
    tool="comms_get_channel_status",
    input_model=AgentInput,
    output_model=ChannelStatusOutput,
    summary="The agent's channels, blocked channels and whether it has a live session",
)
def get_channel_status(principal: Principal, data: AgentInput) -> dict[str, Any]:
    # Org and orchestrator tokens still see a deprovisioned agent (status "deprovisioned").
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id),
                                    allow_deprovisioned=principal.is_admin)
    return agent_channel_status(agent=agent)


class UsageInput(AgentInput):
    period: Literal["today", "week", "month", "all"] = "today"


@operation(
    path="usage",
    method="GET",
    tool="comms_get_usage_dashboard",
    input_model=UsageInput,
    output_model=UsageOutput,
    summary="Actions, costs, limits and current counters of the agent",
)
def get_usage_dashboard(principal: Principal, data: UsageInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    return usage_dashboard(agent=agent, period=data.period)


class BillingInput(AgentInput):
    period: Literal["today", "week", "month", "all"] = "month"


@operation(
    path="billing",
    method="GET",
    tool="comms_get_billing_summary",
    input_model=BillingInput,
    output_model=BillingOutput,
    summary="Provider cost and billed cost (with the agent's markup) per channel",
)
def get_billing_summary(principal: Principal, data: BillingInput) -> dict[str, Any]:
    agent = agent_get_for_principal(principal, resolve_agent_id(principal, data.agent_id))
    return billing_summary(agent=agent, period=data.period)


def _organization_for(principal: Principal, org_id: str | None) -> Organization:
    if principal.role is Role.ORG_ADMIN:
        assert principal.org_id is not None
        return organization_get_for_principal(principal, org_id or principal.org_id)
    return organization_get_for_principal(principal, org_id or DEFAULT_ORG_ID)


@operation(
    path="provision",
    error_statuses=(409,),
    calls_providers=True,
    method="POST",
    tool="comms_provision_channels",
    input_model=ProvisionInput,
    output_model=ProvisionOutput,
    summary="Create an agent with a phone number, WhatsApp sender, email address and LINE channel",
    description="Buys a number in live mode (sandbox range in demo mode) with its webhooks pointed here. "
    "The agent's token and callback secret are returned once.",
)
def provision_channels(principal: Principal, data: ProvisionInput) -> dict[str, Any]:
    require_admin(principal)
    organization = _organization_for(principal, data.org_id)
    return agent_provision(organization=organization, request=data)


class DeprovisionInput(OperationInput):
    agent_id: str
    release_number: bool = True


@operation(
    path="deprovision",
    calls_providers=True,
    method="POST",
    tool="comms_deprovision_channels",
    input_model=DeprovisionInput,
    output_model=DeprovisionOutput,
    summary="Release the agent's number and sender and revoke its tokens",
)
def deprovision_channels(principal: Principal, data: DeprovisionInput) -> dict[str, Any]:
    require_admin(principal)
    agent = agent_get_for_principal(principal, data.agent_id)
    return agent_deprovision(agent=agent, release_number=data.release_number)


# The counts are PositiveIntegerFields: 2**31 - 1 is the largest every database stores.
MAX_COUNT_LIMIT = 2_147_483_647


class LimitsInput(OperationInput):
    max_actions_per_minute: int | None = Field(default=None, ge=0, le=MAX_COUNT_LIMIT)
    max_actions_per_hour: int | None = Field(default=None, ge=0, le=MAX_COUNT_LIMIT)
    max_actions_per_day: int | None = Field(default=None, ge=0, le=MAX_COUNT_LIMIT)
    max_spend_per_day: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    max_spend_per_month: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    max_calls_per_day_same_number: int | None = Field(default=None, ge=0, le=MAX_COUNT_LIMIT)


class AgentLimitsInput(OperationInput):
    agent_id: str
    limits: LimitsInput


@operation(
    path="agent-limits",
    method="POST",
    tool="comms_set_agent_limits",
    input_model=AgentLimitsInput,
    output_model=AgentLimitsOutput,
    summary="Change some of an agent's rate limits and spend caps (partial update)",
)
def set_agent_limits(principal: Principal, data: AgentLimitsInput) -> dict[str, Any]:
    require_admin(principal)
    agent = agent_get_for_principal(principal, data.agent_id)
    changes = data.limits.model_dump(by_alias=True, exclude_none=True)
    limits = agent_limits_update(agent=agent, changes=changes)
    return {"success": True, "agentId": agent.pk, "limits": limits_object(limits)}


class RegenerateTokenInput(OperationInput):
    agent_id: str


@operation(
    path="agents/<str:agentId>/regenerate-token",
    method="POST",
    tool=None,
    input_model=RegenerateTokenInput,
    output_model=RegenerateTokenOutput,
    summary="Issue a new agent token; every earlier token of the agent stops working",
    path_params=("agentId",),
)
def regenerate_agent_token(principal: Principal, data: RegenerateTokenInput) -> dict[str, Any]:
    require_admin(principal)
    agent = agent_get_for_principal(principal, data.agent_id)
    issued = agent_token_issue(agent=agent, label="regenerated", revoke_existing=True)
    return {"success": True, "agentId": agent.pk, "token": issued.token, "revokedCount": issued.revoked_count}

