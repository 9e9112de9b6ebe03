"""Erase the bodies of delivered inbound messages older than MESSAGE_BODY_RETENTION_DAYS and the transcripts
of calls that ended more than CALL_TRANSCRIPT_RETENTION_DAYS ago (metadata stays)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from channels_app.delivery.claims import message_bodies_purge
from voice.retention import call_contents_purge


class Command(BaseCommand):
    help = ("Erase delivered message bodies past MESSAGE_BODY_RETENTION_DAYS and call transcripts past "
            "CALL_TRANSCRIPT_RETENTION_DAYS (the delivery worker also does this).")

    def handle(self, *args: Any, **options: Any) -> None:
        erased = message_bodies_purge()
        calls = call_contents_purge()
        self.stdout.write(f"Erased {erased} message bodies (retention {settings.MESSAGE_BODY_RETENTION_DAYS} days) "
                          f"and the transcripts of {calls} calls (retention "
                          f"{settings.CALL_TRANSCRIPT_RETENTION_DAYS} days).")
