"""The worker pool's connection upkeep: kept connections are tested only when they may have gone stale."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

from orchestrator import workers

pytestmark = pytest.mark.django_db(transaction=True)


def _in_a_new_thread(function: Any) -> None:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            function()
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)
        finally:
            from django.db import connections

            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not failures, failures


def test_it_tests_a_kept_connection_only_after_it_sat_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 300)
    monkeypatch.setattr(workers, "RECENT_USE_SECONDS", 0.2)
    checks: list[float] = []

    def counting_is_usable(self: BaseDatabaseWrapper) -> bool:
        checks.append(time.monotonic())
        return True

    def query() -> None:
        from django.db import connection as thread_connection

        with thread_connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def scenario() -> None:
        from django.db import connections

        monkeypatch.setattr(type(connections["default"]), "is_usable", counting_is_usable)
        workers.with_connections(query)  # connects: nothing to test yet
        workers.with_connections(query)  # used a moment ago: taken as alive
        assert checks == []
        time.sleep(0.3)
        workers.with_connections(query)  # idle for longer than RECENT_USE_SECONDS: tested first
        assert len(checks) == 1

    _in_a_new_thread(scenario)
