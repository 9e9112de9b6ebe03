"""Delivery to an agent's callbackUrl: signed POST, retry with backoff after a failure, success after recovery."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from agents.crypto import decrypt
from agents.services import AgentAddresses
from channels_app import callbacks
from channels_app.delivery import claims, routing, waiting
from channels_app.models import Message
from tests.channels_app.webhook_support import fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]

PATH = "/webhooks/agent-a/sms"


class CallbackReceiver:
    """A local HTTP server standing in for the agent's callback endpoint; answers from a script."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/comms-callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings: Any) -> Iterator[CallbackReceiver]:
    # The receiver is on loopback, which callbacks refuse unless the operator allows it.
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    server = CallbackReceiver()
    yield server
    server.close()


@pytest.fixture
def agent(make_agent, receiver):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    return agent


def verify(headers: dict[str, str], body: bytes, secret: str) -> bool:
    parts = dict(part.split("=", 1) for part in headers["x-comms-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def make_due(message: Message) -> None:
    Message.objects.filter(pk=message.pk).update(next_callback_at=timezone.now() - timedelta(seconds=1))


def test_it_posts_the_waiting_message_object_signed_with_the_callback_secret(client, agent, receiver):
    assert post_twilio(client, PATH, fixture("twilio_sms.json")).status_code == 200
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    assert verify(headers, body, decrypt(agent.callback_secret_encrypted))
    assert not verify(headers, body, "another-secret")
    event = json.loads(body)
    message = Message.objects.get()
    assert event["id"] == message.id
    assert event["agentId"] == "agent-a"
    assert (event["channel"], event["kind"], event["direction"]) == ("sms", "message", "inbound")
    assert event["from"] == "+12125550123"
    assert event["body"] == fixture("twilio_sms.json")["Body"]
    assert set(event) == {
        "id", "agentId", "channel", "kind", "direction", "from", "to", "subject", "body", "mediaUrls",
        "externalId", "callSid", "status", "reason", "createdAt",
    }
    assert (message.delivered_via, message.callback_attempts) == ("callback", 1)
    assert message.delivered_at is not None
    # Retention 0: delivered and acknowledged, so the body is gone and the metadata stays.
    assert message.body is None and message.from_address == "+12125550123"


def test_it_retries_after_a_500_and_succeeds_after_recovery(client, agent, receiver):
    receiver.statuses = [500]
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    message = Message.objects.get()
    assert message.delivered_at is None
    assert (message.callback_attempts, message.delivered_via) == (1, "")
    wait = (message.next_callback_at - timezone.now()).total_seconds()
    assert 3 < wait <= 5
    # Not due yet: the worker leaves it alone.
    call_command("deliver_callbacks", "--once")
    assert len(receiver.requests) == 1
    make_due(message)
    call_command("deliver_callbacks", "--once")
    message.refresh_from_db()
    assert len(receiver.requests) == 2
    assert message.delivered_at is not None
    assert (message.callback_attempts, message.delivered_via) == (2, "callback")
    # Same event, freshly signed.
    assert json.loads(receiver.requests[0][1]) == json.loads(receiver.requests[1][1])


def test_after_eight_failures_it_stays_waiting(client, agent, receiver):
    receiver.statuses = [503] * 8
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    message = Message.objects.get()
    for _ in range(7):
        make_due(message)
        call_command("deliver_callbacks", "--once")
    message.refresh_from_db()
    assert message.callback_attempts == 8
    assert message.next_callback_at is None and message.delivered_at is None
    call_command("deliver_callbacks", "--once")
    assert len(receiver.requests) == 8
    taken = waiting.messages_take_waiting(agent_id="agent-a")
    assert [event["id"] for event in taken] == [message.id]
    assert waiting.messages_take_waiting(agent_id="agent-a") == []


def test_the_backoff_grows_from_five_seconds_to_about_an_hour():
    delays = [callbacks.callback_delay_seconds(n) for n in range(1, callbacks.CALLBACK_MAX_ATTEMPTS)]
    assert delays[0] == 5
    assert all(later > earlier for earlier, later in zip(delays, delays[1:], strict=False))
    assert 3000 <= delays[-1] <= 4000


def test_an_unreachable_callback_url_is_retried_later(client, make_agent, settings):
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url="http://127.0.0.1:9/nothing")
    assert post_twilio(client, PATH, fixture("twilio_sms.json")).status_code == 200
    message = Message.objects.get()
    assert message.callback_attempts == 1 and message.delivered_at is None and message.next_callback_at


def test_without_a_callback_url_it_waits(client, make_agent):
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    message = Message.objects.get()
    assert (message.delivered_at, message.callback_attempts, message.delivered_via) == (None, 0, "")


def test_a_waiting_message_taken_by_a_fetch_is_never_posted(client, agent, receiver):
    receiver.statuses = [500]
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    message = Message.objects.get()
    assert len(waiting.messages_take_waiting(agent_id="agent-a")) == 1
    make_due(message)
    call_command("deliver_callbacks", "--once")
    assert len(receiver.requests) == 1


def test_the_worker_picks_up_a_message_whose_first_attempt_never_ran(agent, receiver):
    message = Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+12125550123", to_address="+14155550100", body="crashed before delivery", status="received",
    )
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    call_command("deliver_callbacks", "--once")
    assert json.loads(receiver.requests[0][1])["body"] == "crashed before delivery"


def test_an_expired_claim_makes_the_row_free_again(agent):
    message = Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+1", to_address="+2", body="x", status="received",
    )
    assert claims.message_claim(message_id=message.pk, via="mcp")
    assert not claims.message_claim(message_id=message.pk, via="mcp")
    assert waiting.messages_take_waiting(agent_id="agent-a") == []
    # The claiming process died: after the lease the row is free for anyone.
    Message.objects.filter(pk=message.pk).update(next_callback_at=timezone.now() - timedelta(seconds=1))
    assert len(waiting.messages_take_waiting(agent_id="agent-a")) == 1
    assert not claims.message_mark_delivered(message_id=message.pk, via="mcp")


def test_retention_keeps_bodies_for_the_configured_days(settings, agent):
    settings.MESSAGE_BODY_RETENTION_DAYS = 7
    message = Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+1", to_address="+2", body="keep me a week", status="received",
    )
    assert waiting.messages_take_waiting(agent_id="agent-a")[0]["body"] == "keep me a week"
    message.refresh_from_db()
    assert message.body == "keep me a week"
    assert claims.message_bodies_purge() == 0
    Message.objects.filter(pk=message.pk).update(delivered_at=timezone.now() - timedelta(days=8))
    call_command("purge_message_bodies")
    message.refresh_from_db()
    assert message.body is None and message.from_address == "+1"


def test_a_pending_waiter_gets_the_message_instead_of_the_callback(agent, receiver):
    message = Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+1", to_address="+2", body="for the waiter", status="received",
    )
    key = waiting._waiter_key("agent-a", None)
    waiting._waiter_add(key, 30)
    try:
        routing.schedule_delivery(message.pk)
    finally:
        waiting._waiter_remove(key)
    assert receiver.requests == []
    message.refresh_from_db()
    assert message.delivered_at is None
