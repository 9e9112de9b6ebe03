"""The worker pool's connection upkeep: kept connections are tested only when they may have gone stale."""

from __future__ import annotations

import asyncio
import contextvars
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
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 300)
    monkeypatch.setattr(workers, "RECENT_USE_SECONDS", 0.2)
    checks: list[float] = []

    def counting_alive(tested: BaseDatabaseWrapper) -> bool:
        checks.append(time.monotonic())
        return True

    monkeypatch.setattr(workers, "connection_alive", counting_alive)

    def query() -> None:
        from django.db import connection as thread_connection

        with thread_connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def scenario() -> None:
        workers.with_connections(query)  # connects: nothing to test yet
        workers.with_connections(query)  # used a moment ago: taken as alive
        assert checks == []
        time.sleep(0.3)
        workers.with_connections(query)  # idle for longer than RECENT_USE_SECONDS: tested first
        assert len(checks) == 1

    _in_a_new_thread(scenario)


def test_it_replaces_an_idle_connection_that_fails_its_test(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("Django never closes an in-memory SQLite connection (it would drop the database)")
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 300)
    monkeypatch.setattr(workers, "RECENT_USE_SECONDS", 0.0)
    alive = [True]
    monkeypatch.setattr(workers, "connection_alive", lambda tested: alive[0])

    def driver_connection() -> object:
        from django.db import connection as thread_connection

        with thread_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return thread_connection.connection

    def scenario() -> None:
        first = workers.with_connections(driver_connection)
        time.sleep(0.01)
        assert workers.with_connections(driver_connection) is first  # alive: kept
        alive[0] = False  # as after a database restart
        time.sleep(0.01)
        assert workers.with_connections(driver_connection) is not first  # closed, and a new one opened

    _in_a_new_thread(scenario)


MARKER: contextvars.ContextVar[str] = contextvars.ContextVar("marker")


class LeftWork:
    """A pool call that leaves work for the event loop (call_soon_after_call) and notes what ran when."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, str]] = []
        self.work_ran = threading.Event()

    def on_loop(self) -> None:
        self.ran.append(("the work left for the loop", MARKER.get("a fresh context")))
        self.work_ran.set()

    def call(self, *, fail: bool = False, waits_on_the_network: bool = False, waits: bool = False) -> None:
        if not workers.call_soon_after_call(self.on_loop):
            # Not taken (a long call): scheduled at once, as channels_app.delivery.routing does then.
            loop = workers.calling_event_loop()
            assert loop is not None
            loop.call_soon_threadsafe(self.on_loop, context=contextvars.Context())
        if waits_on_the_network:
            with workers.cpu_turn_released():
                assert self.work_ran.wait(5)
        elif waits:
            assert self.work_ran.wait(5)
        self.ran.append(("the call returns", MARKER.get("a fresh context")))
        if fail:
            raise ValueError("the call failed")


def test_work_a_call_leaves_for_the_loop_runs_there_after_the_call_in_a_fresh_context() -> None:
    calls = [LeftWork(), LeftWork()]

    async def scenario() -> None:
        MARKER.set("the request's context")
        await workers.run_blocking(calls[0].call)
        with pytest.raises(ValueError):
            await workers.run_blocking(calls[1].call, fail=True)  # it committed, then failed: the work still runs
        await asyncio.sleep(0)

    asyncio.run(scenario())
    workers.reset_worker_threads()
    for call in calls:
        assert call.ran == [("the call returns", "the request's context"),
                            ("the work left for the loop", "a fresh context")]


def test_work_left_by_a_call_that_waits_on_the_network_or_holds_its_thread_runs_while_it_waits() -> None:
    on_the_network, long = LeftWork(), LeftWork()

    async def scenario() -> None:
        await workers.run_blocking(on_the_network.call, waits_on_the_network=True)
        await workers.run_long(long.call, waits=True)

    asyncio.run(scenario())
    workers.reset_worker_threads()
    for call in (on_the_network, long):
        assert call.ran == [("the work left for the loop", "a fresh context"),
                            ("the call returns", "a fresh context")]


def test_outside_a_pool_call_no_work_is_taken_for_the_loop() -> None:
    assert not workers.call_soon_after_call(print)


# --- results handed back in batches --------------------------------------------------------------


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts how often another thread woke it with work."""

    def __init__(self) -> None:
        super().__init__()
        self.woken_from_threads = 0

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        self.woken_from_threads += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def _run_on_counting_loop(scenario: Any) -> CountingLoop:
    loop = CountingLoop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
        workers.reset_worker_threads()
    return loop


def _square_after_a_while(n: int) -> int:
    time.sleep(0.003)  # lets the loop's thread run meanwhile, as a query does
    return n * n


def test_results_of_calls_queued_behind_each_other_go_back_to_the_loop_together(settings: Any) -> None:
    settings.WORKER_CPU_SLOTS = 1
    workers.reset_worker_threads()
    release = threading.Event()

    async def scenario() -> None:
        first = asyncio.ensure_future(workers.run_blocking(release.wait, 5))
        await asyncio.sleep(0.05)  # the one slot's thread is in the first call; the rest queue behind it
        rest = [asyncio.ensure_future(workers.run_blocking(_square_after_a_while, n)) for n in range(6)]
        await asyncio.sleep(0)
        release.set()
        assert await first is True
        assert await asyncio.gather(*rest) == [0, 1, 4, 9, 16, 25]

    loop = _run_on_counting_loop(scenario)

    assert loop.woken_from_threads <= 2  # seven results; one wake-up each before


def test_a_result_kept_for_a_batch_is_not_held_behind_a_slow_call(settings: Any) -> None:
    """The quick call's result is kept back (a call is queued behind it); the call behind it then blocks
    without saying so, as on a lock: the result still goes back within the hold limit."""
    settings.WORKER_CPU_SLOTS = 1
    workers.reset_worker_threads()
    first_gate, slow_gate = threading.Event(), threading.Event()

    async def scenario() -> None:
        first = asyncio.ensure_future(workers.run_blocking(first_gate.wait, 5))
        await asyncio.sleep(0.05)  # the one slot's thread is in the first call
        quick = asyncio.ensure_future(workers.run_blocking(lambda: "quick"))
        slow = asyncio.ensure_future(workers.run_blocking(slow_gate.wait, 5))  # queued behind the quick one
        await asyncio.sleep(0)
        first_gate.set()
        started = time.monotonic()
        assert await quick == "quick"
        waited = time.monotonic() - started
        slow_gate.set()
        await asyncio.gather(first, slow)
        assert waited < 1.0, f"the quick call's result waited {waited:.2f} s for the slow call behind it"

    _run_on_counting_loop(scenario)
