"""The delivery route an inbound event gets before it is stored, and the hand-off after the commit.

A fake session stands in for a live MCP client in this process; Django's test client runs the
webhook, so the delivery runs on delivery's background loop and has finished when the POST returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.services import AgentAddresses
from channels_app.delivery import claims, live_push, routing, waiting
from channels_app.models import Direction, Message
from orchestrator import agent_registry
from tests.channels_app.test_delivery_callbacks import receiver  # noqa: F401
from tests.channels_app.webhook_support import fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("webhook_secrets")]

PATH = "/webhooks/agent-a/sms"


class FakeConnection:
    """What agent_registry needs of an MCP session to push a notification."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def send_log_message(self, level: str, data: dict[str, Any], logger: str | None = None) -> None:
        assert (level, logger) == ("info", "comms.inbound")
        self.events.append(data)


@pytest.fixture
def single_process(settings: Any) -> None:
    # Without REDIS_URL no other process can hold a session, which is what lets a route skip asking.
    settings.REDIS_URL = None


@pytest.fixture
def session() -> Iterator[FakeConnection]:
    """A live session of agent-a in this process, on the loop the test client's deliveries run on."""
    fake = FakeConnection()
    live = agent_registry.LiveSession(
        agent_id="agent-a", session=fake, transport="sse", loop=routing._loop_outside_the_server()  # type: ignore[arg-type]
    )
    agent_registry._sessions["agent-a"] = live
    yield fake
    agent_registry._sessions.pop("agent-a", None)


def states() -> list[tuple[str, bool, str | None]]:
    return [(m.delivered_via, m.delivered_at is not None, m.body) for m in Message.objects.order_by("created_at")]


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"].split()[0] for query in captured.captured_queries if not query["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def test_it_pushes_to_a_session_in_this_process_from_the_inserted_row(client, make_agent, session):
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    response = post_twilio(client, PATH, fixture("twilio_sms.json"))
    assert response.status_code == 200
    assert [event["body"] for event in session.events] == [fixture("twilio_sms.json")["Body"]]
    assert session.events[0]["id"] == Message.objects.get().pk
    # Claimed at insert, marked once sent; retention 0 erased the body.
    assert states() == [("mcp", True, None)]


def test_it_inserts_the_row_already_claimed_for_the_push(client, make_agent, session, monkeypatch):
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    monkeypatch.setattr(routing, "deliver_stored", lambda message, route: None)
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    message = Message.objects.get()
    assert message.delivered_via == "mcp" and message.delivered_at is None
    assert message.next_callback_at is not None and message.next_callback_at > timezone.now()
    # Nobody else takes it while the lease holds.
    assert waiting.messages_take_waiting(agent_id="agent-a") == []


@pytest.mark.usefixtures("single_process")
def test_it_does_no_delivery_work_for_an_agent_nobody_can_reach(client, make_agent, monkeypatch):
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    started: list[str] = []
    monkeypatch.setattr(routing, "_run_delivery", lambda start, message_id: started.append(message_id))
    with CaptureQueriesContext(connection) as captured:
        response = post_twilio(client, PATH, fixture("twilio_sms.json"))
    assert response.status_code == 200
    assert started == []
    # One read (the agent) and the message, which is its own dedupe key; nothing read back.
    assert [s for s in statements(captured) if s in ("SELECT", "INSERT", "UPDATE")] == ["SELECT", "INSERT"]
    assert states() == [("", False, fixture("twilio_sms.json")["Body"])]


@pytest.mark.usefixtures("single_process")
def test_it_pushes_to_a_session_that_connected_while_the_message_was_stored(client, make_agent, session, monkeypatch):
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    # The route was decided before the session registered.
    monkeypatch.setattr(routing, "delivery_route", lambda **kwargs: routing.ROUTE_NONE)
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    assert len(session.events) == 1
    assert states() == [("mcp", True, None)]


def test_it_posts_to_the_callback_when_the_session_left_before_the_push(client, make_agent, receiver, monkeypatch):  # noqa: F811
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    # Routed to a session in this process, which is gone by the time of the push.
    monkeypatch.setattr(routing, "delivery_route", lambda **kwargs: claims.VIA_MCP)
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    assert len(receiver.requests) == 1
    assert states() == [("callback", True, None)]


def test_it_delivers_a_message_whose_waiter_gave_up_while_it_was_stored(client, make_agent, receiver, monkeypatch):  # noqa: F811
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    monkeypatch.setattr(routing, "delivery_route", lambda **kwargs: claims.VIA_WAIT)
    post_twilio(client, PATH, fixture("twilio_sms.json"))
    assert len(receiver.requests) == 1
    assert states() == [("callback", True, None)]


def test_it_leaves_a_message_to_a_pending_waiter(client, make_agent, receiver):  # noqa: F811
    make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"), callback_url=receiver.url)
    key = waiting._waiter_key("agent-a", None)
    waiting._waiter_add(key, 30)
    try:
        post_twilio(client, PATH, fixture("twilio_sms.json"))
    finally:
        waiting._waiter_remove(key)
    assert receiver.requests == []
    assert states() == [("", False, fixture("twilio_sms.json")["Body"])]
    assert [m["body"] for m in waiting.messages_take_waiting(agent_id="agent-a", via=claims.VIA_WAIT)] == [
        fixture("twilio_sms.json")["Body"]
    ]


def _four_pushed_messages_marked(make_agent, monkeypatch) -> tuple[list[str], list[list[str]]]:
    agent, _token = make_agent("agent-a")
    ids = [
        Message.objects.create(
            agent=agent, organization_id=agent.organization_id, direction=Direction.INBOUND, channel="sms",
            from_address="+12125550123", to_address="+14155550100", body=f"m{n}", delivered_via=claims.VIA_MCP,
        ).pk
        for n in range(4)
    ]
    batches: list[list[str]] = []
    mark = live_push.messages_mark_pushed

    def recording(*, message_ids: list[str]) -> int:
        batches.append(list(message_ids))
        return mark(message_ids=message_ids)

    monkeypatch.setattr(live_push, "messages_mark_pushed", recording)

    async def push_all() -> None:
        await asyncio.gather(*(live_push._mark_pushed(message_id) for message_id in ids))
        # The first caller waited for its own mark only; the others' is written by a task.
        while asyncio.get_running_loop() in live_push._marks_pending:
            await asyncio.sleep(0.01)

    asyncio.run(push_all())
    assert Message.objects.filter(delivered_at__isnull=False, body__isnull=True).count() == 4
    return ids, batches


def test_it_records_pushes_that_finish_together_in_one_statement(make_agent, monkeypatch):
    ids, batches = _four_pushed_messages_marked(make_agent, monkeypatch)
    # The first push writes its mark at once; the three that finished meanwhile share the next one.
    assert batches == [ids[:1], ids[1:]]


def test_it_counts_waiters_in_one_cache_instance_across_worker_calls():
    from orchestrator.workers import run_blocking

    # Each worker call runs in a copy of the caller's context, where django's `cache` would be a new
    # instance (and with Redis a new connection) every time.
    async def twice() -> list[object]:
        return [await run_blocking(waiting._waiters) for _ in range(3)]

    first, *others = asyncio.run(twice())
    assert all(other is first for other in others)
    key = waiting._waiter_key("agent-a", None)
    waiting._waiter_add(key, 30)
    try:
        assert waiting.waiter_pending("agent-a", "sms")
    finally:
        waiting._waiter_remove(key)
    assert not waiting.waiter_pending("agent-a", "sms")


def test_it_reads_no_waiter_counts_while_no_waiter_of_this_process_uses_its_own_cache(monkeypatch):
    counts = waiting._waiters()
    if not isinstance(counts, LocMemCache):
        pytest.skip("a shared cache (Redis) also holds other processes' waiters: it is always read")
    reads: list[list[str]] = []
    get_many = counts.get_many

    def counting(keys: list[str]) -> dict[str, Any]:
        reads.append(list(keys))
        return get_many(keys)

    monkeypatch.setattr(counts, "get_many", counting)
    assert not waiting.waiter_pending("agent-a", "sms")
    assert reads == []
    key = waiting._waiter_key("agent-b", "sms")
    waiting._waiter_add(key, 30)
    try:
        # Any waiter of the process (here another agent's) sends every check to the cache.
        assert not waiting.waiter_pending("agent-a", "sms")
        assert waiting.waiter_pending("agent-b", "sms")
        assert len(reads) == 2
    finally:
        waiting._waiter_remove(key)
    assert not waiting.waiter_pending("agent-b", "sms")
    assert len(reads) == 2
