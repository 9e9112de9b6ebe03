"""WORKER_CPU_SLOTS: how many pool threads run at once, who gives a slot away while waiting, and what keeps
a call that blocks without saying so from holding up the others."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from orchestrator import workers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_turn(settings, monkeypatch) -> Iterator[None]:
    settings.WORKER_CPU_SLOTS = 1
    settings.WORKER_THREADS = 4
    monkeypatch.setattr(workers, "STALL_SECONDS", 60.0)  # these tests' waits are deliberate, not stalls
    workers.reset_worker_threads()
    yield
    workers.reset_worker_threads()


class Overlap:
    """Records how many of the tracked calls were inside their body at the same time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def call(self, wait: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            try:
                wait()
            finally:
                with self.lock:
                    self.inside -= 1

        return body


def _sleep() -> None:
    time.sleep(0.15)


def _sleep_off_turn() -> None:
    with workers.cpu_turn_released():
        time.sleep(0.15)


async def _together(*calls: Callable[[], None], long: bool = False) -> None:
    run = workers.run_long if long else workers.run_blocking
    await asyncio.gather(*(run(call) for call in calls))


def test_with_one_slot_pool_calls_take_turns(one_turn: None) -> None:
    overlap = Overlap()

    asyncio.run(_together(*(overlap.call(_sleep) for _ in range(3))))

    assert overlap.most == 1


def test_a_call_waiting_on_a_provider_gives_its_turn_away(one_turn: None) -> None:
    overlap = Overlap()

    asyncio.run(_together(*(overlap.call(_sleep_off_turn) for _ in range(3))))

    assert overlap.most == 3


def test_a_call_inside_a_transaction_keeps_its_turn_while_it_waits(one_turn: None) -> None:
    from django.db import transaction

    overlap = Overlap()

    def in_transaction() -> None:
        with transaction.atomic():
            _sleep_off_turn()

    asyncio.run(_together(*(overlap.call(in_transaction) for _ in range(2))))

    assert overlap.most == 1


def test_long_polls_take_no_turn(one_turn: None) -> None:
    overlap = Overlap()

    async def both() -> None:
        await asyncio.gather(_together(overlap.call(_sleep), long=True), _together(overlap.call(_sleep)))

    asyncio.run(both())

    assert overlap.most == 2


def test_a_live_adapter_gives_its_turn_away_while_it_calls_the_provider(one_turn: None) -> None:
    from channels_app.providers.registry import live

    class SlowAdapter:
        name = "slow"

        def send(self) -> str:
            time.sleep(0.15)
            return "sent"

    overlap = Overlap()
    adapter = live(SlowAdapter())
    results: list[str] = []

    def send() -> None:
        results.append(adapter.send())

    asyncio.run(_together(*(overlap.call(send) for _ in range(3))))

    assert overlap.most == 3 and results == ["sent"] * 3
    assert isinstance(adapter, SlowAdapter) and adapter.name == "slow"


def test_a_call_blocked_without_saying_so_holds_the_others_up_only_briefly(settings, monkeypatch) -> None:
    settings.WORKER_CPU_SLOTS = 1
    settings.WORKER_THREADS = 4
    monkeypatch.setattr(workers, "STALL_SECONDS", 0.05)
    workers.reset_worker_threads()
    release = threading.Event()
    finished: list[int] = []

    async def scenario() -> None:
        blocked = asyncio.ensure_future(workers.run_blocking(release.wait, 60))  # no CPU, no provider: a stall
        await asyncio.sleep(0)
        try:
            # Queued behind the blocked call's slot, they run once the pool sees it make no progress.
            await asyncio.wait_for(asyncio.gather(*(workers.run_blocking(finished.append, n) for n in range(3))), 30)
            assert not blocked.done()
        finally:
            release.set()
        assert await blocked is True

    try:
        asyncio.run(scenario())
    finally:
        workers.reset_worker_threads()

    assert sorted(finished) == [0, 1, 2]
