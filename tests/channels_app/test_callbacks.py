"""Callbacks on the event loop: pooled keep-alive POSTs, retries in the server itself, a bound per
destination, no redirects, one delivery however many attempts race, and no non-public destination."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from agents.crypto import decrypt
from agents.models import Agent
from agents.services import AgentAddresses
from channels_app import callbacks, signatures
from channels_app.delivery import waiting
from channels_app.destinations import DestinationRefused, destination_addresses
from channels_app.models import Message
from tests.channels_app.webhook_support import TWILIO_TOKEN, fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]

PATH = "/webhooks/agent-a/sms"
WAIT_SECONDS = 30


class Receiver:
    """The agent's callback endpoint on loopback: records each request and answers from a script.

    HTTP/1.1 with keep-alive, so the client's connection reuse shows in the peer ports it records.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.location = ""
        self.gate = threading.Event()
        self.gate.set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                    receiver.requests.append({
                        "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                        "peer": self.client_address, "at": time.monotonic(),
                    })
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.gate.wait(WAIT_SECONDS)
                with receiver.lock:
                    receiver.in_flight -= 1
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/comms-callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers(settings: Any) -> Iterator[Callable[[], Receiver]]:
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def verify(request: dict[str, Any], secret: str) -> bool:
    parts = dict(part.split("=", 1) for part in request["headers"]["x-comms-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(int(parts["t"]) - time.time()) < 60


async def until(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            if await sync_to_async(condition)():
                return
        except OperationalError:
            pass  # SQLite's shared in-memory test database refuses a read while the server writes
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def sms(number: int, agent_id: str = "agent-a") -> tuple[str, dict[str, str]]:
    params = dict(fixture("twilio_sms.json"), MessageSid=f"SM{number:032d}", Body=f"message {number}")
    return f"/webhooks/{agent_id}/sms", params


async def post_live(server_url: str, path: str, params: dict[str, str], http: httpx.AsyncClient) -> None:
    from django.conf import settings

    signature = signatures.twilio_sign(url=settings.PUBLIC_BASE_URL + path, params=params, auth_token=TWILIO_TOKEN)
    response = await http.post(
        server_url + path, content=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert response.status_code == 200, response.text


def delivered(count: int) -> Callable[[], bool]:
    return lambda: Message.objects.filter(delivered_at__isnull=False, delivered_via="callback").count() == count


async def test_it_posts_each_event_signed_from_the_server_loop_over_one_kept_alive_connection(asgi_server, make_agent, receivers):
    receiver = receivers()
    # Through a name: the connection goes to the address it resolved to, the Host header keeps the name.
    url = f"http://localhost:{receiver.port}/comms-callback"
    agent, _token = await sync_to_async(make_agent)("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=url)
    secret = decrypt(agent.callback_secret_encrypted)
    async with httpx.AsyncClient() as http:
        for number in range(5):
            await post_live(asgi_server.url, *sms(number), http)
            await until(delivered(number + 1), "the callback recorded as delivered")
    assert [json.loads(r["body"])["body"] for r in receiver.requests] == [f"message {n}" for n in range(5)]
    ids = await sync_to_async(lambda: list(Message.objects.order_by("created_at").values_list("pk", flat=True)))()
    assert [json.loads(r["body"])["id"] for r in receiver.requests] == ids
    for request in receiver.requests:
        assert verify(request, secret) and not verify(request, "another-secret")
        assert request["headers"]["host"] == f"localhost:{receiver.port}"
        assert request["headers"]["content-type"] == "application/json"
    # One webhook after another: each callback reused the connection of the one before.
    assert len({request["peer"] for request in receiver.requests}) == 1


async def test_the_server_retries_by_itself_until_the_third_attempt_succeeds(asgi_server, make_agent, receivers, settings):
    settings.CALLBACK_FIRST_RETRY_SECONDS = 0.2
    settings.CALLBACK_SWEEP_SECONDS = 0.05
    receiver = receivers()
    receiver.statuses = [500, 503]
    await sync_to_async(make_agent)("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    async with httpx.AsyncClient() as http:
        await post_live(asgi_server.url, *sms(1), http)
    # No deliver_callbacks runs here: the server's own sweep makes the second and third attempts.
    await until(delivered(1), "the third attempt")
    message = await sync_to_async(Message.objects.get)()
    assert message.callback_attempts == 3 and len(receiver.requests) == 3
    assert len({request["body"] for request in receiver.requests}) == 1
    first, second, third = (request["at"] for request in receiver.requests)
    # The backoff: 0.2 s after the first failure, three times that after the second.
    assert second - first >= 0.2 and third - second >= 0.6


async def test_it_keeps_at_most_the_configured_callbacks_in_flight_to_one_destination(asgi_server, make_agent, receivers, settings):
    settings.CALLBACK_CONCURRENCY_PER_DESTINATION = 2
    busy, other = receivers(), receivers()
    busy.gate.clear()
    await sync_to_async(make_agent)("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=busy.url)
    await sync_to_async(make_agent)("agent-b", addresses=AgentAddresses(phone="+14155550101"), callback_url=other.url)
    async with httpx.AsyncClient() as http:
        for number in range(6):
            await post_live(asgi_server.url, *sms(number), http)
        await until(lambda: busy.in_flight == 2, "two callbacks held by the busy destination")
        # Another destination is not held up by the busy one.
        await post_live(asgi_server.url, *sms(99, "agent-b"), http)
        await until(lambda: len(other.requests) == 1, "the other destination's callback")
    assert busy.max_in_flight == 2 and len(busy.requests) == 2
    busy.gate.set()
    await until(delivered(7), "every callback delivered")
    assert busy.max_in_flight == 2 and len(busy.requests) == 6


def test_a_redirect_is_a_failed_attempt_and_the_signed_body_goes_nowhere_else(client, make_agent, receivers):
    first, elsewhere = receivers(), receivers()
    first.statuses = [307]
    first.location = elsewhere.url
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=first.url)
    assert post_twilio(client, PATH, fixture("twilio_sms.json")).status_code == 200
    message = Message.objects.get()
    assert len(first.requests) == 1 and "x-comms-signature" in first.requests[0]["headers"]
    assert elsewhere.requests == []
    assert (message.delivered_at, message.delivered_via, message.callback_attempts) == (None, "", 1)
    assert message.next_callback_at > timezone.now()


def test_a_due_message_is_posted_once_however_many_attempts_race(make_agent, receivers):
    receiver = receivers()
    receiver.gate.clear()  # the first attempt stays in flight while the others try
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    message = Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+12125550123", to_address="+14155550100", body="once", status="received",
        next_callback_at=timezone.now() - timedelta(seconds=1),
    )

    async def racing_attempts() -> list[bool | None]:
        return await asyncio.gather(*(callbacks.callback_attempt(message.pk) for _ in range(10)))

    with ThreadPoolExecutor(max_workers=1) as pool:
        in_a_server = pool.submit(asyncio.run, racing_attempts())
        deadline = time.monotonic() + WAIT_SECONDS
        while not receiver.requests:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # A worker process's pass while that attempt is in flight finds nothing to send.
        call_command("deliver_callbacks", "--once")
        receiver.gate.set()
        results = in_a_server.result(WAIT_SECONDS)
    assert len(receiver.requests) == 1
    assert sorted(results, key=str) == [None] * 9 + [True]
    message.refresh_from_db()
    assert (message.delivered_via, message.callback_attempts) == ("callback", 1) and message.delivered_at
    call_command("deliver_callbacks", "--once")
    assert len(receiver.requests) == 1


def test_a_loopback_callback_url_is_refused_at_delivery_and_the_message_waits(client, make_agent, receivers, settings):
    receiver = receivers()
    # Stored before the check existed (or by a path around it): delivery checks again.
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    settings.CALLBACK_ALLOWED_HOSTS = []
    assert post_twilio(client, PATH, fixture("twilio_sms.json")).status_code == 200
    assert receiver.requests == []
    message = Message.objects.get()
    assert (message.callback_attempts, message.next_callback_at, message.delivered_at) == (8, None, None)
    call_command("deliver_callbacks", "--once")
    assert receiver.requests == []
    assert [event["id"] for event in waiting.messages_take_waiting(agent_id="agent-a")] == [message.pk]


async def test_a_name_that_resolves_to_loopback_is_refused_at_delivery(settings):
    import socket

    settings.CALLBACK_ALLOWED_HOSTS = []
    name = socket.gethostname()
    with pytest.raises(DestinationRefused):
        await destination_addresses(f"http://{name}:8080/hook")
    settings.CALLBACK_ALLOWED_HOSTS = [name]
    _parts, host, port, addresses = await destination_addresses(f"http://{name}:8080/hook")
    assert (host, port) == (name, 8080) and addresses


async def test_a_loopback_host_allowed_and_then_no_longer_allowed_is_refused_at_once(settings):
    # Checked destinations are kept for a while (channels_app.destinations): never past a change of the list.
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    _parts, _host, _port, addresses = await destination_addresses("http://127.0.0.1:8080/hook")
    assert addresses == ["127.0.0.1"]
    settings.CALLBACK_ALLOWED_HOSTS = []
    with pytest.raises(DestinationRefused):
        await destination_addresses("http://127.0.0.1:8080/hook")


def test_an_agent_deactivated_since_is_not_posted(make_agent, receivers):
    receiver = receivers()
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    message = Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+1", to_address="+2", body="x", status="received", next_callback_at=timezone.now() - timedelta(seconds=1),
    )
    Agent.objects.filter(pk=agent.pk).update(status="suspended")
    assert asyncio.run(callbacks.callback_attempt(message.pk)) is None
    assert receiver.requests == []


@pytest.mark.parametrize("secret", ["whsec_short", "s" * 64, "a longer secret than SHA-256's 64-byte block " * 3, "sécret"])
def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_with_the_agents_secret(secret):
    body = b'{"id":"msg_1","body":"Hi"}'
    for timestamp in (1_700_000_000, 1_700_000_001):  # a signer kept per secret starts afresh each time
        signature = callbacks.callback_signature(secret=secret, timestamp=timestamp, body=body)
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert signature == f"t={timestamp},v1={expected}"


def test_it_keeps_a_bounded_number_of_keyed_signers():
    for index in range(callbacks.KEYED_MACS_KEPT + 50):
        callbacks.callback_signature(secret=f"secret-{index}", timestamp=1, body=b"{}")
    assert callbacks._keyed_mac.cache_info().currsize == callbacks.KEYED_MACS_KEPT
    last = f"secret-{callbacks.KEYED_MACS_KEPT + 49}"
    assert callbacks.callback_signature(secret=last, timestamp=2, body=b"{}") == (
        "t=2,v1=" + hmac.new(last.encode(), b"2.{}", hashlib.sha256).hexdigest()
    )
