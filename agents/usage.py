"""Usage counters, limits and billing: the services and selectors behind usage, billing and
agent-limits (contract §6.1, §6.2). Consent and opt-outs live in agents.consent.

Limits are enforced on UsageBucket rows: one counter row per (scope, window). A reservation whose rows
this process already knows (every one after the first of a minute) counts the action in all of them
and reads them back in one UPDATE … RETURNING (PostgreSQL takes the row locks first, in primary-key
order; SQLite's IMMEDIATE transaction already holds the write lock), then checks every limit in Python
on the values before the count, and gives the count back if one refuses (docs/decisions/008). The first
of a minute locks and reads its rows in one query, checks, and bumps them with one UPDATE. So N
concurrent sends against a limit L let exactly L through, a check touches a handful of rows however
long the history is, and a send costs one bucket statement (two in a minute's first).
"""

from __future__ import annotations

import calendar
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from agents.models import Agent, AgentLimits, Organization, UsageBucket, UsageRecord
from orchestrator import metrics, sql
from orchestrator.errors import ApiError

Scope = UsageBucket.Scope
Window = UsageBucket.Window

# API field name → AgentLimits attribute (contract §6.1 agent-limits).
LIMIT_FIELDS: dict[str, str] = {
    "maxActionsPerMinute": "max_actions_per_minute",
    "maxActionsPerHour": "max_actions_per_hour",
    "maxActionsPerDay": "max_actions_per_day",
    "maxSpendPerDay": "max_spend_per_day",
    "maxSpendPerMonth": "max_spend_per_month",
    "maxCallsPerDaySameNumber": "max_calls_per_day_same_number",
}
SPEND_FIELDS = {"maxSpendPerDay", "maxSpendPerMonth"}
MONEY = Decimal("0.000001")


# --- windows ------------------------------------------------------------------------------------


def window_start(window: str, now: datetime) -> datetime:
    """The UTC start of the window that contains `now`."""
    now = now.astimezone(UTC)
    if window == Window.MINUTE:
        return now.replace(second=0, microsecond=0)
    if window == Window.HOUR:
        return now.replace(minute=0, second=0, microsecond=0)
    if window == Window.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def window_end(window: str, start: datetime) -> datetime:
    if window == Window.MINUTE:
        return start + timedelta(minutes=1)
    if window == Window.HOUR:
        return start + timedelta(hours=1)
    if window == Window.DAY:
        return start + timedelta(days=1)
    days = calendar.monthrange(start.year, start.month)[1]
    return start + timedelta(days=days)


# --- reservations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BucketSpec:
    scope: str
    scope_id: str
    window: str
    start: datetime
    max_actions: int | None
    max_spend: Decimal | None
    actions_limit_type: str
    spend_limit_type: str

    @property
    def ident(self) -> tuple[str, str, str, datetime]:
        return (self.scope, self.scope_id, self.window, self.start)


@dataclass(frozen=True)
class Reservation:
    """What usage_reserve counted, so it can be released (provider refused) or re-priced (actual cost):
    the counter rows it bumped, in ascending id order (the order every writer locks them in)."""

    spend: Decimal
    bucket_ids: tuple[int, ...]


def _bucket_specs(agent: Agent, limits: AgentLimits, organization: Organization, now: datetime) -> list[BucketSpec]:
    """Agent minute/hour/day/month, then the organization's day/month spend. When several limits refuse,
    the first in this order is the one reported."""
    specs = [
        BucketSpec(Scope.AGENT, agent.pk, Window.MINUTE, window_start(Window.MINUTE, now),
                   limits.max_actions_per_minute, None, "per_minute", ""),
        BucketSpec(Scope.AGENT, agent.pk, Window.HOUR, window_start(Window.HOUR, now),
                   limits.max_actions_per_hour, None, "per_hour", ""),
        BucketSpec(Scope.AGENT, agent.pk, Window.DAY, window_start(Window.DAY, now),
                   limits.max_actions_per_day, limits.max_spend_per_day, "per_day", "spend_day"),
        BucketSpec(Scope.AGENT, agent.pk, Window.MONTH, window_start(Window.MONTH, now),
                   None, limits.max_spend_per_month, "", "spend_month"),
    ]
    # Organization caps are unlimited until set; their counters are still kept for reports.
    specs.append(BucketSpec(Scope.ORG, organization.pk, Window.DAY, window_start(Window.DAY, now),
                            None, organization.max_spend_per_day, "", "org_spend_day"))
    specs.append(BucketSpec(Scope.ORG, organization.pk, Window.MONTH, window_start(Window.MONTH, now),
                            None, organization.max_spend_per_month, "", "org_spend_month"))
    return specs


@dataclass(frozen=True)
class _BucketRow:
    pk: int
    actions: int
    spend: Decimal


def _refuses(spec: BucketSpec, row: _BucketRow, cost: Decimal) -> bool:
    """Whether counting one more action of `cost` in this bucket would break one of its limits."""
    if spec.max_actions is not None and row.actions >= spec.max_actions:
        return True
    return spec.max_spend is not None and row.spend + cost > spec.max_spend


def _refusal(spec: BucketSpec, row: _BucketRow, cost: Decimal, now: datetime) -> ApiError:
    retry_after = max(1, math.ceil((window_end(spec.window, spec.start) - now).total_seconds()))
    if spec.max_actions is not None and row.actions >= spec.max_actions:
        limit_type = spec.actions_limit_type
        metrics.RATE_LIMIT_HITS.labels(limit_type=limit_type).inc()
        return ApiError(
            429,
            "rate_limited",
            f"Rate limit reached: {spec.max_actions} actions {limit_type.replace('_', ' ')}.",
            retry_after=retry_after,
            limitType=limit_type,
            limit=spec.max_actions,
        )
    limit_type = spec.spend_limit_type
    metrics.RATE_LIMIT_HITS.labels(limit_type=limit_type).inc()
    return ApiError(
        429,
        "spend_limit_reached",
        f"Spend cap reached ({limit_type}: ${spec.max_spend}); this action would cost ${cost}.",
        retry_after=retry_after,
        limitType=limit_type,
        limit=float(spec.max_spend or 0),
    )


def per_number_scope_id(agent_id: str, number: str) -> str:
    """The bucket id for calls from one agent to one number (hashed: ids are limited to 64 characters)."""
    return "n:" + hashlib.sha256(f"{agent_id}|{number}".encode()).hexdigest()[:40]


# The counter rows this process has found for a bucket set, with the minute it found them in: within one
# minute the hour/day/month windows are the same, so the same rows serve every reservation of the set
# until the minute ends, and they can be locked by primary key (a much cheaper query to build than one
# by window). A stale entry (rows deleted, ids reused by a test database) is harmless: the locked rows'
# keys are checked against the specs, and any mismatch falls back to the lookup by window.
_KNOWN_BUCKETS: dict[tuple[str, ...], tuple[datetime, tuple[int, ...]]] = {}
_KNOWN_BUCKETS_MAX = 10_000


def _known_key(specs: list[BucketSpec]) -> tuple[str, ...]:
    return tuple(f"{spec.scope}:{spec.scope_id}" for spec in specs)


def _known_bucket_ids(specs: list[BucketSpec]) -> tuple[int, ...] | None:
    known = _KNOWN_BUCKETS.get(_known_key(specs))
    return known[1] if known is not None and known[0] == specs[0].start else None


def _lock_known_buckets(specs: list[BucketSpec]) -> dict[tuple[str, str, str, datetime], _BucketRow] | None:
    """The rows of `specs`, locked, when this process knows their ids; None when it does not."""
    ids = _known_bucket_ids(specs)
    if ids is None:
        return None
    wanted = {spec.ident for spec in specs}
    rows = {
        (scope, scope_id, window, start): _BucketRow(pk, actions, spend)
        for pk, scope, scope_id, window, start, actions, spend in sql.usage_buckets_locked(ids)
        if (scope, scope_id, window, start) in wanted
    }
    return rows if len(rows) == len(specs) else None


def _count_known_buckets(
    specs: list[BucketSpec], cost: Decimal
) -> tuple[tuple[int, ...], dict[tuple[str, str, str, datetime], _BucketRow]] | None:
    """Count the action in the rows of `specs` when this process knows their ids, in one statement
    (docs/decisions/008): (their ids, each row as it was before this count). None, with nothing counted,
    when the ids are not known, are stale, or the database cannot count and read in one statement."""
    ids = _known_bucket_ids(specs)
    counted = None if ids is None else sql.usage_buckets_count_returning(ids, cost)
    if ids is None or counted is None:
        return None
    wanted = {spec.ident for spec in specs}
    rows = {
        (scope, scope_id, window, start): _BucketRow(pk, actions - 1, spend - cost)
        for pk, scope, scope_id, window, start, actions, spend in counted
        if (scope, scope_id, window, start) in wanted
    }
    if len(rows) < len(specs):
        # Stale ids (rows deleted, a new database), or rows another reservation created and has not committed
        # yet: the rows this statement counted (only those: the others may be visible by now) are given back.
        if counted:
            sql.usage_buckets_count([row[0] for row in counted], -cost, actions=-1)
        return None
    return ids, rows


def _remember_buckets(specs: list[BucketSpec], rows: dict[tuple[str, str, str, datetime], _BucketRow]) -> None:
    if len(_KNOWN_BUCKETS) >= _KNOWN_BUCKETS_MAX:
        _KNOWN_BUCKETS.clear()
    _KNOWN_BUCKETS[_known_key(specs)] = (specs[0].start, tuple(sorted(row.pk for row in rows.values())))


def _create_buckets(specs: list[BucketSpec]) -> None:
    UsageBucket.objects.bulk_create(
        [UsageBucket(scope=spec.scope, scope_id=spec.scope_id, window=spec.window, window_start=spec.start)
         for spec in sorted(specs, key=lambda spec: spec.ident)],
        ignore_conflicts=True,
    )


def _covering(specs: list[BucketSpec]) -> Q:
    """A filter matching at least the rows of `specs`: one IN-list term per scope instead of one
    four-field term per row, which is several times cheaper for the ORM to build and compile.

    It also matches a few earlier rows of the same scopes (e.g. the minute row at the start of this
    hour); callers pick their rows out by key, and locking those extra rows is harmless because every
    reservation of the same agent (or organization) locks this window's rows anyway.
    """
    by_scope: dict[str, tuple[set[str], set[str], set[datetime]]] = {}
    for spec in specs:
        ids, windows, starts = by_scope.setdefault(spec.scope, (set(), set(), set()))
        ids.add(spec.scope_id)
        windows.add(spec.window)
        starts.add(spec.start)
    covering = Q()
    for scope, (ids, windows, starts) in by_scope.items():
        covering |= Q(scope=scope, scope_id__in=sorted(ids), window__in=sorted(windows),
                      window_start__in=sorted(starts))
    return covering


def _lock_buckets(specs: list[BucketSpec]) -> dict[tuple[str, str, str, datetime], _BucketRow]:
    """Lock and read the counter rows of `specs` that exist, found by window."""
    return _rows_by_ident(specs, UsageBucket.objects.filter(_covering(specs)))


def _rows_by_ident(
    specs: list[BucketSpec], candidates: QuerySet[UsageBucket]
) -> dict[tuple[str, str, str, datetime], _BucketRow]:
    """Lock and read `candidates` in one query, in primary-key order; keep those that are rows of `specs`.

    Every writer of UsageBucket in a transaction (reserve, release, re-price, cost adjustment) locks its
    rows in primary-key order, so concurrent ones queue instead of deadlocking. PostgreSQL takes the
    row locks (FOR UPDATE); SQLite already holds the database write lock (BEGIN IMMEDIATE).
    """
    rows = (
        candidates.select_for_update()
        .order_by("pk")
        .values_list("pk", "scope", "scope_id", "window", "window_start", "actions", "spend")
    )
    wanted = {spec.ident for spec in specs}
    found = {
        (scope, scope_id, window, start): _BucketRow(pk, actions, spend)
        for pk, scope, scope_id, window, start, actions, spend in rows
    }
    return {ident: row for ident, row in found.items() if ident in wanted}


def _lock_bucket_ids(ids: tuple[int, ...] | list[int]) -> None:
    """Lock counter rows by id, in primary-key order (see _lock_buckets)."""
    list(UsageBucket.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))


def usage_reserve(
    *,
    agent: Agent,
    limits: AgentLimits,
    organization: Organization,
    cost: Decimal,
    call_to: str | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Count one action of estimated `cost` against every limit, or raise 429 and count nothing.

    `call_to` (calls only) also counts against maxCallsPerDaySameNumber. Must run inside
    transaction.atomic(). The buckets are locked and read in one query, checked here, and bumped
    together by one UPDATE, so N concurrent sends against a limit L let exactly L through.
    """
    now = now or timezone.now()
    specs = _bucket_specs(agent, limits, organization, now)
    if call_to:
        specs.insert(4, BucketSpec(Scope.AGENT, per_number_scope_id(agent.pk, call_to), Window.DAY,
                                   window_start(Window.DAY, now), limits.max_calls_per_day_same_number, None,
                                   "calls_per_number", ""))
    counted = _count_known_buckets(specs, cost)
    if counted is not None:
        # Counted first, checked after (the rows as they were before): a refusal gives the count back.
        ids, before = counted
        for spec in specs:
            if _refuses(spec, before[spec.ident], cost):
                sql.usage_buckets_count(ids, -cost, actions=-1)
                raise _refusal(spec, before[spec.ident], cost, now)
        return Reservation(spend=cost, bucket_ids=ids)
    rows = _lock_known_buckets(specs)
    if rows is None:
        # First reservation of this set in this minute (in this process). Create the window's rows before
        # locking any: a reservation then never waits on another's uncommitted insert while it holds
        # locks that one needs, so window rollover cannot deadlock.
        _create_buckets(specs)
        rows = _lock_buckets(specs)
        if len(rows) < len(specs):  # deleted between the insert and the lock: create them under the lock
            _create_buckets([spec for spec in specs if spec.ident not in rows])
            rows = _lock_buckets(specs)
        _remember_buckets(specs, rows)
    for spec in specs:
        if _refuses(spec, rows[spec.ident], cost):
            raise _refusal(spec, rows[spec.ident], cost, now)
    ids = tuple(sorted(row.pk for row in rows.values()))
    sql.usage_buckets_count(ids, cost)  # every reservation's two statements are plain SQL (orchestrator.sql)
    return Reservation(spend=cost, bucket_ids=ids)


def usage_record_create(*, agent: Agent, action_type: str, channel: str, cost: Decimal, reference: str) -> int:
    """Record an action at its estimated cost; returns the record's id for usage_release / usage_reprice.

    Written in the transaction that reserves the action, before the provider call: the record then agrees
    with the counters from the start, and an answer at the estimated price needs no usage write at all.
    """
    record = UsageRecord(
        agent_id=agent.pk,
        organization_id=agent.organization_id,
        action_type=action_type,
        channel=channel,
        provider_cost=cost,
        reference=reference,
    )
    return sql.insert(record).pk


@transaction.atomic(savepoint=False)  # inside the caller's transaction, no savepoint round trips
def usage_release(*, reservation: Reservation, record_id: int | None = None) -> None:
    """Give back a reservation whose action did not happen (the provider refused): nothing is counted,
    and the action's usage record, if one was written with the reservation, is deleted."""
    _lock_bucket_ids(reservation.bucket_ids)
    UsageBucket.objects.filter(pk__in=reservation.bucket_ids).update(
        actions=F("actions") - 1, spend=F("spend") - reservation.spend
    )
    if record_id is not None:
        UsageRecord.objects.filter(pk=record_id).delete()


@transaction.atomic(savepoint=False)
def usage_reprice(*, reservation: Reservation, record_id: int, cost: Decimal) -> None:
    """The provider's real cost differs from the reserved estimate: move the counters and the record to it."""
    _lock_bucket_ids(reservation.bucket_ids)
    UsageBucket.objects.filter(pk__in=reservation.bucket_ids).update(spend=F("spend") + (cost - reservation.spend))
    UsageRecord.objects.filter(pk=record_id).update(provider_cost=cost)


def usage_cost_adjust(*, agent: Agent, reference: str, cost: Decimal, at: datetime) -> None:
    """A provider priced an action after the fact (status callback): move the counters and the record."""
    record = UsageRecord.objects.filter(agent=agent, reference=reference).first()
    if record is None or record.provider_cost == cost:
        return
    delta = cost - (record.provider_cost or Decimal("0"))
    with transaction.atomic():
        UsageRecord.objects.filter(pk=record.pk).update(provider_cost=cost)
        keys = Q()
        for window in (Window.DAY, Window.MONTH):
            keys |= Q(scope=Scope.AGENT, scope_id=agent.pk, window=window, window_start=window_start(window, at))
            keys |= Q(scope=Scope.ORG, scope_id=agent.organization_id, window=window,
                      window_start=window_start(window, at))
        ids = list(UsageBucket.objects.select_for_update().filter(keys).order_by("pk").values_list("pk", flat=True))
        UsageBucket.objects.filter(pk__in=ids).update(spend=F("spend") + delta)


# --- limits ----------------------------------------------------------------------------------------


def limits_object(limits: AgentLimits) -> dict[str, Any]:
    return {
        "maxActionsPerMinute": limits.max_actions_per_minute,
        "maxActionsPerHour": limits.max_actions_per_hour,
        "maxActionsPerDay": limits.max_actions_per_day,
        "maxSpendPerDay": float(limits.max_spend_per_day),
        "maxSpendPerMonth": float(limits.max_spend_per_month),
        "maxCallsPerDaySameNumber": limits.max_calls_per_day_same_number,
    }


def agent_limits_get(*, agent: Agent) -> AgentLimits:
    limits, _ = AgentLimits.objects.get_or_create(agent=agent)
    return limits


@transaction.atomic
def agent_limits_update(*, agent: Agent, changes: dict[str, int | Decimal]) -> AgentLimits:
    """Partial update of an agent's limits: only the fields given change (API names, contract §6.1)."""
    if not changes:
        raise ApiError(400, "invalid_request", "Give at least one limit to change.", field="limits")
    values: dict[str, int | Decimal] = {}
    for name, value in changes.items():
        if name not in LIMIT_FIELDS:
            continue  # unknown fields are ignored (contract §3)
        if value < 0:
            raise ApiError(400, "invalid_request", f"{name} must not be negative.", field=f"limits.{name}")
        values[LIMIT_FIELDS[name]] = value
    agent_limits_get(agent=agent)
    if values:
        AgentLimits.objects.filter(agent=agent).update(**values, updated_at=timezone.now())
    return AgentLimits.objects.get(agent=agent)


# --- usage and billing reports -----------------------------------------------------------------------


PERIODS = ("today", "week", "month", "all")


def period_start(period: str, now: datetime) -> datetime | None:
    if period == "today":
        return window_start(Window.DAY, now)
    if period == "week":
        day = window_start(Window.DAY, now)
        return day - timedelta(days=day.weekday())
    if period == "month":
        return window_start(Window.MONTH, now)
    return None


def _records(agent: Agent, period: str, now: datetime) -> Any:
    records = UsageRecord.objects.filter(agent=agent)
    start = period_start(period, now)
    return records.filter(created_at__gte=start) if start else records


def _money(value: Decimal | None) -> float:
    return float((value or Decimal("0")).quantize(MONEY))


def current_usage(*, agent: Agent, now: datetime | None = None) -> dict[str, Any]:
    """The counters the limits are checked against, read from this window's buckets."""
    now = now or timezone.now()
    rows = {
        row.window: row
        for row in UsageBucket.objects.filter(
            Q(window=Window.MINUTE, window_start=window_start(Window.MINUTE, now))
            | Q(window=Window.HOUR, window_start=window_start(Window.HOUR, now))
            | Q(window=Window.DAY, window_start=window_start(Window.DAY, now))
            | Q(window=Window.MONTH, window_start=window_start(Window.MONTH, now)),
            scope=Scope.AGENT,
            scope_id=agent.pk,
        )
    }

    def actions(window: str) -> int:
        return rows[window].actions if window in rows else 0

    def spend(window: str) -> float:
        return _money(rows[window].spend) if window in rows else 0.0

    return {
        "actionsThisMinute": actions(Window.MINUTE),
        "actionsThisHour": actions(Window.HOUR),
        "actionsToday": actions(Window.DAY),
        "spendToday": spend(Window.DAY),
        "spendThisMonth": spend(Window.MONTH),
    }


def usage_dashboard(*, agent: Agent, period: str, now: datetime | None = None) -> dict[str, Any]:
    """Actions and costs of one agent over a period, with its limits and current counters."""
    if period not in PERIODS:
        raise ApiError(400, "invalid_request", f"period must be one of {', '.join(PERIODS)}.", field="period")
    now = now or timezone.now()
    records = _records(agent, period, now)
    actions = {row["action_type"]: row["n"] for row in records.values("action_type").annotate(n=Count("id"))}
    costs = {
        row["channel"]: _money(row["cost"])
        for row in records.values("channel").annotate(cost=Sum("provider_cost")).order_by("channel")
    }
    return {
        "agentId": agent.pk,
        "period": period,
        "actions": actions,
        "totalActions": sum(actions.values()),
        "costsByChannel": costs,
        "totalCost": round(sum(costs.values()), 6),
        "limits": limits_object(agent_limits_get(agent=agent)),
        "currentUsage": current_usage(agent=agent, now=now),
    }


def billing_cost(provider_cost: Decimal, markup_percent: Decimal) -> Decimal:
    """Provider cost with the agent's markup; an explicit markup of 0 bills at cost."""
    return (provider_cost * (Decimal("100") + markup_percent) / Decimal("100")).quantize(MONEY)


def billing_summary(*, agent: Agent, period: str, now: datetime | None = None) -> dict[str, Any]:
    """Provider cost and billed cost (with markup) per channel over a period."""
    if period not in PERIODS:
        raise ApiError(400, "invalid_request", f"period must be one of {', '.join(PERIODS)}.", field="period")
    now = now or timezone.now()
    markup = agent.markup_percent if agent.markup_percent is not None else Decimal("0")
    by_channel: dict[str, dict[str, Any]] = {}
    total = Decimal("0")
    rows = (
        _records(agent, period, now)
        .values("channel")
        .annotate(cost=Sum("provider_cost"), n=Count("id"))
        .order_by("channel")
    )
    for row in rows:
        cost = row["cost"] or Decimal("0")
        total += cost
        by_channel[row["channel"]] = {
            "providerCost": _money(cost),
            "billingCost": _money(billing_cost(cost, markup)),
            "count": row["n"],
        }
    return {
        "agentId": agent.pk,
        "period": period,
        "providerCost": _money(total),
        "billingCost": _money(billing_cost(total, markup)),
        "markupPercent": float(markup),
        "tier": agent.tier,
        "byChannel": by_channel,
    }
