"""comms_wait_for_message: a long poll that returns and acknowledges the next waiting messages."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from agents.principals import Principal, Role
from agents.services import AgentAddresses
from channels_app.models import Message
from orchestrator.operations import operations_by_tool
from tests.channels_app.webhook_support import fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]

AGENT = Principal(role=Role.AGENT, org_id="default", agent_id="agent-a")


@pytest.fixture
def agent(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    return agent


def wait(**arguments: Any) -> dict[str, Any]:
    return operations_by_tool()["comms_wait_for_message"].run(AGENT, arguments)


def test_it_returns_waiting_messages_at_once_and_acknowledges_them(client, agent):
    post_twilio(client, "/webhooks/agent-a/sms", fixture("twilio_sms.json"))
    started = time.monotonic()
    result = wait(timeoutSeconds=10)
    assert time.monotonic() - started < 1
    assert result["count"] == result["acknowledged"] == 1
    assert result["messages"][0]["body"] == fixture("twilio_sms.json")["Body"]
    assert Message.objects.get().delivered_via == "wait"
    assert wait(timeoutSeconds=0)["messages"] == []


def test_it_returns_an_empty_list_at_the_timeout(agent):
    started = time.monotonic()
    result = wait(timeoutSeconds=0.6)
    assert result == {"messages": [], "count": 0, "acknowledged": 0}
    assert 0.5 <= time.monotonic() - started < 2


def test_a_message_arriving_during_the_wait_ends_it(client, agent):
    results: list[dict[str, Any]] = []

    def long_poll() -> None:
        try:
            results.append(wait(timeoutSeconds=10))
        finally:
            connection.close()

    thread = threading.Thread(target=long_poll)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    post_twilio(client, "/webhooks/agent-a/sms", fixture("twilio_sms.json"))
    thread.join(timeout=10)
    assert time.monotonic() - started < 2
    assert results[0]["count"] == 1
    message = Message.objects.get()
    # The pending waiter took it: delivered once, by the waiter.
    assert message.delivered_via == "wait"


def test_it_waits_only_for_the_requested_channel(client, agent):
    post_twilio(client, "/webhooks/agent-a/sms", fixture("twilio_sms.json"))
    assert wait(channel="email", timeoutSeconds=0.3)["messages"] == []
    assert wait(channel="sms", timeoutSeconds=0)["count"] == 1


def test_the_timeout_is_capped_at_sixty_seconds(agent):
    from orchestrator.errors import ApiError

    with pytest.raises(ApiError) as refused:
        wait(timeoutSeconds=61)
    assert refused.value.code == "invalid_request"


def test_another_agents_token_cannot_wait_for_it(agent, make_agent):
    from orchestrator.errors import ApiError

    make_agent("agent-b")
    other = Principal(role=Role.AGENT, org_id="default", agent_id="agent-b")
    with pytest.raises(ApiError) as refused:
        operations_by_tool()["comms_wait_for_message"].run(other, {"agentId": "agent-a", "timeoutSeconds": 0})
    assert refused.value.status == 403


def test_it_is_also_a_rest_long_poll(client, make_agent):
    _agent, token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    post_twilio(client, "/webhooks/agent-a/sms", fixture("twilio_sms.json"))
    response = client.get("/api/v1/wait-for-message?timeoutSeconds=1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["count"] == 1
