"""The channel registry: the one place that declares each channel an agent can use.

Everything else reads its channel lists from here, when it needs them: the send-message, waiting-message
and consent input models (and so the REST checks, the MCP tool schemas and the OpenAPI enums), the
model fields' choices (a callable, so a new channel needs no migration), provisioning's capabilities,
addresses, `channels` object and webhook URLs, the `/webhooks/<agentId>/<route>` routes, recipient
normalisation, the default prices, the metrics' label values and the admin's channel checkboxes.
Adding a channel is one provider module plus one entry in BUILT_IN below (docs/architecture.md,
"Adding a channel").

Providers, webhook views and address factories are named by dotted path and imported on first use, so
this module imports nothing from the project and a process that never sends on a channel never imports
its SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.utils.module_loading import import_string

# How a recipient address is written canonically (channels_app.addresses): one of these kinds, or the
# dotted path of a function `(value: str, *, field: str) -> str` that raises ApiError when it is invalid.
BUILT_IN_RECIPIENT_KINDS = ("phone", "email", "line")


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    """The channel's wire name: `channel` in send-message and the consent tools, an opt-out's channel."""
    label: str
    """How the admin shows it."""
    capability: str
    """What provision's `capabilities` asks for to get it."""
    address_kind: str
    """The ChannelAddress kind the agent sends from and receives on."""
    price_key: str
    """The price table's key for one unit (a message, a call minute) when the provider does not say."""
    price: str
    """The default price of that unit in USD (a string, so it stays an exact Decimal);
    settings.PROVIDER_PRICES[price_key] overrides it."""
    webhook_route: str
    """The provider calls /webhooks/<agentId>/<webhook_route>; provision hands the URL out."""
    webhook_view: str
    """Dotted path of the view serving that route: `(request, agent_id) -> HttpResponse`."""
    provider_factory: str
    """Dotted path of the function returning the provider (the sandbox in DEMO_MODE)."""
    recipient: str
    """The form of a recipient address: a BUILT_IN_RECIPIENT_KINDS name or a normaliser's dotted path."""
    status_key: str = ""
    """The key of the `channels` object in provision and channel-status (defaults to `name`)."""
    address_field: str | None = "address"
    """The field that object shows the address in (`number`, `address`), or None to show status only."""
    address_factory: str = "agents.provisioning.agent_id_address"
    """Dotted path of the function giving a provisioned agent its address of `address_kind`:
    `(*, agent_id: str, request: ProvisionInput) -> str | None`. The phone, WhatsApp and email kinds
    of the built-in channels are made by provisioning itself (a bought number, a pool sender, a domain)."""
    default_address: str | None = None
    """Dotted path of `(agent_id) -> str`: the address an agent has on the channel before one is provisioned
    (email's <agentId>@EMAIL_DEFAULT_DOMAIN); channel-status shows it with status `default`."""
    sends_messages: bool = True
    """Whether send-message sends on it (voice has make-call instead)."""

    @property
    def channels_key(self) -> str:
        return self.status_key or self.name


BUILT_IN: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        name="sms", label="SMS", capability="sms", address_kind="phone", price_key="sms", price="0.0083",
        webhook_route="sms", webhook_view="channels_app.webhooks.sms_webhook",
        provider_factory="channels_app.providers.registry.sms_provider", recipient="phone",
        status_key="phone", address_field="number",
    ),
    ChannelSpec(
        name="email", label="Email", capability="email", address_kind="email", price_key="email", price="0.0004",
        webhook_route="email", webhook_view="channels_app.webhooks.email_webhook",
        provider_factory="channels_app.providers.registry.email_provider", recipient="email",
        default_address="agents.services.default_email_address",
    ),
    ChannelSpec(
        name="whatsapp", label="WhatsApp", capability="whatsapp", address_kind="whatsapp", price_key="whatsapp",
        price="0.0050", webhook_route="whatsapp", webhook_view="channels_app.webhooks.whatsapp_webhook",
        provider_factory="channels_app.providers.registry.whatsapp_provider", recipient="phone",
        address_field="number",
    ),
    ChannelSpec(
        name="line", label="LINE", capability="line", address_kind="line", price_key="line", price="0.0000",
        webhook_route="line", webhook_view="channels_app.webhooks.line_webhook",
        provider_factory="channels_app.providers.registry.line_provider", recipient="line", address_field=None,
    ),
    ChannelSpec(
        name="voice", label="Voice", capability="voice", address_kind="phone", price_key="voice", price="0.0140",
        webhook_route="voice", webhook_view="voice.webhooks_live.voice_webhook",
        provider_factory="channels_app.providers.registry.telephony_provider", recipient="phone",
        status_key="voiceAi", address_field="number", sends_messages=False,
    ),
)

# Filled from BUILT_IN below and by register(); read through the functions, which always see the
# current entries (a `from … import` of a tuple would keep the list of its import time).
BY_NAME: dict[str, ChannelSpec] = {}
BY_ROUTE: dict[str, ChannelSpec] = {}
# price_key → the entry's default price (settings.PROVIDER_PRICES overrides it; channels_app.providers.pricing).
DEFAULT_PRICES: dict[str, str] = {}
_lists: dict[str, tuple[Any, ...]] = {}
_listeners: list[Callable[[], None]] = []


def _rebuild() -> None:
    specs = tuple(BY_NAME.values())
    BY_ROUTE.clear()
    BY_ROUTE.update({spec.webhook_route: spec for spec in specs})
    DEFAULT_PRICES.clear()
    DEFAULT_PRICES.update({spec.price_key: spec.price for spec in specs})
    _lists["channels"] = specs
    _lists["names"] = tuple(spec.name for spec in specs)
    _lists["message"] = tuple(spec.name for spec in specs if spec.sends_messages)
    _lists["capabilities"] = tuple(spec.capability for spec in specs)
    _lists["address_kinds"] = tuple(dict.fromkeys(spec.address_kind for spec in specs))
    for listener in _listeners:
        listener()


def register(spec: ChannelSpec) -> None:
    """Add a channel after import (a plugin, a test). A channel of the project is an entry of BUILT_IN."""
    for other in BY_NAME.values():
        if other.name != spec.name and (other.capability == spec.capability or other.webhook_route == spec.webhook_route):
            raise ValueError(f"channel {spec.name!r} reuses the capability or webhook route of {other.name!r}")
    BY_NAME[spec.name] = spec
    _rebuild()


def unregister(name: str) -> None:
    """Remove a channel added by register()."""
    if BY_NAME.pop(name, None) is not None:
        _rebuild()


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` whenever a channel is registered or removed (caches of derived schemas)."""
    _listeners.append(listener)


def channels() -> tuple[ChannelSpec, ...]:
    return _lists["channels"]


def channel_names() -> tuple[str, ...]:
    return _lists["names"]


def message_channels() -> tuple[str, ...]:
    """The channels send-message sends on."""
    return _lists["message"]


def capabilities() -> tuple[str, ...]:
    return _lists["capabilities"]


def address_kinds() -> tuple[str, ...]:
    return _lists["address_kinds"]


def channel_spec(name: str) -> ChannelSpec | None:
    return BY_NAME.get(name)


def spec_for_route(route: str) -> ChannelSpec | None:
    return BY_ROUTE.get(route)


def channel_choices() -> list[tuple[str, str]]:
    """Model field choices for a channel name (Field.choices takes this callable: no migration per channel)."""
    return [(spec.name, spec.label) for spec in channels()]


def address_kind_choices() -> list[tuple[str, str]]:
    """Model field choices for ChannelAddress.kind."""
    return [(kind, kind) for kind in address_kinds()]


@cache
def resolve(dotted_path: str) -> Any:
    """The object a registry entry names (cached: the send path looks its provider factory up each time)."""
    return import_string(dotted_path)


for _spec in BUILT_IN:
    BY_NAME[_spec.name] = _spec
_rebuild()
