"""ORM statements compiled once and run many times with new values: prepared statements for hot paths.

Profiling a send or a webhook shows the ORM *compiling* a query (resolving joins and select_related
columns, quoting names, collecting converters) costs several times what the database spends running
it: 0.3–0.6 ms of CPU per statement here, against well under 0.1 ms to execute. The hot paths run the
same few statements with different values, so each one is built by the ORM once per database alias and
shape — the SQL, its constant parameters and its converters all come from Django's compiler, never
from string formatting — and later calls bind new values into the same parameter slots.

A statement is declared once, at import time, with a function that builds its queryset:

    TOKEN_BY_DIGEST = CompiledSelect(
        lambda digest: AgentToken.objects.select_related("agent").filter(digest=digest)[:1]
    )
    token = TOKEN_BY_DIGEST.first(digest=digest)

How the slots are found: the queryset is built with a unique sentinel value per parameter, compiled,
and each sentinel is looked up among the compiled parameters (after the backend's adaptation, which
is repeated when binding). A value the ORM transforms beyond recognition (say, a lookup that lowercases
it) leaves its sentinel unfound and the statement refuses to compile, so a statement can never run
with a stale value. Supported parameter types: str, int, Decimal, aware datetime, and lists/tuples of
str or int (one compiled shape per length).

What is bypassed: `QuerySet` iteration and `Model.save()` machinery, not the database layer —
statements still go through the connection's cursor wrapper, so transactions, query logging
(`CaptureQueriesContext`) and the metrics' execute wrappers all see them.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.models.sql import UpdateQuery

M = TypeVar("M", bound=Model)

Values = dict[str, Any]
Shape = tuple[tuple[str, int], ...]


class NotCompilable(RuntimeError):
    """The ORM changed a parameter so that its slot cannot be found; build the query the normal way."""


@dataclass(frozen=True)
class _Slot:
    index: int
    name: str
    position: int  # element of a list parameter; -1 for a scalar
    kind: str  # "plain" or "datetime"


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[_Slot, ...]
    # (row position, converters, expression): Django's own converters for each selected column.
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...] = ()
    col_count: int | None = None  # rows carry extra columns (ORDER BY helpers) to cut off, when set
    # For model results only.
    model: type[Model] | None = None
    init_list: tuple[str, ...] = ()
    model_start: int = 0
    model_end: int = 0
    related_populators: tuple[Any, ...] = ()
    annotation_col_map: dict[str, int] = dataclasses.field(default_factory=dict)


def _sentinel(name: str, value: Any, serial: int) -> tuple[Any, str]:
    """A value of the parameter's type that no real value equals (`serial` is unique within the
    statement), and how values of it are adapted for the database."""
    if isinstance(value, bool):
        raise TypeError(f"Compiled parameter {name!r}: booleans are not supported (write them as constants).")
    if isinstance(value, str):
        return f"\x00compiled:{serial}\x00", "plain"
    if isinstance(value, int):
        # Inside a 32-bit integer column's range: Django 5 answers an out-of-range lookup value with an
        # empty (or full) result instead of SQL. A narrower column refuses to compile (_compiled_sql).
        return 1_999_999_000 + serial, "plain"
    if isinstance(value, Decimal):
        # Whole and small: survives a DecimalField's quantizing and any max_digits.
        return Decimal(-(90_000 + serial)), "plain"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError(f"Compiled parameter {name!r}: datetimes must be aware.")
        return datetime(1901, 2, 3, 4, 5, 6, serial, tzinfo=UTC), "datetime"
    raise TypeError(f"Compiled parameter {name!r}: {type(value).__name__} is not supported.")


def _adapt(connection: BaseDatabaseWrapper, kind: str, value: Any) -> Any:
    if kind == "datetime":
        return connection.ops.adapt_datetimefield_value(value)
    return value


# SQLite's own placeholder style, as Django's SQLiteCursorWrapper.convert_query makes it on every call.
_QMARK_SQL: dict[str, str] = {}


def _qmark(sql: str) -> str:
    converted = _QMARK_SQL.get(sql)
    if converted is None:
        from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

        converted = _QMARK_SQL[sql] = FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")
    return converted


@contextlib.contextmanager
def _cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """A cursor for one compiled statement: Django's, or on SQLite when nothing records queries (DEBUG,
    CaptureQueriesContext, execute_wrappers) the driver's own, taking the SQL as Django's cursor would
    pass it on. What Django's cursor layer adds per statement (a wrapper object, the %s → ? regex, the
    logging checks) cost as much as SQLite spent running these short statements. What matters of it is
    kept: the connection's upkeep and thread check, the broken-transaction check, and the translation of
    driver errors into django.db's (IntegrityError and friends)."""
    if connection.vendor != "sqlite" or connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        driver_cursor = _SQLiteCursor(connection.connection.cursor())
        try:
            yield driver_cursor
        finally:
            driver_cursor.close()


class _SQLiteCursor:
    """The driver's cursor, with Django's %s placeholders turned into SQLite's (cached per statement)."""

    __slots__ = ("cursor",)

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self.cursor.execute(_qmark(sql), params)

    def __getattr__(self, name: str) -> Any:  # fetchone, fetchall, rowcount, lastrowid, close
        return getattr(self.cursor, name)


def _shape(values: Values) -> Shape:
    return tuple(
        (name, len(value) if isinstance(value, list | tuple) else -1) for name, value in sorted(values.items())
    )


def _compiled_sql(compiler: Any) -> tuple[str, Sequence[Any]]:
    try:
        sql, params = compiler.as_sql()
    except (EmptyResultSet, FullResultSet) as exc:
        # The ORM decided the result from a sentinel value alone (e.g. an int outside a small column's
        # range): the SQL would not hold for real values.
        raise NotCompilable("a parameter decided the result without SQL; build this query the normal way") from exc
    return sql, params


def _has_lists(values: Values) -> bool:
    return any(isinstance(value, list | tuple) for value in values.values())


class _CompiledStatement(abc.ABC):
    def __init__(self, build: Callable[..., Any]) -> None:
        self.build = build
        # shape → (database alias, statement). The router's choice of alias does not depend on values.
        self._statements: dict[Shape, tuple[str, _Statement]] = {}
        # A statement without list parameters has one shape: it is kept here and found without hashing one.
        self._single: tuple[str, _Statement] | None = None
        self._lock = threading.Lock()

    def _statement(self, values: Values) -> tuple[BaseDatabaseWrapper, _Statement]:
        """The statement for these values' shape, compiled on first use (_compile) and kept."""
        single = self._single
        if single is None:
            single = self._statements.get(_shape(values))
        if single is None:
            with self._lock:
                single = self._compile(values)
                self._statements[_shape(values)] = single
                if not _has_lists(values):
                    self._single = single
        return connections[single[0]], single[1]

    @abc.abstractmethod
    def _compile(self, values: Values) -> tuple[str, _Statement]:
        """(database alias, statement), built from the queryset with sentinel values."""

    def _queryset_and_sentinels(self, values: Values) -> tuple[Any, list[tuple[Any, str, str, int]]]:
        sentinels: list[tuple[Any, str, str, int]] = []  # (sentinel, kind, name, position)
        arguments: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(value, list | tuple):
                items = []
                for position, item in enumerate(value):
                    sentinel, kind = _sentinel(name, item, len(sentinels))
                    sentinels.append((sentinel, kind, name, position))
                    items.append(sentinel)
                arguments[name] = items
            else:
                sentinel, kind = _sentinel(name, value, len(sentinels))
                sentinels.append((sentinel, kind, name, -1))
                arguments[name] = sentinel
        return self.build(**arguments), sentinels

    @staticmethod
    def _slots(
        connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], sentinels: list[tuple[Any, str, str, int]]
    ) -> tuple[_Slot, ...]:
        slots: list[_Slot] = []
        for sentinel, kind, name, position in sentinels:
            adapted = _adapt(connection, kind, sentinel)
            found = [
                index for index, param in enumerate(params) if type(param) is type(adapted) and param == adapted
            ]
            if not found or (isinstance(adapted, str) and adapted in sql):
                raise NotCompilable(f"parameter {name!r} does not reach the SQL unchanged")
            slots.extend(_Slot(index, name, position, kind) for index in found)
        return tuple(slots)

    def _bind(self, connection: BaseDatabaseWrapper, statement: _Statement, values: Values) -> list[Any]:
        params = list(statement.params)
        for slot in statement.slots:
            value = values[slot.name]
            if slot.position >= 0:
                value = value[slot.position]
            params[slot.index] = _adapt(connection, slot.kind, value)
        return params


class CompiledSelect(_CompiledStatement, Generic[M]):
    """A SELECT built by the ORM once per database alias and parameter shape; see the module docstring.

    `build` takes the parameters as keyword arguments and returns a queryset (model instances, with
    select_related/only/defer as usual, or values_list rows).
    """

    def __init__(self, build: Callable[..., QuerySet[M] | QuerySet[Any]]) -> None:
        super().__init__(build)

    def _compile(self, values: Values) -> tuple[str, _Statement]:
        queryset: QuerySet[Any]
        queryset, sentinels = self._queryset_and_sentinels(values)
        alias = queryset.db
        connection = connections[alias]
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = _compiled_sql(compiler)
        slots = self._slots(connection, sql, params, sentinels)
        fields = [column[0] for column in compiler.select[0 : compiler.col_count]]
        converters = tuple(
            (position, tuple(functions), expression)
            for position, (functions, expression) in compiler.get_converters(fields).items()
        )
        model: type[Model] | None = None
        init_list: tuple[str, ...] = ()
        start = end = 0
        populators: tuple[Any, ...] = ()
        annotation_col_map: dict[str, int] = {}
        iterable = queryset._iterable_class.__name__
        if iterable == "ModelIterable":
            if getattr(queryset, "_known_related_objects", None) or getattr(queryset, "_prefetch_related_lookups", None):
                raise NotCompilable("known related objects and prefetch_related are not supported")
            klass_info = compiler.klass_info
            assert klass_info is not None
            model = klass_info["model"]
            select_fields = klass_info["select_fields"]
            start, end = select_fields[0], select_fields[-1] + 1
            init_list = tuple(column[0].target.attname for column in compiler.select[start:end])
            # The stubs describe a newer Django (fetch_mode); 5.2 takes these three.
            populators = tuple(get_related_populators(klass_info, compiler.select, alias))  # type: ignore[call-arg]
            annotation_col_map = dict(compiler.annotation_col_map or {})
        elif iterable != "ValuesListIterable" or compiler.query.annotation_select or compiler.query.extra_select:
            # values_list of plain fields keeps its column order; other iterables reorder or reshape.
            raise NotCompilable(f"{iterable} results are not supported")
        statement = _Statement(
            sql=sql,
            params=tuple(params),
            slots=slots,
            converters=converters,
            col_count=compiler.col_count if compiler.has_extra_select else None,
            model=model,
            init_list=init_list,
            model_start=start,
            model_end=end,
            related_populators=populators,
            annotation_col_map=annotation_col_map,
        )
        return alias, statement

    def rows(self, **values: Any) -> list[list[Any]]:
        """The result rows, each column converted as the ORM would (values_list order)."""
        connection, statement = self._statement(values)
        return self._rows(connection, statement, values)

    def _rows(self, connection: BaseDatabaseWrapper, statement: _Statement, values: Values) -> list[list[Any]]:
        with _cursor(connection) as cursor:
            cursor.execute(statement.sql, self._bind(connection, statement, values))
            raw = cursor.fetchall()
        rows = [list(row) if statement.col_count is None else list(row[: statement.col_count]) for row in raw]
        for row in rows:
            for position, functions, expression in statement.converters:
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
        return rows

    def all(self, **values: Any) -> list[M]:
        """Model instances, related objects (select_related) attached, as iterating the queryset gives."""
        connection, statement = self._statement(values)
        if statement.model is None:
            raise TypeError("This statement selects values, not models: use rows().")
        objects: list[M] = []
        alias = connection.alias
        for row in self._rows(connection, statement, values):
            obj = statement.model.from_db(alias, list(statement.init_list), row[statement.model_start : statement.model_end])
            for populator in statement.related_populators:
                populator.populate(row, obj)
            for attribute, position in statement.annotation_col_map.items():
                setattr(obj, attribute, row[position])
            objects.append(obj)  # type: ignore[arg-type]
        return objects

    def first(self, **values: Any) -> M | None:
        """The first instance, or None. Slice the queryset ([:1]) so the database stops early."""
        found = self.all(**values)
        return found[0] if found else None


class CompiledUpdate(_CompiledStatement):
    """An UPDATE built by the ORM once per database alias and parameter shape.

    `build` takes the parameters as keyword arguments and returns (queryset, values), exactly what
    `queryset.update(**values)` would be given; F() expressions and parameters mix freely.
    """

    def __init__(self, build: Callable[..., tuple[QuerySet[Any], dict[str, Any]]]) -> None:
        super().__init__(build)

    def _compile(self, values: Values) -> tuple[str, _Statement]:
        (queryset, assignments), sentinels = self._queryset_and_sentinels(values)
        alias = queryset.db
        connection = connections[alias]
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(assignments)
        query.annotations = {}
        if query.related_updates or len([a for a, count in query.alias_refcount.items() if count]) > 1:
            # Multi-table updates run a SELECT first (SQLUpdateCompiler.pre_sql_setup): not one statement.
            raise NotCompilable("updates over joins or parent models are not supported")
        sql, params = _compiled_sql(query.get_compiler(using=alias))
        return alias, _Statement(sql=sql, params=tuple(params), slots=self._slots(connection, sql, params, sentinels))

    def execute(self, **values: Any) -> int:
        """Run the update; returns the number of rows it matched (as QuerySet.update does)."""
        connection, statement = self._statement(values)
        with transaction.mark_for_rollback_on_error(using=connection.alias), _cursor(connection) as cursor:
            cursor.execute(statement.sql, self._bind(connection, statement, values))
            return int(cursor.rowcount)


@dataclass(frozen=True)
class _Insert:
    sql: str
    fields: tuple[Any, ...]
    # Per field, how its value is prepared (_PASS_TEXT, _ATTRIBUTE, _FULL): most columns of a message
    # need none of the field's prep calls.
    preparation: tuple[int, ...]
    returning_fields: tuple[Any, ...]
    returning_params: tuple[Any, ...]


# How CompiledInsert prepares a field's value, as save() would but without calls that cannot change it.
_PASS_TEXT = 0  # text columns and foreign keys to them: a str goes as it is
_ATTRIBUTE = 1  # Django's own fields whose pre_save is the attribute (not JSON): None goes as NULL
_FULL = 2  # pre_save (auto_now and friends) and get_db_prep_save, always


def _preparation(field: Any) -> int:
    from django.db.models import Field, JSONField

    if _is_plain_text(field):
        return _PASS_TEXT
    builtin = type(field).__module__.startswith("django.db.models.fields")
    if builtin and type(field).pre_save is Field.pre_save and not isinstance(field, JSONField):
        return _ATTRIBUTE
    return _FULL


def _is_plain_text(field: Any) -> bool:
    from django.db.models import CharField, Field, ForeignKey, TextField

    if isinstance(field, ForeignKey):
        return _is_plain_text(field.target_field)
    return (
        isinstance(field, CharField | TextField)
        and type(field).pre_save is Field.pre_save
        and type(field).get_db_prep_save is Field.get_db_prep_save
        and type(field).get_db_prep_value is Field.get_db_prep_value
        and type(field).get_prep_value in (CharField.get_prep_value, TextField.get_prep_value)
    )


class CompiledInsert(Generic[M]):
    """`obj.save(force_insert=True)` for one model, with the INSERT built by the ORM once per alias.

    Values are prepared by each field as save() prepares them (pre_save for auto_now and friends,
    get_db_prep_save), and the instance comes out as save() leaves it (primary key from RETURNING or
    the last insert id, `_state` no longer adding). Models with parents (multi-table inheritance) or
    values that are expressions are not compiled. pre_save/post_save receivers are honoured by
    falling back to save() whenever the model has any.
    """

    def __init__(self, model: type[M]) -> None:
        if model._meta.parents:
            raise NotCompilable("models with parent tables are saved in several statements")
        self.model = model
        self._statements: dict[tuple[str, bool], _Insert] = {}
        self._lock = threading.Lock()

    def _compile(self, alias: str, obj: M, pk_set: bool) -> _Insert:
        from django.db.models.sql import InsertQuery

        meta = self.model._meta
        fields = [f for f in meta.local_concrete_fields if not f.generated and (pk_set or f is not meta.auto_field)]
        for field in fields:
            if hasattr(getattr(obj, field.attname), "resolve_expression"):
                raise NotCompilable(f"{field.name} holds an expression, which the ORM inlines into the SQL")
        returning = tuple(meta.db_returning_fields)
        query = InsertQuery(self.model)
        query.insert_values(fields, [obj], raw=False)
        compiler = query.get_compiler(using=alias)
        compiler.returning_fields = list(returning)
        statements = compiler.as_sql()
        if len(statements) != 1 or len(statements[0][1]) != len(fields):
            raise NotCompilable("the INSERT is not one statement with one parameter per field")
        cols = [field.get_col(meta.db_table) for field in returning]
        if compiler.get_converters(cols):
            raise NotCompilable("returned columns need converters")
        return _Insert(
            sql=statements[0][0],
            fields=tuple(fields),
            preparation=tuple(_preparation(field) for field in fields),
            returning_fields=returning,
            returning_params=tuple(getattr(compiler, "returning_params", ()) or ()),
        )

    def insert(self, obj: M) -> M:
        from django.db import router
        from django.db.models.signals import post_save, pre_save

        model = self.model
        # `receivers` first: empty for nearly every process, and cheaper than the per-sender lookup.
        if (pre_save.receivers or post_save.receivers) and (
            pre_save.has_listeners(model) or post_save.has_listeners(model)
        ):
            obj.save(force_insert=True)
            return obj
        meta = model._meta
        alias = router.db_for_write(model, instance=obj)
        connection = connections[alias]
        obj._prepare_related_fields_for_save(operation_name="save")  # type: ignore[attr-defined]
        if not obj._is_pk_set(meta):  # type: ignore[attr-defined]
            setattr(obj, meta.pk.attname, meta.pk.get_pk_value_on_save(obj))  # type: ignore[union-attr]
        pk_set = bool(obj._is_pk_set(meta))  # type: ignore[attr-defined]
        statement = self._statements.get((alias, pk_set))
        if statement is None:
            with self._lock:
                statement = self._compile(alias, obj, pk_set)
                self._statements[(alias, pk_set)] = statement
        params = []
        for field, preparation in zip(statement.fields, statement.preparation, strict=True):
            if preparation == _FULL:
                params.append(field.get_db_prep_save(field.pre_save(obj, True), connection))
                continue
            value = getattr(obj, field.attname)
            if preparation == _PASS_TEXT and type(value) is str or preparation == _ATTRIBUTE and value is None:
                params.append(value)
            else:
                params.append(field.get_db_prep_save(value, connection))
        with transaction.mark_for_rollback_on_error(using=alias), _cursor(connection) as cursor:
            cursor.execute(statement.sql, params)
            if statement.returning_fields:
                if connection.features.can_return_columns_from_insert:
                    row = connection.ops.fetch_returned_insert_columns(  # type: ignore[attr-defined]
                        cursor, statement.returning_params
                    )
                else:
                    pk = meta.pk
                    assert pk is not None and pk.column is not None
                    row = (connection.ops.last_insert_id(cursor, meta.db_table, pk.column),)
                for value, field in zip(row, statement.returning_fields, strict=True):
                    setattr(obj, field.attname, value)
        obj._state.adding = False
        obj._state.db = alias
        return obj
