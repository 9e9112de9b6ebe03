"""The worker threads that run all blocking work (the ORM, provider SDKs) for the event loop.

One execution model in every configuration: the event loop reads and writes sockets; everything else
(every HTTP request's Django handling, every MCP tool call, delivery bookkeeping) runs here. Nothing
has to be declared for that: whatever a call does, it does on a worker thread.

Django's own ASGI handler starts a new thread for every request (asgiref's ThreadSensitiveContext),
so a request's database connection cannot outlive it. Here a fixed set of threads serves HTTP requests
(`orchestrator.http_handler`) and MCP tool calls alike, and each thread keeps its connection between
calls (`CONN_MAX_AGE`), as a WSGI server's threads do. Long polls (`comms_wait_for_message`) get a
pool of their own, so waiting agents never hold the threads other requests need. A process holds at
most `WORKER_THREADS` + `LONG_CALL_THREADS` database connections.

**Slots.** At most `WORKER_CPU_SLOTS` threads of the pool run calls at once (0: no limit). Python
executes one thread at a time, and many runnable threads contending for the interpreter lock cost CPU
and stretch every request's latency. A thread holding a slot takes the next queued call as soon as it
finishes one, so under load calls flow through hot threads without a thread wake-up each, which on the
small VMs we measure on costs more than a short call (docs/decisions/002-worker-pool.md). A thread
that waits on the network for a provider's API (`cpu_turn_released`, applied by the provider registry
to every live adapter) lends its slot to another thread meanwhile (not inside a transaction: another
thread could take the slot and then wait on this transaction's locks).

**Results go back in batches.** A worker thread that finishes a call while more calls are queued keeps
its result (at most `HAND_BACK_BATCH` of them) and takes the next call at once; the results go back to the
loop together, when the batch is full, the queue runs dry, the thread is about to wait on the network,
or at the latest `HOLD_SECONDS` after the loop last handed a call over (a timer the loop keeps while the
pool is busy; the loop also collects whatever is ready each time it hands a call over). Each result
going back on its own woke the loop's thread, which then waited for the interpreter the worker held:
two thread switches per request, about a quarter of a webhook's CPU at 20 senders (bench/HISTORY.md).

**Nothing undeclared stalls the others.** A call that blocks without saying so (a database lock, a
network call outside the provider registry) keeps its slot, so while calls are queued the pool checks
every `STALL_SECONDS` that its running threads made progress (a call finished, or CPU time was used);
if none did twice in a row, one more slot is lent, and kept while calls are queued. A blocked call then
delays the others by a fraction of a second, and never the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.core import signals
from django.db import close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper

T = TypeVar("T")

STALL_SECONDS = 0.1
MAX_LENT_PER_SLOT = 4
HAND_BACK_BATCH = 8
HOLD_SECONDS = 0.005

_thread_state = threading.local()


class _Worker:
    __slots__ = ("gate", "ident", "thread")

    def __init__(self) -> None:
        # Held while the thread sleeps: whoever hands it a slot releases it (a binary semaphore).
        self.gate = threading.Lock()
        self.gate.acquire()
        self.thread: threading.Thread | None = None
        self.ident: int | None = None


_Result = tuple["asyncio.Future[Any]", Any, "BaseException | None", "list[tuple[Callable[..., object], tuple[Any, ...]]]"]


class _Outbox:
    """The results of one pool's calls on their way back to one event loop ("Results go back in batches")."""

    __slots__ = ("__weakref__", "items", "loop", "pool", "signalled", "timer")

    def __init__(self, pool: WorkerPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = weakref.ref(loop)  # the pool's map of outboxes must not keep a finished loop alive
        self.items: collections.deque[_Result] = collections.deque()
        self.signalled = False  # a drain is scheduled on the loop and has not started yet
        self.timer: asyncio.TimerHandle | None = None

    # --- a worker thread's side

    def put(self, item: _Result) -> None:
        self.items.append(item)
        if self.pool.long_calls or not self.pool._pending or len(self.items) >= HAND_BACK_BATCH:
            self.signal()

    def signal(self) -> None:
        """Have the loop collect the results now (one wake-up for all of them)."""
        if self.signalled or not self.items:
            # Safe without a lock: a drain that has not reset `signalled` yet will still see every item
            # appended before this read (both threads run under the interpreter lock).
            return
        loop = self.loop()
        if loop is None:
            return
        self.signalled = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.drain)

    # --- the loop's side

    def drain(self) -> None:
        self.signalled = False
        while self.items:
            future, result, error, after = self.items.popleft()
            if after:
                _settle_after(future, result, error, after)
            else:
                _settle(future, result, error)

    def keep_watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.timer is None:
            self.timer = loop.call_later(HOLD_SECONDS, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        self.drain()
        # A result is kept back only while calls are queued; the submit of a later call starts a new timer.
        # (Not while calls merely run: a call stuck for minutes would wake the loop every 5 ms for nothing.)
        if self.pool._pending:
            self.keep_watch(loop)


class WorkerPool:
    """Threads that run queued calls, at most `slots` at a time (0: no limit); see the module docstring."""

    def __init__(self, name: str, max_threads: int, slots: int, *, long_calls: bool = False) -> None:
        self.name = name
        self.long_calls = long_calls  # calls hold their thread for seconds (see call_soon_after_call)
        self.max_threads = max_threads
        self.slots = slots
        self._lock = threading.Lock()
        self._pending: collections.deque[Callable[[], None]] = collections.deque()
        self._idle: list[_Worker] = []  # most recently idle last: the hottest thread is woken first
        self._workers: list[_Worker] = []
        self._running = 0  # threads holding a slot
        self._lent = 0  # slots lent by the stall check, returned as slots free up
        self._returning: collections.deque[_Worker] = collections.deque()  # back from a network wait
        self._finished = 0
        self._watching = False
        self._retired = False
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = weakref.WeakKeyDictionary()

    def _limit(self) -> float:
        return self.slots + self._lent if self.slots else float("inf")

    # --- the event loop's side

    def outbox(self, loop: asyncio.AbstractEventLoop) -> _Outbox:
        """This loop's outbox, with what is ready in it collected and its timer running (from the loop)."""
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox(self, loop)
        if outbox.items:
            outbox.drain()
        if not self.long_calls:
            outbox.keep_watch(loop)
        return outbox

    def submit(self, loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
        with self._lock:
            self._pending.append(call)
            worker = self._dispatch_locked()
            queued = bool(self._pending) and bool(self.slots)
        self._wake(worker)
        if queued and not self._watching:
            self._watching = True
            loop.call_later(STALL_SECONDS, self._check_progress, loop, self._finished, self._cpu(), 0)

    def _check_progress(self, loop: asyncio.AbstractEventLoop, finished: int, cpu: float, idle_checks: int) -> None:
        """While calls are queued: if the running threads finished no call and used no CPU over two checks
        in a row, they all wait on something; lend one more slot (at most MAX_LENT_PER_SLOT per slot, so
        that a host too busy to run us at all does not make every thread runnable at once)."""
        self._watching = False
        with self._lock:
            if not self._pending or self._retired:
                return
            idle_checks = idle_checks + 1 if self._finished == finished and self._cpu() == cpu else 0
            worker = None
            if idle_checks >= 2 and self._lent < self.slots * MAX_LENT_PER_SLOT and (
                self._idle or len(self._workers) < self.max_threads
            ):
                idle_checks = 0
                self._lent += 1
                worker = self._dispatch_locked()
        self._wake(worker)
        self._watching = True
        loop.call_later(STALL_SECONDS, self._check_progress, loop, self._finished, self._cpu(), idle_checks)

    def _cpu(self) -> float:
        """CPU seconds used by the pool's threads so far (0 where the platform cannot tell)."""
        total = 0.0
        for worker in list(self._workers):
            if worker.ident is not None:
                with contextlib.suppress(OSError, AttributeError, OverflowError):
                    total += time.clock_gettime(time.pthread_getcpuclockid(worker.ident))
        return total

    # --- handing slots on (with the lock held; the worker returned is woken after it is released)

    def _dispatch_locked(self) -> _Worker | None:
        """A thread, given a slot, for the queued calls: an idle one or a new one; None if no slot is free."""
        if not self._pending or self._running >= self._limit() or self._retired:
            return None
        if self._idle:
            self._running += 1
            return self._idle.pop()
        if len(self._workers) < self.max_threads:
            self._running += 1
            worker = _Worker()
            self._workers.append(worker)
            return worker
        return None

    def _slot_freed_locked(self) -> _Worker | None:
        """A slot came free: to a thread back from a network wait, else to the queue; a lent slot goes
        back once nothing is queued."""
        self._running -= 1
        if self._lent and not self._pending:
            self._lent -= 1
            return None
        if self._returning and self._running < self._limit():
            self._running += 1
            return self._returning.popleft()
        return self._dispatch_locked()

    def _wake(self, worker: _Worker | None) -> None:
        if worker is None:
            return
        if worker.thread is None:
            worker.thread = threading.Thread(
                target=self._work, args=(worker,), name=f"{self.name}-{len(self._workers)}", daemon=True
            )
            worker.thread.start()
        else:
            worker.gate.release()

    # --- the worker threads' side

    def _work(self, worker: _Worker) -> None:
        worker.ident = threading.get_ident()
        _thread_state.pool, _thread_state.worker = self, worker
        try:
            while True:  # holding a slot
                with self._lock:
                    call = self._pending.popleft() if self._pending and not self._returning else None
                    if call is None:
                        handed_on = self._slot_freed_locked()
                        if self._retired:
                            return
                        self._idle.append(worker)
                if call is None:
                    self._wake(handed_on)
                    worker.gate.acquire()  # until given a slot
                    if self._retired:
                        return
                    continue
                call()
                with self._lock:
                    self._finished += 1
        finally:
            connections.close_all()  # this thread's own; retired pools only

    def lend_slot(self) -> bool:
        """From a worker thread about to wait on the network: let another thread run meanwhile."""
        if not self.slots:
            return False
        with self._lock:
            handed_on = self._slot_freed_locked()
        self._wake(handed_on)
        return True

    def take_slot_back(self, worker: _Worker) -> None:
        with self._lock:
            if self._running < self._limit() and not self._returning:
                self._running += 1
                return
            self._returning.append(worker)
        worker.gate.acquire()  # until a slot is handed to this thread

    def retire(self) -> None:
        """Stop the threads once idle; each closes its own database connections."""
        with self._lock:
            self._retired = True
            idle, self._idle = self._idle, []
            workers = list(self._workers)
        for worker in idle:
            worker.gate.release()
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(timeout=10)


_pool: WorkerPool | None = None
_long_pool: WorkerPool | None = None
_pools_lock = threading.Lock()


def pool() -> WorkerPool:
    global _pool
    if _pool is None:
        with _pools_lock:
            if _pool is None:
                _pool = WorkerPool("worker", settings.WORKER_THREADS, settings.WORKER_CPU_SLOTS)
    return _pool


def long_pool() -> WorkerPool:
    """Threads for calls that hold their thread for seconds (long polls): however many agents wait, the
    ordinary pool stays free for everything else. These threads keep connections too and take no slot."""
    global _long_pool
    if _long_pool is None:
        with _pools_lock:
            if _long_pool is None:
                _long_pool = WorkerPool("long-call", settings.LONG_CALL_THREADS, 0, long_calls=True)
    return _long_pool


async def run_blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a blocking function in the worker pool with Django's connection hygiene around it.

    The caller's context variables travel with the call, as they do through `sync_to_async`.
    """
    return await _run_on(pool(), function, *args, **kwargs)


async def run_long(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """As run_blocking, on the long-call pool (see long_pool)."""
    return await _run_on(long_pool(), function, *args, **kwargs)


async def run_django_request(function: Callable[..., T], *args: Any, long: bool = False) -> T:
    """As run_blocking (run_long with `long`), for a function that runs a whole Django request: the
    request's own request_started and request_finished signals already do the connection upkeep
    (close_old_connections), so it is not wrapped in a second round of it."""
    return await _run_on(long_pool() if long else pool(), function, *args, upkeep=False)


async def _run_on(pool: WorkerPool, function: Callable[..., T], *args: Any, upkeep: bool = True, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()
    hand_back = not pool.long_calls
    outbox = pool.outbox(loop)
    pool.submit(loop, partial(_call, loop, outbox, future, context, upkeep, hand_back, function, args, kwargs))
    return await future


def _call(
    loop: asyncio.AbstractEventLoop,
    outbox: _Outbox,
    future: asyncio.Future[T],
    context: contextvars.Context,
    upkeep: bool,
    hand_back: bool,
    function: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if future.cancelled():  # the caller gave up while the call was queued
        return
    # Work the call leaves for the loop (call_soon_after_call) goes back with its result: one wake-up.
    after: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
    _thread_state.after = after if hand_back else None
    _thread_state.outbox = outbox
    try:
        result = context.run(_on_worker, loop, upkeep, function, *args, **kwargs)
    except BaseException as exc:  # the caller's to handle, as run_in_executor hands it over
        outbox.put((future, None, exc, after))
        return
    finally:
        _thread_state.after = None
    outbox.put((future, result, None, after))


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_after(
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
    after: list[tuple[Callable[..., object], tuple[Any, ...]]],
) -> None:
    # Each in a context of its own, as call_soon_threadsafe(…, context=Context()) would run it: the
    # request's context must not leak into work that outlives it. Even when the caller gave up. Run
    # before the result is set, so a task it starts takes its first step before the caller resumes:
    # a webhook's callback leaves before its 200, and the loop is idle again when the next webhook
    # comes (after the 200, its POST overlapped the next webhook's work on the worker: more thread
    # switches and CPU per webhook at 1 sender).
    for callback, args in after:
        try:
            contextvars.Context().run(callback, *args)
        except Exception as exc:  # reported as the loop reports a failed callback
            asyncio.get_running_loop().call_exception_handler(
                {"message": "Work left for the loop by a worker call failed", "exception": exc}
            )
    _settle(future, result, error)


def call_soon_after_call(callback: Callable[..., object], *args: Any) -> bool:
    """From a call run by run_blocking: run `callback(*args)` on the calling event loop, in a fresh
    context, when the call returns, just before its caller resumes (so it must be quick: start a task,
    not run one). False outside such a call (the caller schedules it another way).

    The callback goes back to the loop with the call's result, in one hand-off: scheduled on its own
    (loop.call_soon_threadsafe) it woke the loop's thread while this one still held the interpreter,
    a second wake-up per call. For work the call's caller can wait for, such as delivering what a
    webhook stored (after its commit): a call that holds its thread for long (run_long) runs it at once.
    """
    after: list[tuple[Callable[..., object], tuple[Any, ...]]] | None = getattr(_thread_state, "after", None)
    if after is None:
        return False
    after.append((callback, args))
    return True


@contextlib.contextmanager
def cpu_turn_released() -> Iterator[None]:
    """Lend this thread's slot to another while it waits on the network (a provider's API).

    Kept inside a transaction (any database): another thread that took the slot could then wait on
    this transaction's locks while this one waits for the slot.
    """
    pool_: WorkerPool | None = getattr(_thread_state, "pool", None)
    outbox: _Outbox | None = getattr(_thread_state, "outbox", None)
    if outbox is not None:
        outbox.signal()  # nor do the results this thread kept back for a batch
    _hand_over_after()  # what the call left for the loop does not wait for the network
    if pool_ is None or _in_transaction() or not pool_.lend_slot():
        yield
        return
    try:
        yield
    finally:
        pool_.take_slot_back(_thread_state.worker)


def _hand_over_after() -> None:
    after: list[tuple[Callable[..., object], tuple[Any, ...]]] | None = getattr(_thread_state, "after", None)
    loop: asyncio.AbstractEventLoop | None = getattr(_thread_state, "loop", None)
    if not after or loop is None:
        return
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        for callback, args in after:
            loop.call_soon_threadsafe(callback, *args, context=contextvars.Context())
    after.clear()


def _in_transaction() -> bool:
    return any(connection.in_atomic_block for connection in connections.all(initialized_only=True))


def calling_event_loop() -> asyncio.AbstractEventLoop | None:
    """In a worker thread, the event loop that handed it the current call (work that must outlive the
    call, such as delivering a stored message to a live session, is scheduled there)."""
    return getattr(_thread_state, "loop", None)


def _on_worker(loop: asyncio.AbstractEventLoop, upkeep: bool, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    _thread_state.loop = loop
    try:
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
    check_idle_connections()
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()
        _thread_state.connections_checked_at = time.monotonic()


# Django's CONN_HEALTH_CHECKS tests a kept connection (PostgreSQL: a `SELECT 1` round trip) before the first
# query of every request: on a busy server that was an eighth of the server's CPU per webhook. It is off
# (settings.py), and this does the same for connections that sat idle: a connection this thread used within
# the last second is taken as alive; one idle for longer (where a database restart or an idle timeout would
# show) is tested, and closed if it fails, so that the request opens a new one. A connection that errored
# is already closed by close_old_connections when it is no longer usable.
RECENT_USE_SECONDS = 1.0


def connection_alive(connection: BaseDatabaseWrapper) -> bool:
    return bool(connection.is_usable())


def check_idle_connections(**_signal_kwargs: Any) -> None:
    checked_at = getattr(_thread_state, "connections_checked_at", None)
    if checked_at is not None and time.monotonic() - checked_at <= RECENT_USE_SECONDS:
        return
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.in_atomic_block and not connection_alive(connection):
            connection.close()


# Runs after Django's own request_started receiver (close_old_connections, connected at import), for every
# Django request: those orchestrator.http_handler serves on a worker thread and any other.
signals.request_started.connect(check_idle_connections)


def reset_worker_threads() -> None:
    """Retire the pools and close their threads' database connections (tests; before a database is dropped)."""
    global _pool, _long_pool
    with _pools_lock:
        retired = [_pool, _long_pool]
        _pool = _long_pool = None
    for old in retired:
        if old is not None:
            old.retire()
