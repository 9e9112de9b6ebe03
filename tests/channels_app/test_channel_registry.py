"""The channel registry is the single source of the channel lists (docs/architecture.md, "Adding a channel")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import resolve as resolve_url

from admin_ui.forms import AgentAdminForm, ProvisionForm
from agents.models import ChannelAddress, Consent, OptOut
from agents.provisioning import webhook_urls
from channels_app.addresses import normalize_recipient
from channels_app.channel_registry import (
    address_kinds,
    capabilities,
    channel_names,
    channels,
    message_channels,
    resolve,
)
from channels_app.providers import registry
from channels_app.providers.pricing import estimate_message_cost, unit_price
from orchestrator import metrics


def test_it_is_where_the_models_take_their_channel_and_address_kind_choices_from() -> None:
    assert [name for name, _ in OptOut._meta.get_field("channel").choices] == list(channel_names())  # type: ignore[union-attr]
    assert [name for name, _ in Consent._meta.get_field("channel").choices] == list(channel_names())  # type: ignore[union-attr]
    assert [kind for kind, _ in ChannelAddress._meta.get_field("kind").choices] == list(address_kinds())  # type: ignore[union-attr]
    assert len(set(channel_names())) == len(channels())


@pytest.mark.parametrize("spec", channels(), ids=lambda spec: spec.name)
def test_it_prices_every_channel_from_its_entry_unless_settings_override_it(settings: Any, spec: Any) -> None:
    assert unit_price(spec.price_key) == Decimal(spec.price)
    if spec.sends_messages and spec.name != "sms":  # sms is priced per segment
        assert estimate_message_cost(spec.name, "hi") == (Decimal(spec.price), None)
    settings.PROVIDER_PRICES = {**settings.PROVIDER_PRICES, spec.price_key: "0.5"}
    assert unit_price(spec.price_key) == Decimal("0.5")


@pytest.mark.parametrize("spec", channels(), ids=lambda spec: spec.name)
def test_it_serves_the_webhook_route_of_every_channel_with_its_declared_view(spec: Any) -> None:
    url = f"/webhooks/agent-a/{spec.webhook_route}"
    assert resolve_url(url).kwargs == {"agent_id": "agent-a", "route": spec.webhook_route}
    # Provisioning hands that very URL out under the capability's name.
    assert webhook_urls("agent-a")[spec.capability].endswith(url)


@pytest.mark.django_db
def test_it_answers_404_for_a_webhook_route_no_channel_declares() -> None:
    assert Client().post("/webhooks/agent-a/telegraph", data="{}", content_type="application/json").status_code == 404


@pytest.mark.parametrize("spec", channels(), ids=lambda spec: spec.name)
def test_it_builds_every_channels_provider_from_its_factory(settings: Any, spec: Any) -> None:
    settings.DEMO_MODE = True
    provider = resolve(spec.provider_factory)(credentials=None)
    assert provider is not None
    if spec.sends_messages:
        assert type(registry.messaging_provider(spec.name)) is type(provider)


@pytest.mark.parametrize(
    ("kind", "raw", "canonical"),
    [("phone", " +1 415 555 0123 ", "+14155550123"), ("email", "Ann@Example.COM", "Ann@example.com"),
     ("line", "U" + "a" * 32, "U" + "a" * 32)],
)
def test_it_normalises_each_channels_recipients_by_its_recipient_kind(kind: str, raw: str, canonical: str) -> None:
    names = [spec.name for spec in channels() if spec.recipient == kind]
    assert names
    for channel in names:
        assert normalize_recipient(channel, raw) == canonical


def _resolve_ref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _body_property(schema: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve_ref(schema, _resolve_ref(schema, body)["properties"][name])


@pytest.mark.django_db
def test_it_is_where_the_input_models_and_the_openapi_enums_take_their_channels_from() -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    assert _body_property(schema, "/api/v1/send-message", "channel")["enum"] == list(message_channels())
    assert _body_property(schema, "/api/v1/consent/record", "channel")["enum"] == list(channel_names())
    wanted = _body_property(schema, "/api/v1/provision", "capabilities")
    assert _resolve_ref(schema, wanted["items"])["enum"] == list(capabilities())


def test_it_is_where_metrics_and_the_admin_take_their_channels_from() -> None:
    assert metrics.CHANNELS == channel_names()
    blockable = AgentAdminForm.base_fields["blocked_channels"].choices  # type: ignore[attr-defined]
    assert [name for name, _ in blockable] == [*channel_names(), "*"]
    assert [name for name, _ in ProvisionForm.base_fields["capabilities"].choices] == list(capabilities())  # type: ignore[attr-defined]
