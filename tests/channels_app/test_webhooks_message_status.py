"""Twilio message status callbacks: forward-only statuses, failures become delivery_failure events."""

from __future__ import annotations

import pytest

from agents.services import AgentAddresses
from channels_app.models import Message
from tests.channels_app.webhook_support import fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = pytest.mark.usefixtures("webhook_secrets")

PATH = "/webhooks/agent-a/message-status"
SID = "SM5b4a39281706f5e4d3c2b1a09f8e7d6c"


@pytest.fixture
def outbound(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    return Message.objects.create(
        agent=agent,
        organization_id=agent.organization_id,
        direction="outbound",
        channel="sms",
        from_address="+14155550100",
        to_address="+12125550123",
        body="Your table is confirmed",
        status="queued",
        external_id=SID,
    )


def status(client, value: str, **extra: str):
    params = dict(fixture("twilio_message_status_undelivered.json"), MessageStatus=value, SmsStatus=value)
    params.update(extra)
    if value not in ("undelivered", "failed"):
        params.pop("ErrorCode")
    return post_twilio(client, PATH, params)


def test_a_failure_becomes_a_delivery_failure_event(client, outbound):
    response = post_twilio(client, PATH, fixture("twilio_message_status_undelivered.json"))
    assert response.status_code == 200
    assert b"<Response" in response.content
    outbound.refresh_from_db()
    assert (outbound.status, outbound.error_code) == ("undelivered", "30006")
    event = Message.objects.get(kind="delivery_failure")
    assert (event.external_id, event.error_code, event.status, event.channel) == (SID, "30006", "undelivered", "sms")
    assert event.delivered_at is None


def test_status_only_moves_forward(client, outbound):
    for value in ("sent", "delivered", "sent", "queued"):
        assert status(client, value).status_code == 200
    outbound.refresh_from_db()
    assert outbound.status == "delivered"
    status(client, "read")
    outbound.refresh_from_db()
    assert outbound.status == "read"


def test_a_repeated_failure_makes_one_event(client, outbound):
    for _ in range(3):
        post_twilio(client, PATH, fixture("twilio_message_status_undelivered.json"))
    assert Message.objects.filter(kind="delivery_failure").count() == 1


def test_a_failure_reported_after_delivery_still_reaches_the_agent(client, outbound):
    # A carrier can correct its receipt; the agent must hear of the failure, once.
    status(client, "delivered")
    status(client, "undelivered", ErrorCode="30003")
    status(client, "undelivered", ErrorCode="30003")
    outbound.refresh_from_db()
    assert (outbound.status, outbound.error_code) == ("undelivered", "30003")
    assert Message.objects.filter(kind="delivery_failure").count() == 1


def test_nothing_moves_a_message_on_from_a_failure(client, outbound):
    status(client, "failed", ErrorCode="30008")
    for later in ("delivered", "read", "sent"):
        status(client, later)
    outbound.refresh_from_db()
    assert outbound.status == "failed"


def test_an_unsigned_status_callback_is_refused(client, outbound):
    response = post_twilio(client, PATH, fixture("twilio_message_status_undelivered.json"), signature="")
    assert response.status_code == 403
    outbound.refresh_from_db()
    assert outbound.status == "queued"


def test_an_unknown_message_sid_is_acknowledged(client, outbound):
    response = status(client, "failed", MessageSid="SM" + "0" * 32, ErrorCode="30003")
    assert response.status_code == 200
    assert not Message.objects.filter(kind="delivery_failure").exists()


def test_it_records_a_delivered_status_with_one_update_and_no_read_of_the_message(client, outbound):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert status(client, "delivered").status_code == 200
    statements = [query["sql"] for query in captured.captured_queries]
    # The agent's read, then the conditional update: nothing reads the message first.
    assert [sql.split()[0] for sql in statements] == ["SELECT", "UPDATE"]
    assert '"agents_agent"' in statements[0]
    outbound.refresh_from_db()
    assert outbound.status == "delivered"


def test_a_price_in_the_callback_becomes_the_cost_in_usage_and_billing_once(client, settings, default_org):
    from decimal import Decimal

    from agents.models import UsageBucket, UsageRecord
    from tests.ops_helpers import Api, agent_with_numbers

    settings.DEMO_MODE = True
    _agent, token = agent_with_numbers("agent-p", default_org, phone="+14155550109")
    api = Api(token)
    status_code, sent = api.post("send-message", {"to": "+14155550123", "body": "Your table is ready"})
    assert status_code == 200, sent
    assert sent["cost"] == pytest.approx(0.0083)  # the estimate: Twilio's answer to a send has no price yet
    callback = dict(fixture("twilio_message_status_undelivered.json"), MessageStatus="delivered",
                    SmsStatus="delivered", MessageSid=sent["externalId"], SmsSid=sent["externalId"], Price="-0.00790",
                    PriceUnit="USD")
    callback.pop("ErrorCode")
    for _ in range(2):
        assert post_twilio(client, "/webhooks/agent-p/message-status", callback).status_code == 200

    message = Message.objects.get(pk=sent["messageId"])
    assert (message.status, message.cost) == ("delivered", Decimal("0.0079"))
    assert UsageRecord.objects.get().provider_cost == Decimal("0.0079")
    assert {b.spend for b in UsageBucket.objects.filter(window__in=("day", "month"))} == {Decimal("0.0079")}
    _, usage = api.get("usage", {"period": "today"})
    _, billing = api.get("billing", {"period": "month"})
    assert usage["costsByChannel"] == {"sms": pytest.approx(0.0079)}
    assert billing["providerCost"] == pytest.approx(0.0079)
