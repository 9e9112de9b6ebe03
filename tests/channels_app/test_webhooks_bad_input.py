"""Webhook input that used to crash the server: each is a §3 4xx now, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from agents.services import AgentAddresses
from channels_app.models import Message, WebhookEvent
from tests.channels_app.webhook_support import fixture, webhook_secrets  # noqa: F401

pytestmark = pytest.mark.usefixtures("webhook_secrets")


@pytest.fixture
def agent(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    return agent


@pytest.mark.parametrize("route", ["sms", "whatsapp", "message-status"])
def test_it_refuses_a_json_twilio_body_without_a_body_hash_with_403(client, agent, route):
    body = json.dumps(fixture("twilio_sms.json"))
    response = client.post(
        f"/webhooks/agent-a/{route}", body, content_type="application/json", HTTP_X_TWILIO_SIGNATURE="anything"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature"
    assert Message.objects.count() == 0
    assert WebhookEvent.objects.count() == 0
