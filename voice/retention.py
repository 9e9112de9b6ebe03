"""Call content retention: what was said on a call is erased CALL_TRANSCRIPT_RETENTION_DAYS after it ended.

Message bodies have MESSAGE_BODY_RETENTION_DAYS (channels_app.delivery.claims.message_bodies_purge); a call's
transcript, its turns' texts and the spoken parts of its context are conversation content too, so they
get the same treatment. Metadata stays for usage, billing and audit: who called whom, when, how long,
the cost, how each turn was answered and how fast. The delivery worker runs this every few minutes, and
`manage.py purge_message_bodies` with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from voice.models import Call, CallTurn

# Context keys that hold what someone said or asked for: the call-on-behalf request's message and what the
# callee said to the secretary. The rest (names the agent gave, the answer's classification, error codes,
# costs) is metadata.
SPOKEN_CONTEXT_KEYS = ("message", "said")
# A call whose end was never reported (a lost final status callback) is erased this long after it began.
UNENDED_GRACE = timedelta(days=1)
# Even with 0 days, a call is left alone this long after its end was reported: the voice socket may still be
# writing its last turns and transcript, which must not land after the erasure.
SETTLE = timedelta(minutes=5)
BATCH = 200


def call_contents_purge(*, now: datetime | None = None) -> int:
    """Erase the content of calls that ended more than CALL_TRANSCRIPT_RETENTION_DAYS ago; returns how many."""
    now = now or timezone.now()
    cutoff = now - max(timedelta(days=settings.CALL_TRANSCRIPT_RETENTION_DAYS), SETTLE)
    due = Call.objects.filter(content_erased_at__isnull=True).filter(
        Q(ended_at__lte=cutoff) | Q(ended_at__isnull=True, created_at__lte=cutoff - UNENDED_GRACE)
    )
    erased = 0
    while True:
        with transaction.atomic():
            # Locked in batches, so a call still being written (its last turns) is not erased under the writer.
            calls = list(due.select_for_update().only("pk", "context")[:BATCH])
            if not calls:
                return erased
            for call in calls:
                call.transcript = []
                call.context = {k: v for k, v in call.context.items() if k not in SPOKEN_CONTEXT_KEYS}
                call.content_erased_at = now
            Call.objects.bulk_update(calls, ["transcript", "context", "content_erased_at"])
            CallTurn.objects.filter(call__in=calls).update(caller_text="", reply_text="", heard_text="")
        erased += len(calls)
