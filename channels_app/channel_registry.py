"""The channel registry: the one place that declares each channel an agent can use.

Everything else reads its channel lists from here: the send-message and consent input models (and so the
REST schema, the MCP tool schema and the OpenAPI enums), provisioning's capabilities and webhook URLs, the
webhook routes, recipient normalisation, the price key, the metrics' label values and the admin's
blocked-channel checkboxes. Adding a channel is one provider module plus one entry below
(docs/architecture.md, "Adding a channel").

Providers and webhook views are named by dotted path and imported on first use, so this module imports
nothing from the project and a process that never sends on a channel never imports its SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from django.utils.module_loading import import_string

RecipientKind = Literal["phone", "email", "line"]


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    """The channel's wire name: `channel` in send-message and the consent tools, an opt-out's channel."""
    label: str
    """How the admin shows it."""
    capability: str
    """What provision's `capabilities` asks for to get it."""
    address_kind: str
    """The ChannelAddress kind the agent sends from and receives on (agents.models.AddressKind)."""
    price_key: str
    """The key of settings.PROVIDER_PRICES a unit is priced under when the provider does not say."""
    webhook_route: str
    """The provider calls /webhooks/<agentId>/<webhook_route>; provision hands the URL out."""
    webhook_view: str
    """Dotted path of the view serving that route."""
    provider_factory: str
    """Dotted path of the function returning the provider (the sandbox in DEMO_MODE)."""
    recipient: RecipientKind
    """The form of a recipient address, as channels_app.addresses normalises it."""
    sends_messages: bool = True
    """Whether send-message sends on it (voice has make-call instead)."""


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        name="sms", label="SMS", capability="sms", address_kind="phone", price_key="sms", webhook_route="sms",
        webhook_view="channels_app.webhooks.sms_webhook",
        provider_factory="channels_app.providers.registry.sms_provider", recipient="phone",
    ),
    ChannelSpec(
        name="email", label="Email", capability="email", address_kind="email", price_key="email",
        webhook_route="email", webhook_view="channels_app.webhooks.email_webhook",
        provider_factory="channels_app.providers.registry.email_provider", recipient="email",
    ),
    ChannelSpec(
        name="whatsapp", label="WhatsApp", capability="whatsapp", address_kind="whatsapp", price_key="whatsapp",
        webhook_route="whatsapp", webhook_view="channels_app.webhooks.whatsapp_webhook",
        provider_factory="channels_app.providers.registry.whatsapp_provider", recipient="phone",
    ),
    ChannelSpec(
        name="line", label="LINE", capability="line", address_kind="line", price_key="line", webhook_route="line",
        webhook_view="channels_app.webhooks.line_webhook",
        provider_factory="channels_app.providers.registry.line_provider", recipient="line",
    ),
    ChannelSpec(
        name="voice", label="Voice", capability="voice", address_kind="phone", price_key="voice",
        webhook_route="voice", webhook_view="voice.webhooks_live.voice_webhook",
        provider_factory="channels_app.providers.registry.telephony_provider", recipient="phone",
        sends_messages=False,
    ),
)

BY_NAME: dict[str, ChannelSpec] = {spec.name: spec for spec in CHANNELS}
CHANNEL_NAMES: tuple[str, ...] = tuple(spec.name for spec in CHANNELS)
MESSAGE_CHANNELS: tuple[str, ...] = tuple(spec.name for spec in CHANNELS if spec.sends_messages)
CAPABILITIES: tuple[str, ...] = tuple(spec.capability for spec in CHANNELS)


def channel_spec(name: str) -> ChannelSpec | None:
    return BY_NAME.get(name)


@cache
def resolve(dotted_path: str) -> Any:
    """The object a registry entry names (cached: the send path looks its provider factory up each time)."""
    return import_string(dotted_path)
