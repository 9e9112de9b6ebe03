"""A server's threads on one CPU (orchestrator/cpu_placement.py): all of them, on the CPU picked, moved when
another CPU is clearly less busy, and left to the kernel when turned off or outside a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cpu_placement import MOVE_MARGIN, better_cpu, first_cpu, others_load, read_cpu_times
from tests.orchestrator.server_start import REPO_ROOT, after_server_start

TWO_CPUS = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and two CPUs"
)

# Once the server started (or only imported): one blocking call on the worker pool (so its thread exists),
# one more thread started, then each thread's CPUs.
THREADS = """
import asyncio, json, os, threading
from orchestrator.workers import run_blocking

async def one_call():
    await run_blocking(lambda: None)

asyncio.run(one_call())
later = threading.Event()
threading.Thread(target=later.wait, daemon=True).start()
tasks = sorted(os.listdir("/proc/self/task"))
print(json.dumps({"threads": len(tasks), "cpus": sorted({tuple(sorted(os.sched_getaffinity(int(t)))) for t in tasks})}))
later.set()
"""


def _threads_after(tmp_path: Path, mode: str, *, cpus: str = "", **environ: str) -> dict[str, object]:
    prefix = ("taskset", "-c", cpus) if cpus else ()
    return after_server_start(tmp_path, mode, THREADS, prefix=prefix, **environ)


@TWO_CPUS
def test_a_started_server_keeps_every_thread_on_one_of_its_cpus_including_threads_started_later(tmp_path: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))

    placed = _threads_after(tmp_path, "lifespan")

    assert placed["threads"] >= 4  # the loop's, a worker's, the placement check's, and the one started last
    [cpus] = placed["cpus"]  # type: ignore[misc]
    assert len(cpus) == 1 and cpus[0] in allowed


@TWO_CPUS
def test_it_picks_only_among_the_cpus_the_process_was_given(tmp_path: Path) -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]

    placed = _threads_after(tmp_path, "lifespan", cpus=f"{first},{second}")

    [cpus] = placed["cpus"]  # type: ignore[misc]
    assert cpus[0] in (first, second) and len(cpus) == 1


@TWO_CPUS
def test_turned_off_or_outside_a_server_the_threads_are_left_to_the_kernel(tmp_path: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))

    assert _threads_after(tmp_path, "lifespan", SERVER_ONE_CPU="false")["cpus"] == [allowed]
    assert _threads_after(tmp_path, "import")["cpus"] == [allowed]  # tests, manage.py: no lifespan


def test_processes_started_one_after_another_land_on_different_cpus() -> None:
    assert [first_cpu([0, 1, 2, 3], pid) for pid in range(1000, 1004)] == [0, 1, 2, 3]
    assert first_cpu([5, 3], 7) == 5


STAT = """cpu  100 0 100 800 0 0 0 0 0 0
cpu0 {busy0} 0 0 {idle0} 0 0 0 0 0 0
cpu1 {busy1} 0 0 {idle1} 0 0 0 0 0 0
intr 12345
"""


def _stat(busy0: int, idle0: int, busy1: int, idle1: int) -> str:
    return STAT.format(busy0=busy0, idle0=idle0, busy1=busy1, idle1=idle1)


def test_it_counts_only_other_work_on_the_cpu_its_threads_are_on() -> None:
    before = read_cpu_times(_stat(1000, 1000, 1000, 1000))
    after = read_cpu_times(_stat(1450, 1050, 1100, 1400))  # 500 ticks each: cpu0 450 busy, cpu1 100 busy

    load = others_load(before, after, ours_on=0, our_ticks=400)

    assert load == {0: pytest.approx(0.1), 1: pytest.approx(0.2)}


def test_it_moves_off_a_cpu_a_neighbour_keeps_busy_and_stays_for_small_differences() -> None:
    assert better_cpu([0, 1], {0: 0.9, 1: 0.1}, current=0) == 1
    assert better_cpu([0, 1], {0: 0.1 + MOVE_MARGIN - 0.01, 1: 0.1}, current=0) == 0
    assert better_cpu([0, 1], {0: 0.0, 1: 0.0}, current=1) == 1
    assert better_cpu([0, 1, 2], {0: 0.8, 1: 0.6, 2: 0.2}, current=0) == 2
    assert better_cpu([0, 1], {1: 0.5}, current=0) == 1  # no reading of ours: taken as fully busy


@TWO_CPUS
@pytest.mark.parametrize("odds, moves", [(0.0, True), (0.7, False)])
def test_a_check_that_finds_its_cpu_busy_with_other_work_moves_every_thread_on_even_odds(
    tmp_path: Path, odds: float, moves: bool
) -> None:
    """The check itself, in a process of its own (it ties the threads of the process that runs it). A move
    it finds warranted is made with even odds, so two processes on one CPU do not move together."""
    first, second = sorted(os.sched_getaffinity(0))[:2]
    script = f"""
import json, os, threading
import django
django.setup()
from orchestrator.cpu_placement import CpuPlacement, read_cpu_times

readings = iter([
    "cpu{first} 1000 0 0 1000 0 0 0 0\\ncpu{second} 1000 0 0 1000 0 0 0 0\\n",
    "cpu{first} 1500 0 0 1000 0 0 0 0\\ncpu{second} 1050 0 0 1450 0 0 0 0\\n",  # {first} busy, not with our 10 ticks
])
placement = CpuPlacement([{first}, {second}], read_stat=lambda: next(readings), process_ticks=lambda: 10.0,
                         chance=lambda: {odds})
placement.cpu = {first}
placement.check(read_cpu_times(next(readings)), 0.0)
tasks = os.listdir("/proc/self/task")
print(json.dumps({{"cpu": placement.cpu, "cpus": sorted({{tuple(os.sched_getaffinity(int(t))) for t in tasks}})}}))
"""
    env = {**os.environ, "ENV_FILE": str(tmp_path / "absent.env"), "SECRET_KEY": "test-secret",
           "DJANGO_SETTINGS_MODULE": "orchestrator.settings", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr

    expected = second if moves else first
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"cpu": expected, "cpus": [[expected]]}
