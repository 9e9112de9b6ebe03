"""Two identical webhooks at the same moment store one message (PostgreSQL: real concurrent transactions)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from agents.services import AgentAddresses
from channels_app.models import Message
from tests.channels_app.webhook_support import fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")


@pytest.mark.usefixtures("postgres_only")
@pytest.mark.parametrize("senders", [2, 8])
# A keyword's writes run in a transaction; a plain message is one INSERT in autocommit.
@pytest.mark.parametrize("body", ["STOP", "See you at 7"])
def test_concurrent_identical_webhooks_store_one_message(make_agent, senders, body):
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    params = dict(fixture("twilio_sms.json"), Body=body)
    barrier = threading.Barrier(senders)
    responses: list[bytes] = []
    statuses: list[int] = []

    def send() -> None:
        try:
            client = Client()
            barrier.wait()
            response = post_twilio(client, "/webhooks/agent-a/sms", params)
            statuses.append(response.status_code)
            responses.append(response.content)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * senders
    assert Message.objects.count() == 1
    # Exactly one of them applied the keyword and confirmed it.
    assert sum(b"unsubscribed" in content for content in responses) == (1 if body == "STOP" else 0)
