"""Keep a server process's threads on one CPU (docs/decisions/010-one-cpu.md).

Every request is handed from the event loop's thread to a worker thread and back (orchestrator/workers.py),
and Python runs one of the two at a time. Left to the kernel on a machine with two or more CPUs, the two
threads run on different CPUs: each hand-over wakes a thread on the other CPU, and what both threads touch
(the request, the response, the reference counts of shared objects) moves between the CPUs' caches. That
cost 20–30 % more CPU per webhook at 20 senders than the same code with its threads on one CPU, where a
hand-over is a switch between two threads of one CPU (bench/HISTORY.md). Python's interpreter lock already
keeps the process to about one CPU's worth of work, so one CPU takes nothing from it.

Which CPU: at start, one of the CPUs the process may run on, picked by process id, so that the processes of
`uvicorn --workers N`, started one after another, land on different CPUs. Then, every `CHECK_SECONDS`, a
thread of ours reads how busy each of those CPUs was with other work (`/proc/stat`, less our own CPU time on
ours) and moves all our threads to the least busy one if it had at least `MOVE_MARGIN` of a CPU less: a busy
neighbour tied to the same CPU does not hold us there while another CPU is free. Two of our processes that
find each other on one CPU would both see the other as the neighbour and could move together, again and
again; so the checks come at jittered times and a warranted move is made with even odds, and one of them
moves first.

Only in a server started with the ASGI lifespan (uvicorn, `make run`), on Linux, with a Python that has the
interpreter lock, when the process may run on more than one CPU, and unless `SERVER_ONE_CPU=false`.
"""

from __future__ import annotations

import logging
import os
import random
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
# Of one CPU's time over a check: a move costs cold caches, so only a clearly less busy CPU is worth one.
MOVE_MARGIN = 0.3
PROC_STAT = Path("/proc/stat")
THREADS_DIR = Path("/proc/self/task")


@dataclass(frozen=True)
class CpuTimes:
    """Clock ticks since boot, per CPU: (busy, total)."""

    per_cpu: dict[int, tuple[int, int]]


def read_cpu_times(text: str) -> CpuTimes:
    """Parse /proc/stat's `cpuN` lines. Busy is user, nice, system, irq, softirq and steal (time the
    hypervisor gave to others is no more ours than a neighbour's); idle and iowait are not."""
    per_cpu: dict[int, tuple[int, int]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        fields = [int(value) for value in rest.split()[:8]]
        fields += [0] * (8 - len(fields))
        user, nice, system, idle, iowait, irq, softirq, steal = fields
        busy = user + nice + system + irq + softirq + steal
        per_cpu[int(name[3:])] = (busy, busy + idle + iowait)
    return CpuTimes(per_cpu)


def others_load(before: CpuTimes, after: CpuTimes, *, ours_on: int | None, our_ticks: float) -> dict[int, float]:
    """Each CPU's busy share between two readings, less our own share on the CPU our threads were on."""
    load: dict[int, float] = {}
    for cpu, (busy_after, total_after) in after.per_cpu.items():
        busy_before, total_before = before.per_cpu.get(cpu, (busy_after, total_after))
        elapsed = total_after - total_before
        if elapsed <= 0:
            continue
        busy = busy_after - busy_before - (our_ticks if cpu == ours_on else 0.0)
        load[cpu] = min(1.0, max(0.0, busy / elapsed))
    return load


def first_cpu(allowed: list[int], pid: int) -> int:
    return sorted(allowed)[pid % len(allowed)]


def better_cpu(allowed: list[int], load: dict[int, float], current: int) -> int:
    """The CPU to move to: the least busy with others' work if it is at least MOVE_MARGIN less busy than
    ours, else ours (a CPU the reading lacks counts as fully busy)."""
    best = min(sorted(allowed), key=lambda cpu: load.get(cpu, 1.0))
    if load.get(current, 1.0) - load.get(best, 1.0) >= MOVE_MARGIN:
        return best
    return current


def keep_threads_on(cpu: int) -> int:
    """Tie every thread of this process to `cpu`; returns how many were tied. Threads started later inherit
    it from the thread that starts them."""
    tied = 0
    for entry in THREADS_DIR.iterdir():
        try:
            os.sched_setaffinity(int(entry.name), {cpu})
        except (OSError, ValueError):  # the thread ended meanwhile
            continue
        tied += 1
    return tied


def _process_ticks() -> float:
    times = os.times()
    return (times.user + times.system) * os.sysconf("SC_CLK_TCK")


class CpuPlacement:
    """Ties the process's threads to one CPU and moves them when another CPU is clearly less busy."""

    def __init__(
        self,
        allowed: list[int],
        *,
        check_seconds: float = CHECK_SECONDS,
        read_stat: Callable[[], str] = PROC_STAT.read_text,
        process_ticks: Callable[[], float] = _process_ticks,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.allowed = sorted(allowed)
        self.check_seconds = check_seconds
        self.read_stat = read_stat
        self.process_ticks = process_ticks
        self.chance = chance
        self.cpu = first_cpu(self.allowed, os.getpid())
        self.stopped = threading.Event()

    def start(self) -> None:
        if not keep_threads_on(self.cpu):  # not allowed here (a sandbox refusing sched_setaffinity)
            logger.info("Server threads left to the kernel: this process may not choose its CPUs")
            return
        logger.info("Server threads kept on CPU %d of %s (SERVER_ONE_CPU)", self.cpu, self.allowed)
        threading.Thread(target=self._watch, name="cpu-placement", daemon=True).start()

    def _watch(self) -> None:
        before, ticks_before = read_cpu_times(self.read_stat()), self.process_ticks()
        while not self.stopped.wait(self.check_seconds * (0.8 + 0.4 * self.chance())):
            self.check(before, ticks_before)
            before, ticks_before = read_cpu_times(self.read_stat()), self.process_ticks()

    def check(self, before: CpuTimes, ticks_before: float) -> None:
        after, ticks_after = read_cpu_times(self.read_stat()), self.process_ticks()
        load = others_load(before, after, ours_on=self.cpu, our_ticks=ticks_after - ticks_before)
        cpu = better_cpu(self.allowed, load, self.cpu)
        if cpu != self.cpu and self.chance() < 0.5:
            logger.info(
                "Server threads moved from CPU %d (%.0f %% busy with other work) to CPU %d (%.0f %%)",
                self.cpu, 100 * load.get(self.cpu, 1.0), cpu, 100 * load.get(cpu, 1.0),
            )
            self.cpu = cpu
        # Every check, not only on a move: a thread started during a move may have inherited the old CPU.
        keep_threads_on(self.cpu)


def applies() -> list[int]:
    """The CPUs to choose from, or [] where one CPU does not apply (see the module docstring)."""
    if not settings.SERVER_ONE_CPU or not hasattr(os, "sched_setaffinity") or not THREADS_DIR.is_dir():
        return []
    if sysconfig.get_config_var("Py_GIL_DISABLED"):  # threads run in parallel: one CPU would serialise them
        return []
    allowed = sorted(os.sched_getaffinity(0))
    return allowed if len(allowed) > 1 else []


def keep_server_on_one_cpu() -> None:
    """Start-up hook (orchestrator.asgi)."""
    allowed = applies()
    if allowed:
        CpuPlacement(allowed).start()
