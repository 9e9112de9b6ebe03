"""Response shapes of the operations (contract §6.1, §6.3), for the OpenAPI document.

They describe what the services return; they are not used to build the responses, so a field added
to a service without its model here shows up in the body but not in the schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Output(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class SendMessageOutput(Output):
    success: bool
    message_id: str
    external_id: str | None = Field(description="The provider's id (Twilio SM…, Resend UUID, LINE id).")
    status: str = Field(description="queued, sent, delivered, … (later changes arrive by status callback).")
    channel: str
    from_: str = Field(alias="from")
    to: str
    cost: float | None = Field(description="USD; the provider's price when known, else the price table's.")


class WaitingMessage(Output):
    """The waiting-message object (contract §6.3)."""

    id: str
    agent_id: str
    channel: str
    kind: str = Field(description="message, voicemail, voice_prompt, call_outcome or delivery_failure")
    direction: str
    from_: str = Field(alias="from")
    to: str
    subject: str | None
    body: str | None
    media_urls: list[str]
    external_id: str | None
    call_sid: str | None
    status: str
    reason: str | None
    created_at: str


class WaitingMessagesOutput(Output):
    messages: list[WaitingMessage]
    count: int
    acknowledged: int


class ConsentRecordOutput(Output):
    success: bool
    consent_id: int
    agent_id: str
    contact_address: str
    channel: str
    consent_type: str
    source: str
    notes: str
    recorded_at: str
    revoked_at: str | None


class ConsentRevokeOutput(Output):
    success: bool
    agent_id: str
    contact_address: str
    channel: str
    revoked: int = Field(description="How many consent records were revoked.")
    opted_out: bool


class ConsentCheckOutput(Output):
    agent_id: str
    contact_address: str
    channel: str
    has_consent: bool
    consent_type: str | None
    recorded_at: str | None
    opted_out: bool
    can_contact: bool


class NumberChannel(Output):
    number: str | None
    status: str


class EmailChannel(Output):
    address: str | None
    status: str


class StatusChannel(Output):
    status: str


def _registered_channels(schema: dict[str, Any]) -> None:
    """A channel added to the registry (channels_app.channel_registry) has its entry too."""
    from channels_app.channel_registry import channels

    properties = schema.setdefault("properties", {})
    for spec in channels():
        if spec.channels_key not in properties:
            fields = {spec.address_field: {"type": "string"}} if spec.address_field else {}
            entry = {"type": "object", "properties": {**fields, "status": {"type": "string"}}}
            properties[spec.channels_key] = {"anyOf": [entry, {"type": "null"}]}


def _registered_webhooks(schema: dict[str, Any]) -> None:
    from channels_app.channel_registry import channels

    properties = schema.setdefault("properties", {})
    for spec in channels():
        properties.setdefault(spec.capability, {"type": "string"})


class Channels(Output):
    """One entry per channel of the registry (the built-in ones below, and any added)."""

    model_config = ConfigDict(json_schema_extra=_registered_channels)

    phone: NumberChannel | None
    whatsapp: NumberChannel | None
    email: EmailChannel | None
    voice_ai: NumberChannel | None
    line: StatusChannel | None


class ChannelStatusOutput(Output):
    agent_id: str
    display_name: str
    status: str = Field(description="active, suspended or deprovisioned")
    blocked_channels: list[str]
    channels: Channels
    connected: bool = Field(description="Whether the agent has a live MCP session.")


class Limits(Output):
    max_actions_per_minute: int
    max_actions_per_hour: int
    max_actions_per_day: int
    max_spend_per_day: float
    max_spend_per_month: float
    max_calls_per_day_same_number: int


class CurrentUsage(Output):
    actions_this_minute: int
    actions_this_hour: int
    actions_today: int
    spend_today: float
    spend_this_month: float


class UsageOutput(Output):
    agent_id: str
    period: str
    actions: dict[str, int]
    total_actions: int
    costs_by_channel: dict[str, float]
    total_cost: float
    limits: Limits
    current_usage: CurrentUsage


class ChannelBilling(Output):
    provider_cost: float
    billing_cost: float
    count: int


class BillingOutput(Output):
    agent_id: str
    period: str
    provider_cost: float
    billing_cost: float
    markup_percent: float
    tier: str
    by_channel: dict[str, ChannelBilling]


class WebhookUrls(Output):
    """Each channel's inbound webhook under its capability's name, and the two status callbacks."""

    model_config = ConfigDict(json_schema_extra=_registered_webhooks)

    sms: str
    whatsapp: str
    email: str
    line: str
    voice: str
    call_status: str
    message_status: str


class ProvisionOutput(Output):
    success: bool
    agent_id: str
    org_id: str
    display_name: str
    security_token: str = Field(description="The agent token; shown once.")
    callback_secret: str = Field(description="Signs POSTs to callbackUrl (X-Comms-Signature).")
    channels: Channels
    webhook_urls: WebhookUrls


class DeprovisionOutput(Output):
    success: bool
    agent_id: str
    status: str
    number_released: bool
    revoked_tokens: int


class AgentLimitsOutput(Output):
    success: bool
    agent_id: str
    limits: Limits


class RegenerateTokenOutput(Output):
    success: bool
    agent_id: str
    token: str
    revoked_count: int

