"""Concurrent final callbacks of one call store one call_outcome (PostgreSQL: real concurrent transactions)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from channels_app.models import Message
from tests.channels_app.webhook_support import webhook_secrets  # noqa: F401
from tests.voice.support import call_status, outbound_call, voice_agent
from voice.models import Call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]

SID = "CA" + "7" * 32


@pytest.mark.parametrize("senders", [2, 8])
def test_concurrent_final_callbacks_end_the_call_once(senders):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    agent, _token = voice_agent()
    outbound_call(agent, SID, status="in-progress")
    barrier = threading.Barrier(senders)
    statuses: list[int] = []
    finals = ["completed", "no-answer", "busy", "failed"]

    def send(index: int) -> None:
        try:
            client = Client()
            barrier.wait()
            statuses.append(call_status(client, "agent-a", SID, finals[index % len(finals)],
                                        CallDuration="12").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * senders
    outcome = Message.objects.get(kind="call_outcome")
    call = Call.objects.get()
    assert call.status in finals and outcome.status == call.status
    assert call.context["outcomeMessageId"] == outcome.pk
