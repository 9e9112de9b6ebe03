"""The delivery worker: POSTs due callbacks (retries with backoff, and first attempts that never ran);
every few minutes it also erases message bodies and call transcripts past retention and deletes expired
failed-auth windows.

Every server process retries callbacks too (channels_app.callbacks); `make run` starts this worker beside
the server for the rest. Safe to run several: each row is claimed with a conditional UPDATE.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents.services import auth_failure_windows_prune
from channels_app import callbacks
from channels_app.delivery.claims import message_bodies_purge
from orchestrator.workers import run_blocking
from voice.retention import call_contents_purge

logger = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 600


def _maintain() -> None:
    purged = message_bodies_purge()
    calls = call_contents_purge()
    pruned = auth_failure_windows_prune()
    if purged:
        logger.info("Erased %d delivered message bodies past retention", purged)
    if calls:
        logger.info("Erased the transcripts of %d calls past retention", calls)
    if pruned:
        logger.info("Deleted %d expired failed-auth windows", pruned)


class Command(BaseCommand):
    help = ("Deliver inbound messages to agents' callback URLs (retries with backoff), purge old bodies "
            "and call transcripts, and expired failed-auth windows.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between passes (default 1).")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        if not options["once"]:
            signal.signal(signal.SIGTERM, self._stop)
            signal.signal(signal.SIGINT, self._stop)
        # Due at once: monotonic time counts from boot, so "0 = long ago" would skip a new machine's first 10 minutes.
        self.next_purge_at = time.monotonic()
        due, delivered = asyncio.run(
            callbacks.run_worker(
                interval=options["interval"], once=options["once"], on_pass=self._maintain, stopping=lambda: self.stopping
            )
        )
        if options["once"]:
            self.stdout.write(f"{due} due, {delivered} delivered")

    async def _maintain(self) -> None:
        if time.monotonic() >= self.next_purge_at:
            self.next_purge_at = time.monotonic() + PURGE_EVERY_SECONDS
            await run_blocking(_maintain)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
