"""Call transcripts are erased CALL_TRANSCRIPT_RETENTION_DAYS after the call ended (voice.retention), as
message bodies are under MESSAGE_BODY_RETENTION_DAYS; who called whom, when, how long and the cost stay."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from voice.models import AnsweredBy, Call, CallTurn
from voice.retention import call_contents_purge

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(make_agent):
    return make_agent("agent-a")[0]


def a_call(agent, *, ended_days_ago: float | None, sid: str, started_days_ago: float | None = None) -> Call:
    now = timezone.now()
    call = Call.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="outbound", status="completed",
        purpose="call_on_behalf", from_address="+14155550100", to_address="+14155550199", call_sid=sid,
        duration_seconds=42, cost=Decimal("0.021"),
        ended_at=None if ended_days_ago is None else now - timedelta(days=ended_days_ago),
        transcript=[{"at": "2026-11-01T10:00:00Z", "speaker": "caller", "text": "my card number is 4111"}],
        context={"requesterName": "Bob", "requesterPhone": "+14155550123", "message": "about the biopsy results",
                 "answer": "accepted", "said": "yes put him through"},
    )
    if started_days_ago is not None:
        Call.objects.filter(pk=call.pk).update(created_at=now - timedelta(days=started_days_ago))
    CallTurn.objects.create(call=call, sequence=1, caller_text="my card number is 4111", reply_text="Thanks, noted.",
                            answered_by=AnsweredBy.AGENT_SAMPLING, prompt_at=now, first_reply_at=now,
                            interrupted=True, heard_text="Thanks")
    return call


def test_it_erases_what_was_said_on_calls_past_retention_and_keeps_the_record(agent, settings):
    settings.CALL_TRANSCRIPT_RETENTION_DAYS = 30
    old = a_call(agent, ended_days_ago=31, sid="CA" + "1" * 32)
    recent = a_call(agent, ended_days_ago=29, sid="CA" + "2" * 32)

    out = StringIO()
    call_command("purge_message_bodies", stdout=out)

    assert "the transcripts of 1 calls (retention 30 days)" in out.getvalue()
    old.refresh_from_db()
    assert old.transcript == []
    assert old.context == {"requesterName": "Bob", "requesterPhone": "+14155550123", "answer": "accepted"}
    assert old.content_erased_at is not None
    assert (old.call_sid, old.status, old.duration_seconds, old.cost, old.to_address) == (
        "CA" + "1" * 32, "completed", 42, Decimal("0.021"), "+14155550199")
    turn = old.turns.get()
    assert (turn.caller_text, turn.reply_text, turn.heard_text) == ("", "", "")
    assert (turn.answered_by, turn.interrupted, turn.first_reply_ms) == (AnsweredBy.AGENT_SAMPLING, True, 0)

    recent.refresh_from_db()
    assert recent.transcript[0]["text"] == "my card number is 4111"
    assert recent.context["message"] == "about the biopsy results"
    assert recent.turns.get().caller_text == "my card number is 4111"
    assert recent.content_erased_at is None


def test_with_zero_days_an_ended_call_is_erased_at_the_next_pass_and_a_live_one_is_not(agent, settings):
    settings.CALL_TRANSCRIPT_RETENTION_DAYS = 0
    ended = a_call(agent, ended_days_ago=10 / (24 * 60), sid="CA" + "3" * 32)  # 10 minutes ago
    live = a_call(agent, ended_days_ago=None, sid="CA" + "4" * 32)
    # Its end just reported: the voice socket may still be writing the last turns, so it waits a few minutes.
    just_ended = a_call(agent, ended_days_ago=1 / (24 * 60), sid="CA" + "7" * 32)

    assert call_contents_purge() == 1

    assert Call.objects.get(pk=ended.pk).transcript == []
    assert Call.objects.get(pk=live.pk).transcript != []
    assert CallTurn.objects.get(call=live).caller_text == "my card number is 4111"
    assert Call.objects.get(pk=just_ended.pk).content_erased_at is None


def test_a_call_whose_end_was_never_reported_is_erased_a_day_after_retention(agent, settings):
    settings.CALL_TRANSCRIPT_RETENTION_DAYS = 30
    lost_end = a_call(agent, ended_days_ago=None, sid="CA" + "5" * 32, started_days_ago=30.5)
    stale = a_call(agent, ended_days_ago=None, sid="CA" + "6" * 32, started_days_ago=31.5)

    assert call_contents_purge() == 1

    assert Call.objects.get(pk=lost_end.pk).content_erased_at is None
    assert Call.objects.get(pk=stale.pk).content_erased_at is not None


def test_it_erases_each_call_once_and_in_batches(agent, settings):
    settings.CALL_TRANSCRIPT_RETENTION_DAYS = 1
    for n in range(205):  # more than one batch of 200
        a_call(agent, ended_days_ago=2, sid=f"CA{n:032d}")

    assert call_contents_purge() == 205
    assert call_contents_purge() == 0
    assert not CallTurn.objects.exclude(caller_text="").exists()
