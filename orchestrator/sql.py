"""The hot paths' statements as plain parameterised SQL, in this one module (docs/decisions/001-plain-sql.md).

A send, a webhook and an authenticated MCP or REST call each run the same dozen statements. Built by
the ORM on every call, their query building (joins, select_related columns, quoting, converters) cost
several times what the database spent running them. Here each statement is a constant SQL string
with `%s` placeholders, run through `django.db.connection.cursor()` (Django's public cursor: query
logging, execute wrappers, transactions and error translation all apply), and its rows become what
the ORM query would have returned: column values through Django's own converters for each field,
model instances through `Model.from_db`, related objects cached as `select_related` caches them.
`tests/orchestrator/test_sql.py` holds, for every statement, a test that it returns what the
equivalent ORM query returns, on SQLite and on PostgreSQL.

No value is ever formatted into SQL: table and column names come from the models' `_meta` (Django's
documented model metadata API), values always travel as parameters. Identifiers are quoted with
double quotes, which both supported backends (SQLite, PostgreSQL) use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.signals import post_save, pre_save

from agents.models import Agent, AgentLimits, AgentToken, ChannelAddress, OptOut, Organization, OrgToken, UsageBucket
from channels_app.models import Message

M = TypeVar("M", bound=Model)


def _q(name: str | None) -> str:
    assert name  # a concrete column or a table: always named
    return f'"{name}"'


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


# --- loading rows as the ORM does -----------------------------------------------------------------


class _Columns:
    """Some or all of a model's concrete columns under a table alias: their select list, and a loader
    that turns them into an instance as the ORM's iteration would."""

    def __init__(self, model: type[Model], alias: str, names: Sequence[str] | None = None) -> None:
        meta = model._meta
        fields = list(meta.concrete_fields)
        if names is not None:
            wanted = {*names, meta.pk.name if meta.pk else ""}
            fields = [field for field in fields if field.name in wanted or field.attname in wanted]
        self.model = model
        self.fields: tuple[Field[Any, Any], ...] = tuple(fields)
        self.attnames = [field.attname for field in fields]
        self.sql = ", ".join(f"{_q(alias)}.{_q(field.column)}" for field in fields)
        self.width = len(fields)
        # Per database alias: each column's converters, as SQLCompiler.get_converters collects them.
        self._converters: dict[str, list[tuple[int, list[Callable[..., Any]], Any]]] = {}

    def converters(self, connection: BaseDatabaseWrapper) -> list[tuple[int, list[Callable[..., Any]], Any]]:
        found = self._converters.get(connection.alias)
        if found is None:
            found = self._converters[connection.alias] = _converters_for(connection, self.fields)
        return found

    def values(self, connection: BaseDatabaseWrapper, row: Sequence[Any], start: int) -> list[Any]:
        values = list(row[start : start + self.width])
        for position, functions, expression in self.converters(connection):
            value = values[position]
            for function in functions:
                value = function(value, expression, connection)
            values[position] = value
        return values

    def load(self, connection: BaseDatabaseWrapper, row: Sequence[Any], start: int) -> Any:
        return self.model.from_db(connection.alias, self.attnames, self.values(connection, row, start))


def _converters_for(
    connection: BaseDatabaseWrapper, fields: Sequence[Field[Any, Any]]
) -> list[tuple[int, list[Callable[..., Any]], Any]]:
    converters = []
    for position, field in enumerate(fields):
        column = field.cached_col
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((position, functions, column))
    return converters


def _fetch(using: str, sql: str, params: Sequence[Any]) -> list[Any]:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _fetchone(using: str, sql: str, params: Sequence[Any]) -> Any:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _execute(using: str, sql: str, params: Sequence[Any]) -> int:
    with transaction.mark_for_rollback_on_error(using=using), connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _read_alias(model: type[Model]) -> str:
    return router.db_for_read(model) or "default"


def _write_alias(model: type[Model]) -> str:
    return router.db_for_write(model) or "default"


def _attach_forward(instance: Model, name: str, related: Model | None) -> None:
    """Cache `related` as `instance.<name>`, as select_related does for a foreign key."""
    field = instance._meta.get_field(name)
    field.set_cached_value(instance, related)  # type: ignore[union-attr]


def _attach_reverse_one(instance: Model, name: str, related: Model | None, back: str) -> None:
    """Cache `related` (or its absence) as `instance.<name>` for a reverse one-to-one, and the instance
    on it, as select_related does."""
    instance._meta.get_field(name).set_cached_value(instance, related)  # type: ignore[union-attr]
    if related is not None:
        related._meta.get_field(back).set_cached_value(related, instance)  # type: ignore[union-attr]


# --- tokens and agents ------------------------------------------------------------------------------

_AGENT = _Columns(Agent, "a")
_ORGANIZATION = _Columns(Organization, "o")
_LIMITS = _Columns(AgentLimits, "l")
_AGENT_TOKEN = _Columns(AgentToken, "t")
_ORG_TOKEN = _Columns(OrgToken, "t")

# The agent with its organization and limits (select_related("organization", "limits")).
_AGENT_JOINS = (
    f"INNER JOIN {_q(Organization._meta.db_table)} {_q('o')} ON {_q('o')}.{_q('id')} = {_q('a')}.{_q('organization_id')} "
    f"LEFT OUTER JOIN {_q(AgentLimits._meta.db_table)} {_q('l')} ON {_q('l')}.{_q('agent_id')} = {_q('a')}.{_q('id')}"
)


def _agent_with_limits(connection: BaseDatabaseWrapper, row: Sequence[Any], start: int) -> Agent:
    agent: Agent = _AGENT.load(connection, row, start)
    start += _AGENT.width
    _attach_forward(agent, "organization", _ORGANIZATION.load(connection, row, start))
    start += _ORGANIZATION.width
    limits = _LIMITS.load(connection, row, start) if row[start] is not None else None
    _attach_reverse_one(agent, "limits", limits, "agent")
    return agent


_LIVE_AGENT_TOKEN_SQL = (
    f"SELECT {_AGENT_TOKEN.sql}, {_AGENT.sql}, {_ORGANIZATION.sql}, {_LIMITS.sql} "
    f"FROM {_q(AgentToken._meta.db_table)} {_q('t')} "
    f"INNER JOIN {_q(Agent._meta.db_table)} {_q('a')} ON {_q('a')}.{_q('id')} = {_q('t')}.{_q('agent_id')} "
    f"{_AGENT_JOINS} "
    f"WHERE {_q('t')}.{_q('digest')} = %s AND {_q('t')}.{_q('revoked_at')} IS NULL LIMIT 1"
)


def live_agent_token(digest: str) -> AgentToken | None:
    """`AgentToken.objects.select_related("agent__organization", "agent__limits")
    .filter(digest=digest, revoked_at__isnull=True).first()` (digest is unique)."""
    using = _read_alias(AgentToken)
    row = _fetchone(using, _LIVE_AGENT_TOKEN_SQL, (digest,))
    if row is None:
        return None
    connection = connections[using]
    token: AgentToken = _AGENT_TOKEN.load(connection, row, 0)
    _attach_forward(token, "agent", _agent_with_limits(connection, row, _AGENT_TOKEN.width))
    return token


_LIVE_ORG_TOKEN_SQL = (
    f"SELECT {_ORG_TOKEN.sql} FROM {_q(OrgToken._meta.db_table)} {_q('t')} "
    f"WHERE {_q('t')}.{_q('digest')} = %s AND {_q('t')}.{_q('revoked_at')} IS NULL LIMIT 1"
)


def live_org_token(digest: str) -> OrgToken | None:
    """`OrgToken.objects.filter(digest=digest, revoked_at__isnull=True).first()` (digest is unique)."""
    using = _read_alias(OrgToken)
    row = _fetchone(using, _LIVE_ORG_TOKEN_SQL, (digest,))
    return None if row is None else _ORG_TOKEN.load(connections[using], row, 0)


_AGENT_BY_ID_SQL = (
    f"SELECT {_AGENT.sql}, {_ORGANIZATION.sql}, {_LIMITS.sql} FROM {_q(Agent._meta.db_table)} {_q('a')} "
    f"{_AGENT_JOINS} WHERE {_q('a')}.{_q('id')} = %s"
)
_AGENT_BY_ID_ONLY_SQL = f"{_AGENT_BY_ID_SQL} LIMIT 1"
_AGENT_BY_ID_IN_ORG_SQL = f"{_AGENT_BY_ID_SQL} AND {_q('a')}.{_q('organization_id')} = %s LIMIT 1"


def agent_with_limits(agent_id: str, *, organization_id: str | None = None) -> Agent | None:
    """`Agent.objects.select_related("organization", "limits").filter(pk=agent_id[, organization_id=…]).first()`."""
    using = _read_alias(Agent)
    if organization_id is None:
        row = _fetchone(using, _AGENT_BY_ID_ONLY_SQL, (agent_id,))
    else:
        row = _fetchone(using, _AGENT_BY_ID_IN_ORG_SQL, (agent_id, organization_id))
    return None if row is None else _agent_with_limits(connections[using], row, 0)


_AGENT_ONLY: dict[tuple[str, ...], tuple[_Columns, str]] = {}


def agent_only(agent_id: str, fields: tuple[str, ...]) -> Agent | None:
    """`Agent.objects.only(*fields).filter(pk=agent_id).first()`: the other fields deferred."""
    statement = _AGENT_ONLY.get(fields)
    if statement is None:
        columns = _Columns(Agent, "a", fields)
        sql = f"SELECT {columns.sql} FROM {_q(Agent._meta.db_table)} {_q('a')} WHERE {_q('a')}.{_q('id')} = %s LIMIT 1"
        statement = _AGENT_ONLY[fields] = (columns, sql)
    using = _read_alias(Agent)
    row = _fetchone(using, statement[1], (agent_id,))
    return None if row is None else statement[0].load(connections[using], row, 0)


_AGENT_TOKEN_SESSION_VALID_SQL = (
    f"SELECT 1 FROM {_q(AgentToken._meta.db_table)} {_q('t')} "
    f"INNER JOIN {_q(Agent._meta.db_table)} {_q('a')} ON {_q('a')}.{_q('id')} = {_q('t')}.{_q('agent_id')} "
    f"WHERE {_q('t')}.{_q('id')} = %s AND {_q('t')}.{_q('revoked_at')} IS NULL AND {_q('t')}.{_q('agent_id')} = %s "
    f"AND {_q('a')}.{_q('status')} = %s LIMIT 1"
)


def agent_token_session_valid(*, token_id: int, agent_id: str | None, active_status: str) -> bool:
    """`AgentToken.objects.filter(pk=token_id, revoked_at__isnull=True, agent_id=agent_id,
    agent__status=active_status).exists()`: checked after every push to a live session, so a plain read."""
    return _fetchone(_read_alias(AgentToken), _AGENT_TOKEN_SESSION_VALID_SQL, (token_id, agent_id, active_status)) is not None


# --- sending ----------------------------------------------------------------------------------------

_SENDER_ADDRESS_SQL = (
    f"SELECT {_q('address')} FROM {_q(ChannelAddress._meta.db_table)} "
    f"WHERE {_q('agent_id')} = %s AND {_q('kind')} = %s AND {_q('released_at')} IS NULL ORDER BY {_q('id')} LIMIT 1"
)


def sender_address(agent_id: str, kind: str) -> str | None:
    """`ChannelAddress.objects.filter(agent_id=…, kind=…, released_at__isnull=True).order_by("pk")
    .values_list("address", flat=True).first()`."""
    row = _fetchone(_read_alias(ChannelAddress), _SENDER_ADDRESS_SQL, (agent_id, kind))
    return None if row is None else str(row[0])


def opted_out(agent_id: str, channels: Sequence[str], contact: str) -> bool:
    """`OptOut.objects.filter(agent_id=…, channel__in=channels, contact=…).exists()`."""
    sql = (
        f"SELECT 1 FROM {_q(OptOut._meta.db_table)} WHERE {_q('agent_id')} = %s "
        f"AND {_q('channel')} IN ({_placeholders(len(channels))}) AND {_q('contact')} = %s LIMIT 1"
    )
    return _fetchone(_read_alias(OptOut), sql, (agent_id, *channels, contact)) is not None


def sender_address_and_opted_out(agent_id: str, kind: str, channels: Sequence[str], contact: str) -> tuple[str | None, bool]:
    """`(sender_address(agent_id, kind), opted_out(agent_id, channels, contact))` in one statement: a send
    needs both, and each statement costs more in Django's cursor than the database spends on it."""
    sql = (
        f"SELECT ({_SENDER_ADDRESS_SQL}), EXISTS (SELECT 1 FROM {_q(OptOut._meta.db_table)} WHERE {_q('agent_id')} = %s "
        f"AND {_q('channel')} IN ({_placeholders(len(channels))}) AND {_q('contact')} = %s)"
    )
    row = _fetchone(_read_alias(OptOut), sql, (agent_id, kind, agent_id, *channels, contact))
    return (None if row[0] is None else str(row[0])), bool(row[1])


# --- usage counters ---------------------------------------------------------------------------------

_BUCKET = _Columns(UsageBucket, "b", ("id", "scope", "scope_id", "window", "window_start", "actions", "spend"))


def usage_buckets_locked(ids: Sequence[int]) -> list[tuple[int, str, str, str, datetime, int, Decimal]]:
    """`UsageBucket.objects.filter(pk__in=ids).select_for_update().order_by("pk").values_list("pk", "scope",
    "scope_id", "window", "window_start", "actions", "spend")`; call it inside a transaction."""
    using = _write_alias(UsageBucket)
    connection = connections[using]
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        f"SELECT {_BUCKET.sql} FROM {_q(UsageBucket._meta.db_table)} {_q('b')} "
        f"WHERE {_q('b')}.{_q('id')} IN ({_placeholders(len(ids))}) ORDER BY {_q('b')}.{_q('id')} ASC{lock}"
    )
    return [tuple(_BUCKET.values(connection, row, 0)) for row in _fetch(using, sql, ids)]  # type: ignore[misc]


def usage_buckets_count(ids: Sequence[int], cost: Decimal, *, actions: int = 1) -> int:
    """`UsageBucket.objects.filter(pk__in=ids).update(actions=F("actions") + actions, spend=F("spend") + cost)`."""
    using = _write_alias(UsageBucket)
    spend = UsageBucket._meta.get_field("spend").get_db_prep_save(cost, connections[using])  # type: ignore[union-attr]
    sql = (
        f"UPDATE {_q(UsageBucket._meta.db_table)} SET {_q('actions')} = {_q('actions')} + %s, "
        f"{_q('spend')} = {_q('spend')} + %s WHERE {_q('id')} IN ({_placeholders(len(ids))})"
    )
    return _execute(using, sql, (actions, spend, *ids))


def usage_buckets_count_returning(
    ids: Sequence[int], cost: Decimal
) -> list[tuple[int, str, str, str, datetime, int, Decimal]] | None:
    """`usage_buckets_count(ids, cost)`, then `usage_buckets_locked(ids)` (the rows as counted), as one
    statement; call it inside a transaction. None where the database cannot return rows from an UPDATE
    (SQLite before 3.35): then nothing was run.

    PostgreSQL locks the rows first, in primary-key order (a sub-select FOR UPDATE), as every writer of
    these rows does; SQLite already holds the database write lock (BEGIN IMMEDIATE)."""
    using = _write_alias(UsageBucket)
    connection = connections[using]
    table, ids_in = _q(UsageBucket._meta.db_table), f"IN ({_placeholders(len(ids))})"
    counted = f"{_q('actions')} = {_q('actions')} + 1, {_q('spend')} = {_q('spend')} + %s"
    spend = UsageBucket._meta.get_field("spend").get_db_prep_save(cost, connection)  # type: ignore[union-attr]
    if connection.vendor == "postgresql":
        # The sub-select takes the row locks, in id order, before the UPDATE writes any row (a sub-select
        # with FOR UPDATE is never merged into its outer query).
        sql = (
            f"UPDATE {table} {_q('b')} SET {counted} WHERE {_q('b')}.{_q('id')} IN (SELECT {_q('l')}.{_q('id')} "
            f"FROM {table} {_q('l')} WHERE {_q('l')}.{_q('id')} {ids_in} ORDER BY {_q('l')}.{_q('id')} FOR UPDATE) "
            f"RETURNING {_BUCKET.sql}"
        )
        params: tuple[Any, ...] = (spend, *ids)
    elif connection.vendor == "sqlite" and connection.features.can_return_columns_from_insert:  # 3.35+
        # SQLite's RETURNING takes the table's own column names only.
        returning = ", ".join(_q(field.column) for field in _BUCKET.fields)
        sql = f"UPDATE {table} SET {counted} WHERE {_q('id')} {ids_in} RETURNING {returning}"
        params = (spend, *ids)
    else:
        return None
    with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return sorted(tuple(_BUCKET.values(connection, row, 0)) for row in rows)  # type: ignore[misc]


# --- messages ---------------------------------------------------------------------------------------


def message_sent(
    *, message_id: str, status: str, external_id: str, cost: Decimal | None, provider: str, updated_at: datetime
) -> int:
    """`Message.objects.filter(pk=message_id).update(status=…, external_id=…, cost=…, provider=…, updated_at=…)`."""
    using = _write_alias(Message)
    connection = connections[using]
    values = {"status": status, "external_id": external_id, "cost": cost, "provider": provider, "updated_at": updated_at}
    assignments = ", ".join(f"{_q(name)} = %s" for name in values)
    params = [_prepared(Message, name, value, connection) for name, value in values.items()]
    sql = f"UPDATE {_q(Message._meta.db_table)} SET {assignments} WHERE {_q('id')} = %s"
    return _execute(using, sql, (*params, message_id))


def messages_mark_delivered(*, ids: Sequence[str], now: datetime, via: str, erase_bodies: bool) -> int:
    """`Message.objects.filter(pk__in=ids, delivered_at__isnull=True, delivered_via=via).update(delivered_at=now,
    next_callback_at=None[, body=None, html=None])`."""
    using = _write_alias(Message)
    erase = f", {_q('body')} = NULL, {_q('html')} = NULL" if erase_bodies else ""
    sql = (
        f"UPDATE {_q(Message._meta.db_table)} SET {_q('delivered_at')} = %s, {_q('next_callback_at')} = NULL{erase} "
        f"WHERE {_q('id')} IN ({_placeholders(len(ids))}) AND {_q('delivered_at')} IS NULL AND {_q('delivered_via')} = %s"
    )
    return _execute(using, sql, (_prepared(Message, "delivered_at", now, connections[using]), *ids, via))


def _prepared(model: type[Model], name: str, value: Any, connection: BaseDatabaseWrapper) -> Any:
    return model._meta.get_field(name).get_db_prep_save(value, connection)  # type: ignore[union-attr]


# --- inserts ----------------------------------------------------------------------------------------

_Insert = tuple[str, tuple[Any, ...], tuple[bool, ...], Any]  # SQL, fields, plain text (per field), returned key
_INSERTS: dict[tuple[type[Model], str, bool], _Insert] = {}


def insert(obj: M) -> M:
    """`obj.save(force_insert=True)` as one INSERT, for a model whose save() is Django's own.

    Every field's value is prepared as save() prepares it (`pre_save`, so auto_now and friends, then
    `get_db_prep_save`), and the instance comes out as save() leaves it: its primary key set, no longer
    adding. A model that overrides save(), has parent tables or has pre_save/post_save receivers is
    saved by save() itself, so nothing save() would do is ever skipped.
    """
    model = type(obj)
    meta = model._meta
    if model.save is not Model.save or meta.parents or pre_save.has_listeners(model) or post_save.has_listeners(model):
        obj.save(force_insert=True)
        return obj
    using = router.db_for_write(model, instance=obj) or "default"
    connection = connections[using]
    pk = meta.pk
    assert pk is not None
    pk_set = getattr(obj, pk.attname) is not None
    if not pk_set and not connection.features.can_return_columns_from_insert:
        # A backend that cannot hand the new key back in the INSERT: Django's save() knows its way.
        obj.save(force_insert=True)
        return obj
    key = (model, using, pk_set)
    statement = _INSERTS.get(key)
    if statement is None:
        statement = _INSERTS[key] = _insert_statement(model, connection, pk_set)
    sql, fields, plain_text, returning = statement
    params = []
    for field, plain in zip(fields, plain_text, strict=True):
        value = getattr(obj, field.attname)
        if not (plain and type(value) is str):
            value = field.get_db_prep_save(field.pre_save(obj, True), connection)
        params.append(value)
    with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning is not None:
            setattr(obj, returning.attname, cursor.fetchone()[0])
    obj._state.adding = False
    obj._state.db = using
    return obj


def _insert_statement(model: type[Model], connection: BaseDatabaseWrapper, pk_set: bool) -> _Insert:
    meta = model._meta
    fields = tuple(
        field for field in meta.local_concrete_fields if not field.generated and (pk_set or field is not meta.auto_field)
    )
    returning = None if pk_set else meta.pk
    sql = (
        f"INSERT INTO {_q(meta.db_table)} ({', '.join(_q(field.column) for field in fields)}) "
        f"VALUES ({_placeholders(len(fields))})"
    )
    if returning is not None:
        sql += f" RETURNING {_q(returning.column)}"
    return sql, fields, tuple(_plain_text(field) for field in fields), returning


def _plain_text(field: Field[Any, Any]) -> bool:
    """Whether save() passes a str value of this column to the database as it is: a text field (or a
    foreign key to one) whose pre_save and preparation are Django's own. Most columns of a message are;
    skipping their three no-op calls each was a tenth of an insert's CPU."""
    from django.db.models import CharField, ForeignKey, TextField

    if isinstance(field, ForeignKey):
        return _plain_text(field.target_field)
    kind = type(field)
    return (
        isinstance(field, CharField | TextField)
        and kind.pre_save is Field.pre_save
        and kind.get_db_prep_save is Field.get_db_prep_save
        and kind.get_db_prep_value is Field.get_db_prep_value
        and kind.get_prep_value in (CharField.get_prep_value, TextField.get_prep_value)
    )
