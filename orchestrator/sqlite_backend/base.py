"""SQLite with write transactions queued in the process instead of in SQLite's busy handler.

SQLite lets one writer in at a time. A connection that finds the write lock taken sleeps in SQLite's
busy handler, in growing steps of up to 100 ms, and retries: under 20 concurrent requests most
writers sleep long after the lock is free, so p99 latency reached seconds while the CPU idled.
Here every `BEGIN` of a process first takes a lock of that process for the database file, held until
COMMIT or ROLLBACK, so a writer starts the moment the previous one finishes. Writers of other
processes still meet SQLite's own lock and busy handler, as before.

Built on public APIs only: an execute wrapper (Django's documented `execute_wrappers`) takes the lock
before the `BEGIN` Django issues for a transaction, and the driver connection, a `sqlite3.Connection`
subclass given to `sqlite3.connect()` as its documented `factory`, gives it back when its transaction
ends (commit, rollback, close).

In-memory databases (the test suite's) are left alone: a test's own transaction would hold the lock
for the whole test.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from django.db.backends.sqlite3 import base

LOCK_WAIT_SECONDS = 60.0

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _write_lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


class QueuedWriterConnection(sqlite3.Connection):
    """The driver's connection, giving the process's write lock back when its transaction ends."""

    held_write_lock: threading.Lock | None = None

    def release_write_lock(self) -> None:
        lock, self.held_write_lock = self.held_write_lock, None
        if lock is not None:
            lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            # A failed COMMIT leaves the transaction open: Django rolls it back next, and the lock goes
            # then. SQLite keeps the transaction only if the commit failed while busy.
            if not self.in_transaction:
                self.release_write_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_write_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_write_lock()


def _queue_writers(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    if not sql.startswith("BEGIN"):
        return execute(sql, params, many, context)
    wrapper = context["connection"]
    driver = wrapper.connection
    if not isinstance(driver, QueuedWriterConnection) or driver.held_write_lock is not None:
        return execute(sql, params, many, context)
    lock = _write_lock(str(wrapper.settings_dict["NAME"]))
    # A holder stuck for a minute must not wedge the process: then SQLite's own lock decides.
    if lock.acquire(timeout=LOCK_WAIT_SECONDS):
        driver.held_write_lock = lock
    try:
        return execute(sql, params, many, context)
    except BaseException:
        driver.release_write_lock()
        raise


# Django's SQLite cursor rewrites every statement's "%s" placeholders to "?" with a regular expression
# over the whole SQL text, on every execution: for a message INSERT (28 columns) that was most of the
# cursor's own cost. The statements a server runs are few and repeat, so each rewrite is kept.
_QMARK_CACHE_MAX = 2_000


class CachedQueryCursorWrapper(base.SQLiteCursorWrapper):
    """Django's SQLite cursor, with the "format" → "qmark" rewrite of each distinct statement kept."""

    qmark: dict[str, str] = {}

    def convert_query(self, query: str, *, param_names: Any = None) -> str:
        if param_names is not None:
            return str(super().convert_query(query, param_names=param_names))
        converted = self.qmark.get(query)
        if converted is None:
            converted = str(super().convert_query(query))
            if len(self.qmark) >= _QMARK_CACHE_MAX:
                self.qmark.clear()
            self.qmark[query] = converted
        return converted


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name: str | None = None) -> Any:
        return self.connection.cursor(factory=CachedQueryCursorWrapper)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_in_memory_db():
            self.execute_wrappers.append(_queue_writers)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not self.is_in_memory_db():
            conn_params = {**conn_params, "factory": QueuedWriterConnection}
        return super().get_new_connection(conn_params)
