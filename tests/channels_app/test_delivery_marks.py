"""Recording pushes as delivered: a transient database refusal must not turn into a second push later."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.utils import timezone

from channels_app.delivery import claims, live_push
from channels_app.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


def pushed_row(agent: Any) -> Message:
    return Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+12125550123", to_address="+14155550100", body="hello", status="received",
        delivered_via=claims.VIA_MCP, next_callback_at=timezone.now(),
    )


async def test_a_mark_refused_once_by_the_database_is_written_on_the_next_try(make_agent, monkeypatch) -> None:
    agent, _token = await sync_to_async(make_agent)("agent-a")
    message = await sync_to_async(pushed_row)(agent)
    real_mark = live_push.messages_mark_pushed
    calls: list[list[str]] = []

    def locked_once(*, message_ids: list[str]) -> int:
        calls.append(message_ids)
        if len(calls) == 1:
            raise OperationalError("database table is locked: channels_app_message")
        return real_mark(message_ids=message_ids)

    monkeypatch.setattr(live_push, "messages_mark_pushed", locked_once)
    await live_push._write_marks([message.pk])  # noqa: SLF001

    await sync_to_async(message.refresh_from_db)()
    assert len(calls) == 2
    assert message.delivered_at is not None and not message.body  # retention 0: erased once delivered


async def test_it_gives_up_after_its_retries_and_leaves_the_lease_to_expire(make_agent, monkeypatch) -> None:
    agent, _token = await sync_to_async(make_agent)("agent-a")
    message = await sync_to_async(pushed_row)(agent)
    calls: list[list[str]] = []

    def always_locked(*, message_ids: list[str]) -> int:
        calls.append(message_ids)
        raise OperationalError("database table is locked")

    monkeypatch.setattr(live_push, "MARK_RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(live_push, "messages_mark_pushed", always_locked)
    await live_push._write_marks([message.pk])  # noqa: SLF001

    await sync_to_async(message.refresh_from_db)()
    assert len(calls) == 3
    assert message.delivered_at is None and message.delivered_via == claims.VIA_MCP


@pytest.mark.parametrize("count", [1, 3, 70])
def test_it_marks_exactly_the_pushed_rows_of_a_batch_of_any_size(make_agent, count) -> None:
    agent, _token = make_agent("agent-a")
    pushed = [pushed_row(agent) for _ in range(count)]
    claimed_by_a_callback = pushed_row(agent)
    Message.objects.filter(pk=claimed_by_a_callback.pk).update(delivered_via=claims.VIA_CALLBACK)

    marked = live_push.messages_mark_pushed(message_ids=[message.pk for message in pushed] + [claimed_by_a_callback.pk])

    assert marked == count
    rows = {row.pk: row for row in Message.objects.all()}
    assert all(rows[message.pk].delivered_at is not None and rows[message.pk].body is None for message in pushed)
    assert rows[claimed_by_a_callback.pk].delivered_at is None
    assert rows[claimed_by_a_callback.pk].body == "hello"
    assert live_push.messages_mark_pushed(message_ids=[message.pk for message in pushed]) == 0


def test_it_keeps_the_bodies_of_pushed_rows_when_retention_is_configured(make_agent, settings) -> None:
    settings.MESSAGE_BODY_RETENTION_DAYS = 7
    agent, _token = make_agent("agent-a")
    message = pushed_row(agent)

    assert live_push.messages_mark_pushed(message_ids=[message.pk]) == 1

    message.refresh_from_db()
    assert message.delivered_at is not None
    assert message.body == "hello"
    assert message.next_callback_at is None
