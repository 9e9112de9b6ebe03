"""The channel registry is the single source of the channel lists (docs/architecture.md, "Adding a channel")."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import resolve as resolve_url

from admin_ui.forms import BLOCKABLE_CHANNELS, ProvisionForm
from agents.models import AddressKind, Channel
from agents.provisioning import webhook_urls
from channels_app.addresses import normalize_recipient
from channels_app.channel_registry import CAPABILITIES, CHANNEL_NAMES, CHANNELS, MESSAGE_CHANNELS, resolve
from channels_app.providers import registry
from channels_app.providers.pricing import estimate_message_cost, unit_price
from orchestrator import metrics


def test_it_declares_every_channel_the_models_know_and_nothing_else() -> None:
    assert set(CHANNEL_NAMES) == set(Channel.values)
    assert len(set(CHANNEL_NAMES)) == len(CHANNELS)
    assert {spec.address_kind for spec in CHANNELS} <= set(AddressKind.values)


@pytest.mark.parametrize("spec", CHANNELS, ids=lambda spec: spec.name)
def test_it_gives_every_channel_a_price_key_the_price_table_has(spec: Any) -> None:
    assert spec.price_key in settings.PROVIDER_PRICES
    if spec.sends_messages and spec.name != "sms":  # sms is priced per segment
        assert estimate_message_cost(spec.name, "hi") == (unit_price(spec.price_key), None)


@pytest.mark.parametrize("spec", CHANNELS, ids=lambda spec: spec.name)
def test_it_serves_the_webhook_route_of_every_channel_with_its_declared_view(spec: Any) -> None:
    url = f"/webhooks/agent-a/{spec.webhook_route}"
    assert resolve_url(url).func is resolve(spec.webhook_view)
    # Provisioning hands that very URL out under the capability's name.
    assert webhook_urls("agent-a")[spec.capability].endswith(url)


@pytest.mark.parametrize("spec", CHANNELS, ids=lambda spec: spec.name)
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
    channels = [spec.name for spec in CHANNELS if spec.recipient == kind]
    assert channels
    for channel in channels:
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
    assert _body_property(schema, "/api/v1/send-message", "channel")["enum"] == list(MESSAGE_CHANNELS)
    assert _body_property(schema, "/api/v1/consent/record", "channel")["enum"] == list(CHANNEL_NAMES)
    capabilities = _body_property(schema, "/api/v1/provision", "capabilities")
    assert _resolve_ref(schema, capabilities["items"])["enum"] == list(CAPABILITIES)


def test_it_is_where_metrics_and_the_admin_take_their_channels_from() -> None:
    assert metrics.CHANNELS == CHANNEL_NAMES
    assert [name for name, _ in BLOCKABLE_CHANNELS] == list(CHANNEL_NAMES)
    assert [name for name, _ in ProvisionForm.base_fields["capabilities"].choices] == list(CAPABILITIES)  # type: ignore[attr-defined]
