"""A channel added as docs/architecture.md says (one provider module, one registry entry) works end to end:
provisioning gives it an address, the schemas and channel-status list it, send-message sends through its
provider at the registry's price, and its signed webhook stores a message that reaches the agent."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import get_resolver

from agents.models import UsageRecord
from channels_app import channel_registry
from tests.channels_app import telegram_channel
from tests.fake_providers import TELEGRAM_BOT_TOKEN, FakeProviders
from tests.live_server import LiveServer
from tests.orchestrator.mcp_clients import bearer, streamable_session

WEBHOOK_SECRET = "telegram-webhook-secret"
CHAT = "987654321"


@pytest.fixture
def telegram(live_provider_settings: FakeProviders, settings: Any) -> Iterator[FakeProviders]:
    """The contributor's two steps: the module's settings, and its registry entry."""
    settings.TELEGRAM_BOT_TOKEN = TELEGRAM_BOT_TOKEN
    settings.TELEGRAM_API_BASE_URL = live_provider_settings.base_url("telegram")
    settings.TELEGRAM_WEBHOOK_SECRET = WEBHOOK_SECRET
    # The URLs are built first, as in a server: the GET query-parameter enums taken then (docs/architecture.md,
    # "Adding a channel") stay without the channel, whichever test builds them.
    assert get_resolver().url_patterns
    channel_registry.register(telegram_channel.SPEC)
    try:
        yield live_provider_settings
    finally:
        channel_registry.unregister(telegram_channel.NAME)


def _post(client: Client, path: str, payload: dict[str, Any], **headers: Any) -> Any:
    return client.post(path, payload, content_type="application/json", **headers)


def _provision(client: Client, orchestrator_token: str) -> dict[str, Any]:
    response = _post(client, "/api/v1/provision", {"agentId": "agent-t", "displayName": "Telegram agent",
                                                   "capabilities": ["telegram"]},
                     HTTP_AUTHORIZATION=f"Bearer {orchestrator_token}")
    assert response.status_code == 200, response.json()
    return dict(response.json())


def _enum(schema: dict[str, Any], path: str, name: str) -> list[str]:
    def follow(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    body = follow(schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"])
    prop = follow(body["properties"][name])
    return list(follow(prop.get("items", prop))["enum"])


@pytest.mark.django_db
def test_it_provisions_lists_sends_and_receives_on_a_channel_added_by_one_module_and_one_entry(
    telegram: FakeProviders, default_org: Any, orchestrator_token: str
) -> None:
    client = Client()
    provisioned = _provision(client, orchestrator_token)
    # Provisioning made the address the entry's factory gives, and hands out the entry's webhook URL.
    assert provisioned["channels"]["telegram"] == {"address": "agent_t_bot", "status": "active"}
    assert provisioned["channels"]["phone"] is None
    assert provisioned["webhookUrls"]["telegram"].endswith("/webhooks/agent-t/telegram")
    agent = {"HTTP_AUTHORIZATION": f"Bearer {provisioned['securityToken']}"}

    status = client.get("/api/v1/channel-status", **agent).json()
    assert status["channels"]["telegram"] == {"address": "agent_t_bot", "status": "active"}
    schema = client.get("/api/v1/openapi.json").json()
    assert "telegram" in _enum(schema, "/api/v1/send-message", "channel")
    assert "telegram" in _enum(schema, "/api/v1/provision", "capabilities")
    assert "telegram" in _enum(schema, "/api/v1/consent/record", "channel")

    sent = _post(client, "/api/v1/send-message", {"channel": "telegram", "to": f" {CHAT} ", "body": "Hello"}, **agent)
    assert sent.status_code == 200, sent.json()
    assert sent.json()["from"] == "agent_t_bot"
    assert sent.json()["cost"] == pytest.approx(0.0021)
    assert telegram.last("telegram", "POST", "/sendMessage$").json == {"chat_id": CHAT, "text": "Hello"}
    record = UsageRecord.objects.get(agent_id="agent-t", action_type="send_message")
    assert (record.channel, record.provider_cost) == ("telegram", Decimal("0.0021"))
    assert client.get("/api/v1/usage", {"period": "today"}, **agent).json()["costsByChannel"] == {
        "telegram": pytest.approx(0.0021)
    }

    update = {"update_id": 1001, "message": {"message_id": 5, "chat": {"id": int(CHAT)}, "text": "Hi back"}}
    forged = _post(client, "/webhooks/agent-t/telegram", update, HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN="guess")
    assert forged.status_code == 403
    for _ in range(2):  # a redelivery is acknowledged and stored once
        received = _post(client, "/webhooks/agent-t/telegram", update, HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=WEBHOOK_SECRET)
        assert received.status_code == 200
    waiting = client.get("/api/v1/waiting-messages", {"channel": "telegram"}, **agent).json()
    assert [(m["channel"], m["from"], m["to"], m["body"]) for m in waiting["messages"]] == [
        ("telegram", CHAT, "agent_t_bot", "Hi back")
    ]


@pytest.mark.django_db
def test_it_forgets_a_channel_once_its_entry_is_gone(telegram: FakeProviders, default_org: Any,
                                                     orchestrator_token: str) -> None:
    client = Client()
    agent = {"HTTP_AUTHORIZATION": f"Bearer {_provision(client, orchestrator_token)['securityToken']}"}
    channel_registry.unregister(telegram_channel.NAME)

    refused = _post(client, "/api/v1/send-message", {"channel": "telegram", "to": CHAT, "body": "Hello"}, **agent)
    assert (refused.status_code, refused.json()["field"]) == (400, "channel")
    assert _post(client, "/webhooks/agent-t/telegram", {"update_id": 1}).status_code == 404
    assert "telegram" not in client.get("/api/v1/channel-status", **agent).json()["channels"]


@pytest.mark.django_db(transaction=True)
async def test_its_mcp_tools_take_the_new_channel(telegram: FakeProviders, asgi_server: LiveServer,
                                                  orchestrator_token: str) -> None:
    def provision() -> str:
        from agents.models import Organization

        Organization.objects.get_or_create(pk="default", defaults={"name": "Default organization"})
        return str(_provision(Client(), orchestrator_token)["securityToken"])

    token = await sync_to_async(provision)()
    async with streamable_session(f"{asgi_server.url}/mcp", headers=bearer(token)) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert "telegram" in tools["comms_send_message"].input_schema["properties"]["channel"]["enum"]
        result = await session.call_tool("comms_send_message", {"channel": "telegram", "to": CHAT, "body": "Hi"})
    assert not result.is_error, result.structured_content
    assert (result.structured_content or {})["channel"] == "telegram"
    assert telegram.last("telegram", "POST", "/sendMessage$").json == {"chat_id": CHAT, "text": "Hi"}
