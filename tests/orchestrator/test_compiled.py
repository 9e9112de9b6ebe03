"""orchestrator.compiled: ORM statements compiled once, run with new values, must answer as the ORM does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from agents.models import AgentLimits, AgentToken, OptOut, UsageBucket
from orchestrator.compiled import CompiledSelect, CompiledUpdate, NotCompilable

pytestmark = pytest.mark.django_db


def _token_with_agent() -> CompiledSelect[AgentToken]:
    return CompiledSelect(
        lambda digest: AgentToken.objects.select_related("agent__organization", "agent__limits").filter(
            digest=digest, revoked_at__isnull=True
        )[:1]
    )


def test_it_reads_each_call_s_own_row_with_its_related_objects(make_agent) -> None:
    agent_a, _ = make_agent("agent-a")
    agent_b, _ = make_agent("agent-b")
    AgentLimits.objects.update_or_create(agent=agent_b, defaults={"max_actions_per_minute": 7})
    statement = _token_with_agent()

    for agent in (agent_a, agent_b, agent_a):
        token = AgentToken.objects.filter(agent=agent).get()
        loaded = statement.first(digest=token.digest)
        expected = AgentToken.objects.select_related("agent__organization", "agent__limits").get(pk=token.pk)
        assert loaded is not None
        assert (loaded.pk, loaded.agent_id, loaded.created_at) == (expected.pk, expected.agent_id, expected.created_at)
        assert loaded.agent.organization.name == expected.agent.organization.name
        assert loaded.agent.limits.max_actions_per_minute == expected.agent.limits.max_actions_per_minute
        assert loaded._state.adding is False and loaded._state.db == "default"
    assert statement.first(digest="no-such-digest") is None


def test_it_answers_a_revoked_token_as_the_orm_does(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    statement = _token_with_agent()
    token = AgentToken.objects.get(agent=agent)
    assert statement.first(digest=token.digest) is not None

    AgentToken.objects.filter(pk=token.pk).update(revoked_at=datetime.now(UTC))

    assert statement.first(digest=token.digest) is None


def test_it_runs_the_statement_through_django_s_cursor_so_query_capture_sees_it(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    statement = _token_with_agent()
    digest = AgentToken.objects.get(agent=agent).digest
    statement.first(digest=digest)  # compiled here

    with CaptureQueriesContext(connection) as captured:
        statement.first(digest=digest)

    assert len(captured.captured_queries) == 1
    assert digest in captured.captured_queries[0]["sql"]


def test_it_binds_lists_of_any_length_and_datetimes(make_agent) -> None:
    agent, _ = make_agent("agent-a")
    OptOut.objects.create(agent=agent, channel="sms", contact="+12125550100")
    OptOut.objects.create(agent=agent, channel="voice", contact="+12125550100")
    statement = CompiledSelect(
        lambda agent_id, channels, since: OptOut.objects.filter(
            agent_id=agent_id, channel__in=channels, created_at__gte=since
        ).order_by("channel").values_list("channel", "contact")
    )
    hour_ago = datetime.now(UTC) - timedelta(hours=1)

    assert statement.rows(agent_id=agent.pk, channels=["sms"], since=hour_ago) == [["sms", "+12125550100"]]
    assert statement.rows(agent_id=agent.pk, channels=("voice", "sms"), since=hour_ago) == [
        ["sms", "+12125550100"], ["voice", "+12125550100"]]
    assert statement.rows(agent_id=agent.pk, channels=["sms"], since=hour_ago + timedelta(hours=2)) == []
    assert statement.rows(agent_id="agent-x", channels=["sms"], since=hour_ago) == []


def test_it_refuses_to_compile_a_lookup_that_rewrites_the_value(make_agent) -> None:
    # __contains sends '%value%': the sentinel cannot be found, so binding could not be trusted.
    statement = CompiledSelect(lambda contact: OptOut.objects.filter(contact__contains=contact).values_list("pk"))

    with pytest.raises(NotCompilable):
        statement.rows(contact="555")


def test_it_refuses_parameter_types_it_cannot_bind_safely(make_agent) -> None:
    statement = CompiledSelect(lambda flag: OptOut.objects.filter(pk=flag).values_list("pk"))

    with pytest.raises(TypeError):
        statement.rows(flag=True)


def test_an_update_counts_and_writes_each_call_s_values(make_agent) -> None:
    window = datetime(2026, 11, 28, tzinfo=UTC)
    rows = [UsageBucket.objects.create(scope="agent", scope_id=f"a{n}", window="day", window_start=window)
            for n in range(3)]
    statement = CompiledUpdate(
        lambda ids, cost: (UsageBucket.objects.filter(pk__in=ids),
                           {"actions": F("actions") + 1, "spend": F("spend") + cost})
    )

    assert statement.execute(ids=[rows[0].pk, rows[1].pk], cost=Decimal("0.0083")) == 2
    assert statement.execute(ids=[rows[1].pk], cost=Decimal("1.5")) == 1

    counted = {row.scope_id: (row.actions, row.spend) for row in UsageBucket.objects.all()}
    assert counted == {"a0": (1, Decimal("0.0083")), "a1": (2, Decimal("1.5083")), "a2": (0, Decimal("0"))}


def test_an_insert_writes_the_row_save_would_write_and_returns_the_new_key(make_agent) -> None:
    from agents.models import UsageRecord
    from orchestrator.compiled import CompiledInsert

    agent, _ = make_agent("agent-a")
    statement = CompiledInsert(UsageRecord)
    fields = {"agent_id": agent.pk, "organization_id": agent.organization_id, "action_type": "send_message",
              "channel": "sms", "provider_cost": Decimal("0.0083"), "reference": "msg_1"}
    saved = UsageRecord(**fields)
    saved.save(force_insert=True)

    first = statement.insert(UsageRecord(**fields))
    second = statement.insert(UsageRecord(**{**fields, "reference": "msg_2 & <b>; 👋"}))

    assert first.pk is not None and second.pk == first.pk + 1 and first.pk > saved.pk
    assert first._state.adding is False and first._state.db == "default"
    columns = ("agent_id", "organization_id", "action_type", "channel", "provider_cost", "reference")
    read = {row["id"]: row for row in UsageRecord.objects.values("id", "created_at", *columns)}
    assert {k: read[first.pk][k] for k in columns} == {k: read[saved.pk][k] for k in columns}
    assert read[second.pk]["reference"] == "msg_2 & <b>; 👋"
    assert read[first.pk]["created_at"] == first.created_at  # auto_now_add filled in, as save() does


def test_an_insert_honours_save_signal_receivers_by_saving_the_normal_way(make_agent) -> None:
    from django.db.models.signals import post_save

    from agents.models import UsageRecord
    from orchestrator.compiled import CompiledInsert

    agent, _ = make_agent("agent-a")
    seen: list[int] = []

    def receiver(sender: object, instance: UsageRecord, created: bool, **kwargs: object) -> None:
        seen.append(instance.pk)

    post_save.connect(receiver, sender=UsageRecord)
    try:
        record = CompiledInsert(UsageRecord).insert(UsageRecord(
            agent_id=agent.pk, organization_id=agent.organization_id, action_type="x", channel="sms",
            provider_cost=Decimal("0"), reference="r"))
    finally:
        post_save.disconnect(receiver, sender=UsageRecord)

    assert seen == [record.pk]


def test_an_insert_that_breaks_a_constraint_raises_integrity_error_and_leaves_the_transaction_usable(make_agent) -> None:
    from django.db import IntegrityError, transaction

    from orchestrator.compiled import CompiledInsert

    agent, _ = make_agent("agent-a")
    statement = CompiledInsert(OptOut)
    statement.insert(OptOut(agent=agent, channel="sms", contact="+12125550100"))

    with pytest.raises(IntegrityError), transaction.atomic():
        statement.insert(OptOut(agent=agent, channel="sms", contact="+12125550100"))

    assert OptOut.objects.filter(agent=agent).count() == 1


def test_an_int_on_a_small_column_answers_as_the_orm_or_refuses_where_the_orm_checks_its_range(make_agent) -> None:
    from agents.models import Agent

    agent, _ = make_agent("agent-a")
    Agent.objects.filter(pk=agent.pk).update(quiet_hours_start=8)
    statement = CompiledSelect(lambda hour: Agent.objects.filter(quiet_hours_start=hour).values_list("pk"))
    _, biggest = connection.ops.integer_field_range("PositiveSmallIntegerField")

    if biggest is not None and biggest < 1_999_999_000:  # PostgreSQL: Django judges the sentinel out of range
        with pytest.raises(NotCompilable):
            statement.rows(hour=8)
    else:  # SQLite: 64-bit columns
        assert statement.rows(hour=8) == [["agent-a"]]
        assert statement.rows(hour=9) == []


def test_on_sqlite_it_skips_django_s_cursor_layer_when_nothing_records_queries(make_agent, monkeypatch) -> None:
    from django.db import IntegrityError, transaction

    from orchestrator.compiled import CompiledInsert

    if connection.vendor != "sqlite":
        pytest.skip("the driver's own cursor is used on SQLite only")
    agent, _ = make_agent("agent-a")
    select, insert = _token_with_agent(), CompiledInsert(OptOut)
    update = CompiledUpdate(lambda pk: (OptOut.objects.filter(pk=pk), {"contact": "+12125550199"}))
    digest = AgentToken.objects.get(agent=agent).digest

    def no_django_cursor(*args: object) -> None:
        raise AssertionError("went through Django's cursor wrapper")

    monkeypatch.setattr(connection, "cursor", no_django_cursor)
    assert not connection.queries_logged
    loaded = select.first(digest=digest)
    opt_out = insert.insert(OptOut(agent=agent, channel="sms", contact="+12125550100"))
    matched = update.execute(pk=opt_out.pk)
    monkeypatch.undo()
    # The driver's errors still arrive as Django's (savepoints go through Django's cursor, so after undo).
    with pytest.raises(IntegrityError), transaction.atomic():
        insert.insert(OptOut(agent=agent, channel="sms", contact="+12125550199"))

    assert loaded is not None and loaded.agent_id == agent.pk
    assert matched == 1
    assert list(OptOut.objects.values_list("contact", flat=True)) == ["+12125550199"]
