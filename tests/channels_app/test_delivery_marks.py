"""Recording pushes as delivered: a transient database refusal must not turn into a second push later."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.utils import timezone

from channels_app import delivery
from channels_app.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


def pushed_row(agent: Any) -> Message:
    return Message.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="inbound", channel="sms",
        from_address="+12125550123", to_address="+14155550100", body="hello", status="received",
        delivered_via=delivery.VIA_MCP, next_callback_at=timezone.now(),
    )


async def test_a_mark_refused_once_by_the_database_is_written_on_the_next_try(make_agent, monkeypatch) -> None:
    agent, _token = await sync_to_async(make_agent)("agent-a")
    message = await sync_to_async(pushed_row)(agent)
    real_mark = delivery.messages_mark_pushed
    calls: list[list[str]] = []

    def locked_once(*, message_ids: list[str]) -> int:
        calls.append(message_ids)
        if len(calls) == 1:
            raise OperationalError("database table is locked: channels_app_message")
        return real_mark(message_ids=message_ids)

    monkeypatch.setattr(delivery, "messages_mark_pushed", locked_once)
    await delivery._write_marks([message.pk])  # noqa: SLF001

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

    monkeypatch.setattr(delivery, "MARK_RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(delivery, "messages_mark_pushed", always_locked)
    await delivery._write_marks([message.pk])  # noqa: SLF001

    await sync_to_async(message.refresh_from_db)()
    assert len(calls) == 3
    assert message.delivered_at is None and message.delivered_via == delivery.VIA_MCP
