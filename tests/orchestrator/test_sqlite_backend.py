"""The SQLite backend queues a process's write transactions instead of leaving them to SQLite's busy handler."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from orchestrator.sqlite_backend.base import DatabaseWrapper


@pytest.fixture(autouse=True)
def own_databases(django_db_blocker: Any) -> Iterator[None]:
    """These tests open their own SQLite files, not the test database."""
    with django_db_blocker.unblock():
        yield


def _wrapper(path: Path, alias: str) -> DatabaseWrapper:
    settings_dict = {
        **connection.settings_dict,
        "ENGINE": "orchestrator.sqlite_backend",
        "NAME": str(path),
        # SQLite itself would give up on a taken write lock almost at once.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 0.01},
        "TEST": {},
    }
    return DatabaseWrapper(settings_dict, alias=alias)


def _begin(db: DatabaseWrapper) -> None:
    db.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


def _end(db: DatabaseWrapper) -> None:
    db.commit()
    db.set_autocommit(True)


def test_it_lets_a_second_writer_wait_for_the_first_instead_of_failing_as_locked(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    setup = _wrapper(path, "setup")
    with setup.cursor() as cursor:
        cursor.execute("CREATE TABLE counter (n INTEGER)")
    setup.close()

    first_inside = threading.Event()
    outcome: list[str] = []

    def first() -> None:
        db = _wrapper(path, "first")
        _begin(db)
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO counter VALUES (1)")
        first_inside.set()
        time.sleep(0.3)  # holds SQLite's write lock far longer than SQLite's 10 ms busy timeout
        _end(db)
        db.close()

    def second() -> None:
        db = _wrapper(path, "second")
        first_inside.wait(5)
        try:
            _begin(db)
            with db.cursor() as cursor:
                cursor.execute("INSERT INTO counter VALUES (2)")
            _end(db)
            outcome.append("written")
        except Exception as exc:  # what plain SQLite does here: "database is locked"
            outcome.append(repr(exc))
        finally:
            db.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert outcome == ["written"]
    check = _wrapper(path, "check")
    with check.cursor() as cursor:
        cursor.execute("SELECT n FROM counter ORDER BY n")
        assert [row[0] for row in cursor.fetchall()] == [1, 2]
    check.close()


def test_it_frees_the_queue_when_a_transaction_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "rollback.sqlite3"
    db = _wrapper(path, "one")
    _begin(db)
    db.rollback()
    db.set_autocommit(True)
    other = _wrapper(path, "two")
    _begin(other)  # would wait a minute if the rollback had kept the lock
    _end(other)
    db.close()
    other.close()


def test_it_runs_a_repeated_statement_with_literal_percent_signs_and_its_parameters_each_time(tmp_path: Path) -> None:
    # Each statement's placeholder rewrite is kept (CachedQueryCursorWrapper): the kept form must be
    # exactly Django's, "%s" → "?" and "%%" → "%", whatever the parameters of each execution.
    db = _wrapper(tmp_path / "qmark.sqlite3", "qmark")
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE label (name TEXT)")
        for name in ("50% off", "plain", "100%"):
            cursor.execute("INSERT INTO label (name) VALUES (%s)", [name])
        found = []
        for pattern in ("%\\%%", "pl%"):
            cursor.execute("SELECT name FROM label WHERE name LIKE %s ESCAPE '\\' AND name <> '%%x' ORDER BY name",
                           [pattern])
            found.append([row[0] for row in cursor.fetchall()])
        cursor.execute("SELECT name FROM label WHERE name = %(name)s", {"name": "plain"})
        named = cursor.fetchall()
    db.close()
    assert found == [["100%", "50% off"], ["plain"]]
    assert named == [("plain",)]
