"""Database work off the event loop, tried again when the database refuses it for the moment.

A lock held a moment too long or a dropped connection raises OperationalError; the next attempt a little
later usually succeeds. Only for work that is safe to repeat (one transaction that applies the same
change twice to the same effect): a retry must never write twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import OperationalError

from orchestrator.workers import run_blocking

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0)


async def run_blocking_retried(
    function: Callable[..., T], /, *args: Any, delays: tuple[float, ...] = TRANSIENT_RETRY_DELAYS, **kwargs: Any
) -> T:
    """run_blocking(function, …), tried again after each of `delays` while it raises OperationalError;
    the last attempt's error is raised."""
    for delay in delays:
        try:
            return await run_blocking(function, *args, **kwargs)
        except OperationalError as exc:
            logger.warning("%s was refused by the database (%s); trying again in %.2f s",
                           getattr(function, "__qualname__", function), exc, delay)
            await asyncio.sleep(delay)
    return await run_blocking(function, *args, **kwargs)
