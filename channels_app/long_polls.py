"""Caps on concurrent long polls (`comms_wait_for_message`, `GET /api/v1/wait-for-message`).

A long poll holds a thread of the process's long-call pool (`LONG_CALL_THREADS`) for up to a minute.
Without a cap per principal, one agent opening many polls took every thread, and another
organization's one-second poll waited for the whole pool (issue 14). Each agent may hold
`LONG_POLLS_PER_AGENT` polls at once and each organization `LONG_POLLS_PER_ORG`; one more is refused
at once with 429 `rate_limited` (`limitType` `long_polls_per_agent` or `long_polls_per_org`) and a
`retryAfter` of when the earliest poll it waits behind ends.

Counted per process, on purpose: the resource they share is this process's thread pool, and each
process has its own (a deployment of N processes lets an agent hold N x the cap, one share per pool).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator

from django.conf import settings

from orchestrator.errors import ApiError

_lock = threading.Lock()
# Key ("agent:<id>" / "org:<id>") -> the monotonic deadlines of the polls it holds now.
_held: dict[str, list[float]] = {}


@contextlib.contextmanager
def long_poll_slot(*, agent_id: str, org_id: str, timeout: float) -> Iterator[None]:
    """Hold one long-poll slot of the agent and of its organization for the poll's duration, or 429."""
    now = time.monotonic()
    deadline = now + timeout
    keys = (
        (f"agent:{agent_id}", settings.LONG_POLLS_PER_AGENT, "long_polls_per_agent", "this agent"),
        (f"org:{org_id}", settings.LONG_POLLS_PER_ORG, "long_polls_per_org", "this organization"),
    )
    with _lock:
        for key, cap, limit_type, whose in keys:
            held = _held.get(key, [])
            if len(held) >= cap:
                retry_after = max(1, math.ceil(min(held) - now))
                raise ApiError(
                    429, "rate_limited", f"{whose.capitalize()} already has {len(held)} long polls waiting.",
                    retry_after=retry_after, limitType=limit_type,
                    hint="Wait on one poll at a time (without `channel` it returns every channel), or use a live MCP session.",
                )
        for key, *_ in keys:
            _held.setdefault(key, []).append(deadline)
    try:
        yield
    finally:
        with _lock:
            for key, *_ in keys:
                remaining = _held.get(key)
                if remaining is not None:
                    remaining.remove(deadline)
                    if not remaining:
                        del _held[key]
