"""The delivery worker: POSTs due callbacks (with retries and backoff); every few minutes it also erases
message bodies past retention and deletes expired failed-auth windows.

`make run` starts it beside the server. Safe to run several: each row is claimed with a conditional UPDATE.
"""

from __future__ import annotations

import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from agents.services import auth_failure_windows_prune
from channels_app import delivery

logger = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 600


def _attempt(message_id: str) -> bool | None:
    try:
        return delivery.callback_attempt(message_id)
    finally:
        close_old_connections()


class Command(BaseCommand):
    help = ("Deliver inbound messages to agents' callback URLs (retries with backoff), purge old bodies "
            "and expired failed-auth windows.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between passes (default 1).")
        parser.add_argument("--concurrency", type=int, default=8, help="Callbacks in flight at once (default 8).")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        if not options["once"]:
            signal.signal(signal.SIGTERM, self._stop)
            signal.signal(signal.SIGINT, self._stop)
        last_purge = 0.0
        with ThreadPoolExecutor(max_workers=max(1, options["concurrency"])) as pool:
            while True:
                close_old_connections()
                try:
                    due = delivery.callbacks_due(limit=100)
                    results = list(pool.map(_attempt, due))
                    if time.monotonic() - last_purge > PURGE_EVERY_SECONDS or options["once"]:
                        purged = delivery.message_bodies_purge()
                        pruned = auth_failure_windows_prune()
                        last_purge = time.monotonic()
                        if purged:
                            logger.info("Erased %d delivered message bodies past retention", purged)
                        if pruned:
                            logger.info("Deleted %d expired failed-auth windows", pruned)
                except Exception:
                    # A database hiccup must not end the worker; the next pass retries.
                    logger.exception("Delivery pass failed")
                    results, due = [], []
                if options["once"]:
                    delivered = sum(1 for r in results if r)
                    self.stdout.write(f"{len(due)} due, {delivered} delivered")
                    return
                if self.stopping:
                    return
                # A full batch means more are due: go again at once.
                if len(due) < 100:
                    time.sleep(options["interval"])
                if self.stopping:
                    return

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
