"""orchestrator.sql: each plain-SQL statement returns what the equivalent ORM query returns.

The suite runs on SQLite and, in CI's second pass, on PostgreSQL: both backends are covered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F
from django.db.models.signals import pre_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentLimits, AgentToken, ChannelAddress, OptOut, OrgToken, UsageBucket, UsageRecord
from channels_app.models import Direction, Message
from orchestrator import sql

pytestmark = pytest.mark.django_db


def _fields(instance: models.Model) -> dict[str, Any]:
    """Every loaded field's value, as the instance holds it."""
    deferred = instance.get_deferred_fields()
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields if f.attname not in deferred}


def _same_agent(loaded: Any, expected: Any) -> None:
    assert _fields(loaded) == _fields(expected)
    assert _fields(loaded.organization) == _fields(expected.organization)
    expected_limits = getattr(expected, "limits", None)
    loaded_limits = getattr(loaded, "limits", None)
    assert (loaded_limits and _fields(loaded_limits)) == (expected_limits and _fields(expected_limits))
    assert loaded._state.adding is False and loaded._state.db == "default"


def test_it_reads_a_live_agent_token_with_its_agent_as_select_related_does(make_agent) -> None:
    agent_a, _ = make_agent("agent-a")
    agent_b, _ = make_agent("agent-b")
    AgentLimits.objects.update_or_create(agent=agent_b, defaults={"max_spend_per_day": Decimal("12.5")})
    AgentLimits.objects.filter(agent=agent_a).delete()  # a LEFT JOIN that finds nothing

    for agent in (agent_a, agent_b):
        token = AgentToken.objects.get(agent=agent)
        expected = AgentToken.objects.select_related("agent__organization", "agent__limits").get(
            digest=token.digest, revoked_at__isnull=True
        )
        loaded = sql.live_agent_token(token.digest)
        assert loaded is not None
        assert _fields(loaded) == _fields(expected)
        with CaptureQueriesContext(connection) as captured:
            _same_agent(loaded.agent, expected.agent)
        assert captured.captured_queries == []  # related objects came with the row, as select_related's do
    assert sql.live_agent_token("no-such-digest") is None


def test_it_reads_no_revoked_token(make_agent, make_org) -> None:
    agent, _ = make_agent("agent-a")
    org, _ = make_org("Acme")
    agent_token, org_token = AgentToken.objects.get(agent=agent), OrgToken.objects.get(organization=org)
    loaded_org_token = sql.live_org_token(org_token.digest)
    assert loaded_org_token is not None
    assert _fields(loaded_org_token) == _fields(OrgToken.objects.get(digest=org_token.digest, revoked_at__isnull=True))

    AgentToken.objects.filter(pk=agent_token.pk).update(revoked_at=timezone.now())
    OrgToken.objects.filter(pk=org_token.pk).update(revoked_at=timezone.now())

    assert sql.live_agent_token(agent_token.digest) is None
    assert sql.live_org_token(org_token.digest) is None


def test_it_answers_whether_an_agent_token_s_session_may_still_receive_as_the_orm_does(make_agent) -> None:
    from agents.models import Agent, AgentStatus

    agent, _ = make_agent("agent-a")
    other, _ = make_agent("agent-b")
    token = AgentToken.objects.get(agent=agent)

    def both(token_id: int, agent_id: str | None) -> tuple[bool, bool]:
        expected = AgentToken.objects.filter(
            pk=token_id, revoked_at__isnull=True, agent_id=agent_id, agent__status=AgentStatus.ACTIVE
        ).exists()
        loaded = sql.agent_token_session_valid(token_id=token_id, agent_id=agent_id, active_status=AgentStatus.ACTIVE)
        return loaded, expected

    assert both(token.pk, agent.pk) == (True, True)
    assert both(token.pk, other.pk) == (False, False)  # another agent's session
    assert both(token.pk, None) == (False, False)
    assert both(0, agent.pk) == (False, False)
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.SUSPENDED)
    assert both(token.pk, agent.pk) == (False, False)
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.ACTIVE)
    AgentToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert both(token.pk, agent.pk) == (False, False)


def test_it_reads_an_agent_with_its_organization_and_limits_scoped_as_the_orm_does(make_agent, make_org) -> None:
    org, _ = make_org("Acme", "acme")
    agent, _ = make_agent("agent-a", org=org)
    expected = Agent_with_limits(pk=agent.pk)

    _same_agent(sql.agent_with_limits(agent.pk), expected)
    _same_agent(sql.agent_with_limits(agent.pk, organization_id="acme"), expected)
    assert sql.agent_with_limits(agent.pk, organization_id="default") is None
    assert sql.agent_with_limits("no-such-agent") is None


def Agent_with_limits(**filters: Any) -> Any:  # noqa: N802
    from agents.models import Agent

    return Agent.objects.select_related("organization", "limits").get(**filters)


def test_it_reads_only_the_named_agent_fields_and_defers_the_rest(make_agent) -> None:
    from agents.models import Agent

    agent, _ = make_agent("agent-a")
    fields = ("status", "deprovisioned_at", "markup_percent", "blocked_channels")
    loaded = sql.agent_only(agent.pk, fields)
    expected = Agent.objects.only(*fields).get(pk=agent.pk)

    assert loaded is not None
    assert loaded.get_deferred_fields() == expected.get_deferred_fields()
    assert _fields(loaded) == _fields(expected)
    assert sql.agent_only("no-such-agent", fields) is None


def test_it_finds_the_sender_address_as_the_orm_does(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    ChannelAddress.objects.create(agent=agent, kind="phone", address="+14155550100", released_at=timezone.now())
    ChannelAddress.objects.create(agent=agent, kind="phone", address="+14155550101")
    ChannelAddress.objects.create(agent=agent, kind="phone", address="+14155550102")

    for kind in ("phone", "email", "whatsapp"):
        expected = (
            ChannelAddress.objects.filter(agent_id=agent.pk, kind=kind, released_at__isnull=True)
            .order_by("pk").values_list("address", flat=True).first()
        )
        assert sql.sender_address(agent.pk, kind) == expected
    assert sql.sender_address(agent.pk, "phone") == "+14155550101"


def test_it_answers_whether_a_contact_opted_out_as_the_orm_does(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    OptOut.objects.create(agent=agent, channel="sms", contact="+14155550123")

    for channels, contact in [(["sms"], "+14155550123"), (["sms", "whatsapp"], "+14155550123"),
                              (["whatsapp"], "+14155550123"), (["sms"], "+14155550999")]:
        expected = OptOut.objects.filter(agent_id=agent.pk, channel__in=channels, contact=contact).exists()
        assert sql.opted_out(agent.pk, channels, contact) is expected


def _buckets() -> list[int]:
    start = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    made = [
        UsageBucket.objects.create(scope="agent", scope_id="agent-a", window=window, window_start=start,
                                   actions=3, spend=Decimal("1.250000"))
        for window in ("minute", "hour", "day")
    ]
    return [bucket.pk for bucket in made]


def test_it_locks_and_reads_usage_buckets_as_the_orm_does() -> None:
    ids = _buckets()
    with transaction.atomic():
        expected = list(
            UsageBucket.objects.filter(pk__in=ids[1:]).select_for_update().order_by("pk")
            .values_list("pk", "scope", "scope_id", "window", "window_start", "actions", "spend")
        )
        assert sql.usage_buckets_locked(list(reversed(ids[1:]))) == expected
    assert isinstance(expected[0][4], datetime) and expected[0][4].tzinfo is not None


def test_it_counts_an_action_in_usage_buckets_as_the_orm_does() -> None:
    ids = _buckets()
    with transaction.atomic():
        UsageBucket.objects.filter(pk__in=ids[:1]).update(actions=F("actions") + 1, spend=F("spend") + Decimal("0.0079"))
        assert sql.usage_buckets_count(ids[1:2], Decimal("0.0079")) == 1
    by_orm, by_sql = UsageBucket.objects.get(pk=ids[0]), UsageBucket.objects.get(pk=ids[1])
    assert (by_sql.actions, by_sql.spend) == (by_orm.actions, by_orm.spend) == (4, Decimal("1.257900"))


def test_it_counts_an_action_and_reads_the_counted_rows_as_the_orm_does_in_one_statement() -> None:
    ids = _buckets()
    with transaction.atomic():
        UsageBucket.objects.filter(pk__in=ids[:1]).update(actions=F("actions") + 1, spend=F("spend") + Decimal("0.0079"))
        with CaptureQueriesContext(connection) as captured:
            counted = sql.usage_buckets_count_returning(list(reversed(ids[1:])), Decimal("0.0079"))
        expected = list(
            UsageBucket.objects.filter(pk__in=ids[1:]).select_for_update().order_by("pk")
            .values_list("pk", "scope", "scope_id", "window", "window_start", "actions", "spend")
        )
    assert counted == expected and len(captured.captured_queries) == 1
    by_orm, by_sql = UsageBucket.objects.get(pk=ids[0]), UsageBucket.objects.get(pk=ids[1])
    assert (by_sql.actions, by_sql.spend) == (by_orm.actions, by_orm.spend) == (4, Decimal("1.257900"))
    assert isinstance(counted[0][4], datetime) and counted[0][4].tzinfo is not None


def _message(agent: Any, **fields: Any) -> Message:
    return Message(agent=agent, organization_id=agent.organization_id, direction=Direction.OUTBOUND, channel="sms",
                   from_address="+14155550100", to_address="+14155550123", body="hi", media_urls=["https://x/y.png"],
                   cost=Decimal("0.0079"), **fields)


def test_it_inserts_a_row_that_reads_back_as_one_saved_by_save(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    by_save, by_sql = _message(agent), _message(agent)
    by_save.save(force_insert=True)
    before = timezone.now()

    assert sql.insert(by_sql) is by_sql
    assert by_sql._state.adding is False and by_sql._state.db == "default"
    assert by_sql.created_at >= before  # auto_now_add ran, as save() runs it
    ignored = {"id", "created_at", "updated_at"}
    read_save, read_sql = Message.objects.get(pk=by_save.pk), Message.objects.get(pk=by_sql.pk)
    assert {k: v for k, v in _fields(read_sql).items() if k not in ignored} == {
        k: v for k, v in _fields(read_save).items() if k not in ignored
    }
    assert read_sql.created_at == by_sql.created_at


def test_it_sets_the_new_key_of_a_row_whose_key_the_database_makes(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    record = sql.insert(UsageRecord(agent_id=agent.pk, organization_id=agent.organization_id, action_type="send_message",
                                    channel="sms", provider_cost=Decimal("0.0079"), reference="m1"))
    again = sql.insert(UsageRecord(agent_id=agent.pk, organization_id=agent.organization_id, action_type="send_message",
                                   channel="sms", provider_cost=None, reference="m2"))

    assert record.pk is not None and again.pk == record.pk + 1 or again.pk > record.pk
    assert UsageRecord.objects.get(pk=record.pk).reference == "m1"
    assert UsageRecord.objects.get(pk=again.pk).provider_cost is None


def test_an_insert_that_breaks_a_constraint_raises_django_s_integrity_error(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    OptOut.objects.create(agent=agent, channel="sms", contact="+14155550123")

    with pytest.raises(IntegrityError), transaction.atomic():
        sql.insert(OptOut(agent=agent, channel="sms", contact="+14155550123"))


def test_it_leaves_the_insert_to_save_when_a_receiver_listens(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    seen: list[str] = []

    def receiver(sender: Any, instance: OptOut, **kwargs: Any) -> None:
        seen.append(instance.contact)

    pre_save.connect(receiver, sender=OptOut)
    try:
        sql.insert(OptOut(agent=agent, channel="sms", contact="+14155550123"))
    finally:
        pre_save.disconnect(receiver, sender=OptOut)

    assert seen == ["+14155550123"]


def test_it_records_a_sent_message_as_the_orm_does(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    by_orm, by_sql = _message(agent), _message(agent)
    by_orm.save()
    by_sql.save()
    now = timezone.now()
    values = {"status": "sent", "external_id": "SM123", "cost": Decimal("0.0158"), "provider": "twilio", "updated_at": now}

    Message.objects.filter(pk=by_orm.pk).update(**values)
    assert sql.message_sent(message_id=by_sql.pk, **values) == 1

    ignored = {"id", "created_at"}
    read_orm, read_sql = Message.objects.get(pk=by_orm.pk), Message.objects.get(pk=by_sql.pk)
    assert {k: v for k, v in _fields(read_sql).items() if k not in ignored} == {
        k: v for k, v in _fields(read_orm).items() if k not in ignored
    }
    assert sql.message_sent(message_id="no-such-message", **values) == 0


@pytest.mark.parametrize("via", ["mcp", "callback"])
@pytest.mark.parametrize("erase_bodies", [False, True])
def test_it_marks_pushed_or_posted_messages_delivered_as_the_orm_does(make_agent, erase_bodies: bool, via: str) -> None:
    agent, _ = make_agent("agent-a")
    earlier = timezone.now() - timedelta(minutes=5)
    rows = [_message(agent, delivered_via=via, next_callback_at=earlier) for _ in range(5)]
    rows[4].delivered_via = "wait" if via == "mcp" else "mcp"  # claimed by another path: not marked
    rows[3].delivered_at = earlier  # already delivered: not marked again
    for row in rows:
        row.save()
    now = timezone.now()
    assignments: dict[str, Any] = {"delivered_at": now, "next_callback_at": None}
    if erase_bodies:
        assignments.update(body=None, html=None)

    expected_count = Message.objects.filter(pk__in=[rows[0].pk], delivered_at__isnull=True, delivered_via=via).update(
        **assignments
    )
    count = sql.messages_mark_delivered(ids=[rows[1].pk, rows[2].pk, rows[3].pk, rows[4].pk], now=now, via=via,
                                        erase_bodies=erase_bodies)

    assert (expected_count, count) == (1, 2)
    read = {row.pk: Message.objects.get(pk=row.pk) for row in rows}
    for marked in (rows[1], rows[2]):
        assert (read[marked.pk].delivered_at, read[marked.pk].next_callback_at, read[marked.pk].body) == (
            read[rows[0].pk].delivered_at, None, read[rows[0].pk].body
        )
    assert read[rows[3].pk].delivered_at == earlier
    assert read[rows[4].pk].delivered_at is None


def test_its_statements_go_through_django_s_cursor_so_query_capture_sees_them(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    digest = AgentToken.objects.get(agent=agent).digest

    with CaptureQueriesContext(connection) as captured:
        sql.live_agent_token(digest)

    assert len(captured.captured_queries) == 1
    assert digest in captured.captured_queries[0]["sql"]


def test_it_reads_the_sender_address_and_the_opt_out_in_one_statement_as_the_orm_does(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    ChannelAddress.objects.create(agent=agent, kind="phone", address="+14155550100", released_at=timezone.now())
    ChannelAddress.objects.create(agent=agent, kind="phone", address="+14155550101")
    OptOut.objects.create(agent=agent, channel="sms", contact="+14155550123")

    for kind in ("phone", "email"):
        for channels, contact in [(["sms"], "+14155550123"), (["sms", "whatsapp"], "+14155550123"),
                                  (["whatsapp"], "+14155550123"), (["sms"], "+14155550999")]:
            expected = (
                ChannelAddress.objects.filter(agent_id=agent.pk, kind=kind, released_at__isnull=True)
                .order_by("pk").values_list("address", flat=True).first(),
                OptOut.objects.filter(agent_id=agent.pk, channel__in=channels, contact=contact).exists(),
            )
            assert sql.sender_address_and_opted_out(agent.pk, kind, channels, contact) == expected
