"""SQLite with write transactions queued in the process instead of in SQLite's busy handler.

SQLite lets one writer in at a time. A connection that finds the write lock taken sleeps in SQLite's
busy handler, in growing steps of up to 100 ms, and retries: under 20 concurrent requests most
writers sleep long after the lock is free, so p99 latency reached seconds while the CPU idled.
Here every `BEGIN IMMEDIATE` of a process first takes a lock of that process for the database file,
held until COMMIT or ROLLBACK, so a writer starts the moment the previous one finishes. Writers of
other processes still meet SQLite's own lock and busy handler, as before.

In-memory databases (the test suite's) are left alone: a test's own transaction would hold the lock
for the whole test.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db.backends.sqlite3 import base

LOCK_WAIT_SECONDS = 60.0

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _write_lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held_write_lock: threading.Lock | None = None

    def _start_transaction_under_autocommit(self) -> None:
        if self.is_in_memory_db():
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # private in django-stubs
            return
        lock = _write_lock(str(self.settings_dict["NAME"]))
        # A holder stuck for a minute must not wedge the process: then SQLite's own lock decides.
        acquired = lock.acquire(timeout=LOCK_WAIT_SECONDS)
        if acquired:
            self._held_write_lock = lock
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # private in django-stubs
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self) -> None:
        lock, self._held_write_lock = self._held_write_lock, None
        if lock is not None:
            lock.release()

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]  # private in django-stubs
        finally:
            # A failed COMMIT leaves the transaction open: Django rolls it back next, and the lock
            # goes then. SQLite keeps the transaction only if the commit failed while busy.
            if self.connection is None or not self.connection.in_transaction:
                self._release_write_lock()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._release_write_lock()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._release_write_lock()
