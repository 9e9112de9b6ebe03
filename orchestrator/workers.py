"""The one pool of worker threads that runs blocking work (the ORM, provider SDKs) for the event loop.

Django's own ASGI handler starts a new thread for every request (asgiref's ThreadSensitiveContext),
so a request's database connection cannot outlive it: every request connected afresh, and a
persistent connection per thread would pile up until PostgreSQL refuses clients. Here a fixed set
of threads serves HTTP requests (`orchestrator.http_handler`) and MCP tool calls alike, and each
thread keeps its connection between calls (`CONN_MAX_AGE`), as a WSGI server's threads do. Long
polls (`comms_wait_for_message`) get a pool of their own, so waiting agents never hold the threads
other requests need. A process therefore holds at most `WORKER_THREADS` + `LONG_CALL_THREADS`
database connections.

A slow provider call occupies one thread, not the process.

At most `WORKER_CPU_SLOTS` of the pool's threads run at once; the rest wait for a turn before they
start. Python executes one thread at a time, and many runnable threads contending for the interpreter
lock cost CPU and stretch every request's latency. A thread that waits on the network for a provider's
API (`cpu_turn_released`, applied by the provider registry to every live adapter) gives its turn away
meanwhile, so slow provider calls still overlap. Inside a transaction it keeps its turn: another
thread could otherwise take the turn and then wait on this transaction's locks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.core import signals
from django.db import close_old_connections, connections

T = TypeVar("T")


_pool: ThreadPoolExecutor | None = None
_long_pool: ThreadPoolExecutor | None = None
class _Turns:
    """A semaphore that hands a released turn straight to the longest waiter (first come, first
    served). threading.Semaphore lets a newcomer take a freed turn ahead of the waiters, which left
    some requests waiting behind dozens of others and tripled p99 latency."""

    def __init__(self, turns: int) -> None:
        self._lock = threading.Lock()
        self._free = turns
        self._waiting: collections.deque[threading.Lock] = collections.deque()

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiting.append(gate)
        gate.acquire()  # released by release(), which hands this thread the turn

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._free += 1


_cpu_turns: _Turns | None = None
_cpu_turns_guard = threading.Lock()


def _turns() -> _Turns | None:
    global _cpu_turns
    if _cpu_turns is None and settings.WORKER_CPU_SLOTS:
        with _cpu_turns_guard:
            if _cpu_turns is None:
                _cpu_turns = _Turns(settings.WORKER_CPU_SLOTS)
    return _cpu_turns


@contextlib.contextmanager
def cpu_turn() -> Iterator[None]:
    """Hold one of the pool's WORKER_CPU_SLOTS turns for the duration (see the module docstring)."""
    turns = _turns()
    if turns is None or getattr(_thread_state, "turn_held", False):
        yield
        return
    turns.acquire()
    _thread_state.turn_held = True
    try:
        yield
    finally:
        _thread_state.turn_held = False
        turns.release()


@contextlib.contextmanager
def cpu_turn_released() -> Iterator[None]:
    """Give this thread's turn to another while it waits on the network (a provider's API).

    Kept inside a transaction (any database): another thread that took the turn could then wait on
    this transaction's locks while this one waits for the turn.
    """
    turns = _cpu_turns
    if turns is None or not getattr(_thread_state, "turn_held", False) or _in_transaction():
        yield
        return
    _thread_state.turn_held = False
    turns.release()
    try:
        yield
    finally:
        turns.acquire()
        _thread_state.turn_held = True


def _in_transaction() -> bool:
    return any(connection.in_atomic_block for connection in connections.all(initialized_only=True))


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=settings.WORKER_THREADS, thread_name_prefix="worker")
    return _pool


def long_pool() -> ThreadPoolExecutor:
    """Threads for calls that hold their thread for seconds (long polls): however many agents wait, the
    ordinary pool stays free for everything else. These threads keep connections too; a process's
    total is at most WORKER_THREADS + LONG_CALL_THREADS."""
    global _long_pool
    if _long_pool is None:
        _long_pool = ThreadPoolExecutor(max_workers=settings.LONG_CALL_THREADS, thread_name_prefix="long-call")
    return _long_pool


async def run_blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a blocking function in the worker pool with Django's connection hygiene around it.

    The caller's context variables travel with the call, as they do through `sync_to_async`.
    """
    return await _run_on(pool(), function, *args, **kwargs)


async def run_long(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """As run_blocking, on the long-call pool (see long_pool)."""
    return await _run_on(long_pool(), function, *args, **kwargs)


async def run_local(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """As run_blocking, for work that waits on nothing but the database (no provider's API, no other
    host, no long wait): with LOCAL_WORK_ON_LOOP it runs on the event loop's own thread.

    That setting is on when the database is a local SQLite file and nothing else is networked. Python
    runs one thread at a time, so a worker thread running such work held the event loop up just the
    same; the hop only added two thread wake-ups and the interpreter lock passed between the threads,
    which cost more CPU than a webhook's own work on the 2-core VMs we measure on (bench/README.md).
    Work that may wait on the network must not come here: on the loop's thread it would stall every
    connection of the process while it waits.

    Such calls queue, and the loop runs one per turn of the loop (one iteration): between two of them
    it reads sockets, pushes notifications and serves everything else ready, so a burst of requests
    holds the rest of the process up by one call at a time, not by the whole burst. A call whose
    caller was cancelled while it queued does not run.

    The call sees no running event loop, as on a worker: Django allows the ORM there, and the loop's
    thread keeps one database connection of its own between calls, as a worker thread does. The same
    upkeep, context and `calling_event_loop` as run_blocking. Async code elsewhere on the loop still
    gets Django's SynchronousOnlyOperation if it touches the ORM.
    """
    if settings.LOCAL_WORK_ON_LOOP:
        return await _on_loop(function, *args, upkeep=True, **kwargs)
    return await run_blocking(function, *args, **kwargs)


async def run_django_request(
    function: Callable[..., T], *args: Any, long: bool = False, local: bool = False
) -> T:
    """As run_blocking (run_long with `long`; run_local with `local`), for a function that runs a whole
    Django request: the request's own request_started and request_finished signals already do the
    connection upkeep (close_old_connections), so it is not wrapped in a second round of it."""
    if local and not long and settings.LOCAL_WORK_ON_LOOP:
        return await _on_loop(function, *args, upkeep=False)
    return await _run_on(long_pool() if long else pool(), function, *args, upkeep=False)


# Per event loop, the run_local calls waiting for their turn (the entry exists while any wait).
_LocalCall = tuple["asyncio.Future[Any]", contextvars.Context, Callable[[], Any]]
_local_calls: dict[asyncio.AbstractEventLoop, collections.deque[_LocalCall]] = {}


async def _on_loop(function: Callable[..., T], *args: Any, upkeep: bool, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    waiting = _local_calls.get(loop)
    if waiting is None:
        waiting = _local_calls[loop] = collections.deque()
        loop.call_soon(_run_next_local_call, loop)
    call = partial(_on_worker, loop, upkeep, False, function, *args, **kwargs)
    waiting.append((future, contextvars.copy_context(), call))
    return await future


# Per event loop, how many pieces of loop work are under way that queued run_local calls give way to
# (loop_work_first): a notification takes several turns of the loop from the session's stream to its
# socket, and with a local call in every turn a burst of webhooks made notifications fall ever further
# behind the webhooks producing them (p50 0.2-0.4 s at 20 senders). Bounded, so that a push stuck on
# a slow client cannot starve the requests.
_work_first: dict[asyncio.AbstractEventLoop, int] = {}
MAX_TURNS_GIVEN_WAY = 8


@contextlib.asynccontextmanager
async def loop_work_first() -> AsyncIterator[None]:
    """While inside, the loop turns without starting queued run_local calls (up to MAX_TURNS_GIVEN_WAY
    turns in a row): for short loop work that must not wait behind them, such as a push to a session."""
    loop = asyncio.get_running_loop()
    _work_first[loop] = _work_first.get(loop, 0) + 1
    try:
        yield
    finally:
        if _work_first[loop] == 1:
            del _work_first[loop]
        else:
            _work_first[loop] -= 1


def _run_next_local_call(loop: asyncio.AbstractEventLoop, turns_given_way: int = 0) -> None:
    if loop in _work_first and turns_given_way < MAX_TURNS_GIVEN_WAY:
        loop.call_soon(_run_next_local_call, loop, turns_given_way + 1)
        return
    waiting = _local_calls[loop]
    future, context, call = waiting.popleft()
    if waiting:
        loop.call_soon(_run_next_local_call, loop)  # the next turn of the loop, after what is ready now
    else:
        del _local_calls[loop]
    if future.cancelled():
        return
    # For the call, the loop's thread is a worker thread: no running loop, so that Django's
    # async-safety check and asgiref's thread-critical locals (the database connections) treat it as one.
    asyncio.events._set_running_loop(None)  # noqa: SLF001
    try:
        result = context.run(call)
    except BaseException as exc:
        asyncio.events._set_running_loop(loop)  # noqa: SLF001
        future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    asyncio.events._set_running_loop(loop)  # noqa: SLF001
    future.set_result(result)


async def _run_on(
    executor: ThreadPoolExecutor, function: Callable[..., T], *args: Any, upkeep: bool = True, **kwargs: Any
) -> T:
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    # Long polls wait for seconds: they take no turn (the ordinary pool's threads take one each).
    turn = executor is not _long_pool
    call = partial(context.run, _on_worker, loop, upkeep, turn, function, *args, **kwargs)
    return await loop.run_in_executor(executor, call)


_thread_state = threading.local()


def calling_event_loop() -> asyncio.AbstractEventLoop | None:
    """In a worker thread, the event loop that handed it the current call (work that must outlive the
    call, such as delivering a stored message to a live session, is scheduled there)."""
    return getattr(_thread_state, "loop", None)


def _on_worker(
    loop: asyncio.AbstractEventLoop, upkeep: bool, turn: bool, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    _thread_state.loop = loop
    try:
        with cpu_turn() if turn else contextlib.nullcontext():
            if upkeep:
                return with_connections(function, *args, **kwargs)
            try:
                return function(*args, **kwargs)
            finally:
                _thread_state.connections_checked_at = time.monotonic()
    finally:
        _thread_state.loop = None


def with_connections(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # What request_started/request_finished do for a Django request: drop a connection that broke
    # or outlived CONN_MAX_AGE, keep a healthy one.
    close_old_connections()
    skip_health_check_of_recent_connections()
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()
        _thread_state.connections_checked_at = time.monotonic()


# CONN_HEALTH_CHECKS makes Django test a kept connection (PostgreSQL: a `SELECT 1` round trip) before
# the first query of every request: on a busy server that was an eighth of the server's CPU per webhook.
# A connection this thread used without error within the last second is taken as alive; one idle for
# longer (where a database restart or an idle timeout would show) is still checked. A connection that
# errored is always re-checked (errors_occurred), as Django does.
RECENT_USE_SECONDS = 1.0


def skip_health_check_of_recent_connections(**_signal_kwargs: Any) -> None:
    checked_at = getattr(_thread_state, "connections_checked_at", None)
    if checked_at is None or time.monotonic() - checked_at > RECENT_USE_SECONDS:
        return
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.errors_occurred:
            connection.health_check_done = True  # type: ignore[attr-defined]  # not in django-stubs


# Django's request_started receiver (close_old_connections, connected at import) resets the check
# flag; this one runs after it, for requests served by orchestrator.http_handler on a worker thread.
signals.request_started.connect(skip_health_check_of_recent_connections)


def reset_worker_threads() -> None:
    """Retire the pools and close their threads' database connections (tests; before a database is dropped)."""
    global _pool, _long_pool, _cpu_turns
    retired_pools = [_pool, _long_pool]
    _pool = _long_pool = None
    _cpu_turns = None  # rebuilt from WORKER_CPU_SLOTS by the next call
    for retired in retired_pools:
        if retired is not None:
            _retire(retired)


def _retire(retired: ThreadPoolExecutor) -> None:
    # Connections are thread-local: each worker must close its own. One task per worker, held at a
    # barrier so that no worker takes two of them.
    workers = max(len(retired._threads), 1)  # noqa: SLF001
    barrier = threading.Barrier(workers, timeout=10)

    def close_own() -> None:
        connections.close_all()
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    for _ in range(workers):
        retired.submit(close_own)
    retired.shutdown(wait=True)
