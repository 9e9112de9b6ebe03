"""The §6.2 policy checks: each refusal with its code and retry information, and their order."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction

from agents.models import AgentLimits, AgentStatus, OptOut, UsageBucket
from agents.usage import usage_reserve
from channels_app.models import Direction, Message
from channels_app.policy import QuietHours, next_allowed_at, policy_check, recipient_time_zones
from channels_app.services import SendMessageInput, message_send
from orchestrator.errors import ApiError
from tests.ops_helpers import Api, agent_with_numbers

TO = "+14155550123"  # America/Los_Angeles


@pytest.fixture
def demo(settings):
    settings.DEMO_MODE = True


@pytest.fixture
def agent(db, default_org):
    return agent_with_numbers("agent-a", default_org, phone="+14155550100", whatsapp="+14155550101")


def send(token: str, **fields):
    return Api(token).post("send-message", {"to": TO, "body": "hello", **fields})


def set_limits(agent, **values) -> None:
    AgentLimits.objects.filter(agent=agent).update(**values)


# --- 1–3: active, blocked, opted out ------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_a_suspended_agent(demo, agent):
    row, token = agent
    row.__class__.objects.filter(pk=row.pk).update(status=AgentStatus.SUSPENDED)
    status, body = send(token)
    assert (status, body["code"]) == (403, "agent_inactive")


@pytest.mark.django_db
@pytest.mark.parametrize("blocked", [["sms"], ["*"]])
def test_it_refuses_a_blocked_channel(demo, agent, blocked):
    row, token = agent
    row.__class__.objects.filter(pk=row.pk).update(blocked_channels=blocked)
    status, body = send(token)
    assert (status, body["code"]) == (403, "channel_blocked")
    assert "hint" in body
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_it_refuses_a_contact_who_opted_out(demo, agent):
    row, token = agent
    OptOut.objects.create(agent=row, channel="sms", contact=TO, keyword="STOP")
    status, body = send(token)
    assert (status, body["code"]) == (403, "opted_out")
    assert "START" in body["hint"]
    # Another channel to the same person is not affected by an SMS STOP.
    status, _ = send(token, channel="email", to="ana@example.com", subject="s")
    assert status == 200


@pytest.mark.django_db
def test_it_checks_in_the_contract_order(demo, agent):
    row, token = agent
    OptOut.objects.create(agent=row, channel="sms", contact=TO, keyword="STOP")
    set_limits(row, max_actions_per_minute=0)
    row.__class__.objects.filter(pk=row.pk).update(blocked_channels=["sms"])
    assert send(token)[1]["code"] == "channel_blocked"
    row.__class__.objects.filter(pk=row.pk).update(blocked_channels=[])
    assert send(token)[1]["code"] == "opted_out"
    OptOut.objects.all().delete()
    assert send(token)[1]["code"] == "rate_limited"


@pytest.mark.django_db
def test_a_revoked_consent_stops_further_sends(demo, agent):
    _, token = agent
    api = Api(token)
    assert api.post("consent/record", {"contactAddress": TO, "channel": "sms", "consentType": "express"})[0] == 200
    status, check = api.get("consent/check", {"contactAddress": TO, "channel": "sms"})
    assert check["hasConsent"] is True and check["optedOut"] is False
    status, body = api.post("consent/revoke", {"contactAddress": "+1 (415) 555-0123", "channel": "sms"})
    assert status == 200 and body["revoked"] == 1 and body["contactAddress"] == TO
    assert send(token)[1]["code"] == "opted_out"
    _, check = api.get("consent/check", {"contactAddress": TO, "channel": "sms"})
    assert check["hasConsent"] is False and check["optedOut"] is True and check["canContact"] is False


# --- 4: quiet hours -----------------------------------------------------------------------------------


def at(hour_utc: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, 15, hour_utc, minute, tzinfo=UTC)


@pytest.mark.django_db
def test_it_refuses_a_call_in_the_recipients_quiet_hours_and_says_when_it_may(agent):
    row, _ = agent
    # 06:00 UTC is 23:00 in Los Angeles (PDT): quiet until 08:00 local = 15:00 UTC.
    with pytest.raises(ApiError) as refusal:
        policy_check(agent=row, channel="voice", to=TO, now=at(6))
    body = refusal.value.body()
    assert (refusal.value.status, body["code"]) == (403, "quiet_hours")
    assert body["nextAllowedAt"] == "2026-06-15T15:00:00Z"
    assert body["retryAfter"] == 9 * 3600


@pytest.mark.django_db
def test_it_allows_calls_inside_the_allowed_hours_and_never_applies_quiet_hours_to_texts(agent):
    row, _ = agent
    policy_check(agent=row, channel="voice", to=TO, now=at(18))  # 11:00 in Los Angeles
    policy_check(agent=row, channel="sms", to=TO, now=at(6))  # 23:00, but a text


@pytest.mark.django_db
def test_recipient_timezone_wins_over_the_numbers_zone(agent):
    row, _ = agent
    # 06:00 UTC is 08:00 in Berlin (CEST): allowed there, though the number is Californian.
    policy_check(agent=row, channel="voice", to=TO, recipient_timezone="Europe/Berlin", now=at(6))
    with pytest.raises(ApiError) as refusal:
        policy_check(agent=row, channel="voice", to=TO, recipient_timezone="Mars/Olympus", now=at(6))
    assert refusal.value.code == "invalid_request" and refusal.value.field == "recipientTimezone"


@pytest.mark.django_db
def test_a_number_spanning_several_zones_is_quiet_if_any_zone_is(agent):
    row, _ = agent
    australian = "+61412345678"  # a mobile: every Australian zone, Perth to Lord Howe
    assert len(recipient_time_zones(to=australian, recipient_timezone=None)) > 3
    # 22:30 UTC: 08:30 in Sydney (allowed) but 06:30 in Perth (quiet).
    with pytest.raises(ApiError) as refusal:
        policy_check(agent=row, channel="voice", to=australian, now=at(22, 30))
    allowed_at = datetime.fromisoformat(refusal.value.extra["nextAllowedAt"].replace("Z", "+00:00"))
    # libphonenumber also lists Christmas Island and the Cocos Islands (UTC+6:30): 08:00 there is 01:30 UTC.
    assert allowed_at == datetime(2026, 6, 16, 1, 30, tzinfo=UTC)


def test_next_allowed_at_is_the_first_instant_every_zone_allows():
    from zoneinfo import ZoneInfo

    zones = [ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")]
    # 03:00 UTC = 23:00 New York, 20:00 Los Angeles: first common allowed instant is 08:00 LA = 15:00 UTC.
    assert next_allowed_at(window=QuietHours(8, 21), zones=zones, now=at(3)) == at(15)


# --- 5: rate limits and spend caps ---------------------------------------------------------------------


@pytest.mark.django_db
def test_it_rate_limits_per_minute_with_limit_type_and_retry_after(demo, agent):
    row, token = agent
    set_limits(row, max_actions_per_minute=2)
    assert send(token)[0] == 200 and send(token)[0] == 200
    response = Api(token).client.post("/api/v1/send-message", data={"to": TO, "body": "x"},
                                      content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    body = response.json()
    assert response.status_code == 429
    assert (body["code"], body["limitType"]) == ("rate_limited", "per_minute")
    assert 1 <= body["retryAfter"] <= 60
    assert response["Retry-After"] == str(body["retryAfter"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "limit_type"), [("max_actions_per_hour", "per_hour"), ("max_actions_per_day", "per_day")]
)
def test_it_rate_limits_per_hour_and_per_day(demo, agent, field, limit_type):
    row, token = agent
    set_limits(row, **{field: 1})
    assert send(token)[0] == 200
    status, body = send(token)
    assert (status, body["code"], body["limitType"]) == (429, "rate_limited", limit_type)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "limit_type"), [("max_spend_per_day", "spend_day"), ("max_spend_per_month", "spend_month")]
)
def test_it_stops_at_the_agents_spend_caps(demo, agent, field, limit_type):
    row, token = agent
    set_limits(row, **{field: Decimal("0.01")})  # one SMS (0.0083) fits, two do not
    assert send(token)[0] == 200
    status, body = send(token)
    assert (status, body["code"], body["limitType"]) == (429, "spend_limit_reached", limit_type)
    assert body["retryAfter"] > 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "limit_type"), [("max_spend_per_day", "org_spend_day"), ("max_spend_per_month", "org_spend_month")]
)
def test_it_stops_at_the_organizations_spend_caps_across_its_agents(demo, agent, default_org, field, limit_type):
    _, token_a = agent
    _, token_b = agent_with_numbers("agent-b", default_org, phone="+14155550102")
    default_org.__class__.objects.filter(pk=default_org.pk).update(**{field: Decimal("0.01")})
    assert send(token_a)[0] == 200
    status, body = send(token_b)
    assert (status, body["code"], body["limitType"]) == (429, "spend_limit_reached", limit_type)


@pytest.mark.django_db
def test_it_limits_calls_a_day_to_one_number(agent):
    row, _ = agent
    set_limits(row, max_calls_per_day_same_number=2)
    limits = AgentLimits.objects.get(agent=row)
    for _ in range(2):
        with transaction.atomic():
            usage_reserve(agent=row, limits=limits, organization=row.organization, cost=Decimal("0"), call_to=TO)
    with pytest.raises(ApiError) as refusal, transaction.atomic():
        usage_reserve(agent=row, limits=limits, organization=row.organization, cost=Decimal("0"), call_to=TO)
    assert refusal.value.extra["limitType"] == "calls_per_number"
    with transaction.atomic():  # another number is fine
        usage_reserve(agent=row, limits=limits, organization=row.organization, cost=Decimal("0"),
                      call_to="+14155550199")


@pytest.mark.django_db
def test_a_refused_action_counts_nothing(demo, agent):
    row, token = agent
    set_limits(row, max_actions_per_hour=1)
    send(token)
    send(token)
    minute = UsageBucket.objects.get(scope="agent", scope_id=row.pk, window="minute")
    assert minute.actions == 1


@pytest.mark.django_db
def test_limit_checks_touch_a_fixed_number_of_rows_however_long_the_history(demo, agent, django_assert_max_num_queries):
    row, token = agent
    for _ in range(30):
        send(token)
    # Token (with agent and limits), opt-out and sender; the row, the usage record and the counters (BEGIN,
    # INSERT, INSERT, one UPDATE … RETURNING, COMMIT); after the provider call, the outcome (one UPDATE)
    # — the same however many messages and usage rows came before. Two reads may join on any one send,
    # whatever the history: the failed-auth throttle is read again once its 1 s "not throttled" memory
    # has lapsed, and a new minute's counter row is created once a minute (30 sends on a busy CI
    # machine take longer than either).
    with django_assert_max_num_queries(10 + 2):
        assert send(token)[0] == 200


def reserve(row, cost: str = "0.01"):
    limits = AgentLimits.objects.get(agent=row)
    with transaction.atomic():
        return usage_reserve(agent=row, limits=limits, organization=row.organization, cost=Decimal(cost))


@pytest.mark.django_db
def test_it_reports_the_first_limit_in_order_when_several_refuse(agent):
    row, _ = agent
    reserve(row)
    set_limits(row, max_actions_per_hour=1, max_actions_per_day=1, max_spend_per_month=Decimal("0"))
    with pytest.raises(ApiError) as refusal:
        reserve(row)
    assert (refusal.value.code, refusal.value.extra["limitType"]) == ("rate_limited", "per_hour")
    set_limits(row, max_actions_per_hour=100)
    with pytest.raises(ApiError) as refusal:
        reserve(row)
    assert (refusal.value.code, refusal.value.extra["limitType"]) == ("rate_limited", "per_day")
    set_limits(row, max_actions_per_day=100)
    with pytest.raises(ApiError) as refusal:
        reserve(row)
    assert (refusal.value.code, refusal.value.extra["limitType"]) == ("spend_limit_reached", "spend_month")


@pytest.mark.django_db
def test_it_allows_spend_up_to_the_cap_exactly(agent):
    row, _ = agent
    set_limits(row, max_spend_per_day=Decimal("0.03"))
    for _ in range(3):
        reserve(row)
    with pytest.raises(ApiError) as refusal:
        reserve(row)
    assert refusal.value.extra["limitType"] == "spend_day"
    day = UsageBucket.objects.get(scope="agent", scope_id=row.pk, window="day")
    assert (day.actions, day.spend) == (3, Decimal("0.03"))


@pytest.mark.django_db
def test_a_refusal_counts_nothing_even_when_the_caller_carries_on(agent):
    row, _ = agent
    set_limits(row, max_actions_per_hour=2)
    reserve(row)
    reserve(row)  # the rows' ids are known now: counted and checked in one statement
    with transaction.atomic():
        with pytest.raises(ApiError):
            usage_reserve(agent=row, limits=AgentLimits.objects.get(agent=row), organization=row.organization,
                          cost=Decimal("0.01"))
    hour = UsageBucket.objects.get(scope="agent", scope_id=row.pk, window="hour")
    assert (hour.actions, hour.spend) == (2, Decimal("0.02"))


@pytest.mark.django_db
def test_a_reservation_counts_only_in_its_own_rows_when_remembered_ids_went_stale(agent, default_org):
    from agents import usage

    row, _ = agent
    other, _ = agent_with_numbers("agent-b", default_org, phone="+14155550102")
    now = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)
    limits = AgentLimits.objects.get(agent=row)
    for agent_row in (row, other):
        with transaction.atomic():
            usage_reserve(agent=agent_row, limits=AgentLimits.objects.get(agent=agent_row),
                          organization=agent_row.organization, cost=Decimal("1"), now=now)
    # As after a database was recreated: the ids this process remembers for agent-a's rows are another's.
    a_key = next(key for key in usage._KNOWN_BUCKETS if key[0] == f"agent:{row.pk}")
    b_key = next(key for key in usage._KNOWN_BUCKETS if key[0] == f"agent:{other.pk}")
    usage._KNOWN_BUCKETS[a_key] = usage._KNOWN_BUCKETS[b_key]
    with transaction.atomic():
        usage_reserve(agent=row, limits=limits, organization=row.organization, cost=Decimal("1"), now=now)
    actions = {(b.scope_id, b.window): b.actions for b in UsageBucket.objects.filter(scope="agent")}
    assert actions == {(row.pk, "minute"): 2, (row.pk, "hour"): 2, (row.pk, "day"): 2, (row.pk, "month"): 2,
                       (other.pk, "minute"): 1, (other.pk, "hour"): 1, (other.pk, "day"): 1, (other.pk, "month"): 1}


@pytest.mark.django_db
def test_it_bumps_every_window_and_only_this_windows_rows(agent):
    row, _ = agent
    now = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)
    limits = AgentLimits.objects.get(agent=row)
    with transaction.atomic():  # a minute earlier: its minute row starts at a window start of this hour
        usage_reserve(agent=row, limits=limits, organization=row.organization, cost=Decimal("1"),
                      now=now - timedelta(minutes=1))
    with transaction.atomic():
        reservation = usage_reserve(agent=row, limits=limits, organization=row.organization, cost=Decimal("1"),
                                    now=now)
    counts = {(b.scope, b.window, b.window_start.minute, b.window_start.hour): b.actions
              for b in UsageBucket.objects.all()}
    assert counts == {
        ("agent", "minute", 59, 9): 1, ("agent", "minute", 0, 10): 1, ("agent", "hour", 0, 9): 1,
        ("agent", "hour", 0, 10): 1, ("agent", "day", 0, 0): 2, ("agent", "month", 0, 0): 2,
        ("org", "day", 0, 0): 2, ("org", "month", 0, 0): 2,
    }
    assert len(reservation.bucket_ids) == 6


@pytest.mark.django_db
def test_it_recreates_counter_rows_this_process_believed_to_exist(agent):
    row, _ = agent
    reserve(row)
    UsageBucket.objects.all().delete()
    reserve(row)
    assert UsageBucket.objects.count() == 6
    assert all(bucket.actions == 1 for bucket in UsageBucket.objects.all())


@pytest.mark.django_db
def test_a_refused_send_gives_back_the_reservation_on_every_window(demo, agent):
    from agents.usage import usage_release

    row, _ = agent
    reservation = reserve(row)
    usage_release(reservation=reservation)
    assert all((b.actions, b.spend) == (0, Decimal("0")) for b in UsageBucket.objects.all())


# --- 6: WhatsApp window -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_free_whatsapp_text_outside_the_24_hour_window(demo, agent):
    row, token = agent
    status, body = send(token, channel="whatsapp")
    assert (status, body["code"]) == (409, "whatsapp_window_closed")
    assert "templateId" in body["hint"]
    assert UsageBucket.objects.filter(actions__gt=0).count() == 0  # the reservation was rolled back


@pytest.mark.django_db
def test_it_allows_free_whatsapp_text_within_24_hours_of_the_contacts_message(demo, agent):
    row, token = agent
    inbound = Message.objects.create(agent=row, organization_id="default", direction=Direction.INBOUND,
                                     channel="whatsapp", from_address=TO, to_address="+14155550101", body="hi",
                                     status="received")
    assert send(token, channel="whatsapp")[0] == 200
    Message.objects.filter(pk=inbound.pk).update(created_at=inbound.created_at - timedelta(hours=25))
    assert send(token, channel="whatsapp")[0] == 409
    assert send(token, channel="whatsapp", templateId="HX" + "2" * 32)[0] == 200


# --- atomicity ------------------------------------------------------------------------------------------


def concurrent_sends(agent_ids: list[str], threads_count: int) -> list[str]:
    """Start `threads_count` sends at once (thread i sends as agent_ids[i % len]); what each one got:
    "sent", the refusal's code, or the name of any other exception (a deadlock would be one)."""
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        from django.db import connections

        from agents.models import Agent

        try:
            agent = Agent.objects.select_related("organization", "limits").get(pk=agent_ids[index % len(agent_ids)])
            barrier.wait()
            try:
                message_send(agent=agent, request=SendMessageInput(channel="sms", to=TO, body=f"n{index}"))
                outcome = "sent"
            except ApiError as exc:
                outcome = exc.code
            except Exception as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes.append(outcome)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(30)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_never_overshoot_a_limit(settings, default_org):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks and real concurrency (set DATABASE_URL=postgres://…)")
    settings.DEMO_MODE = True
    row, _ = agent_with_numbers("agent-c", default_org, phone="+14155550100")
    limit, threads_count = 7, 24
    set_limits(row, max_actions_per_minute=limit)
    outcomes = concurrent_sends(["agent-c"], threads_count)
    assert outcomes.count("sent") == limit, outcomes
    assert outcomes.count("rate_limited") == threads_count - limit
    assert UsageBucket.objects.get(scope="agent", scope_id="agent-c", window="minute").actions == limit
    assert Message.objects.filter(status="delivered").count() == limit


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_of_several_agents_share_the_organizations_cap_without_deadlock(settings, default_org):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks and real concurrency (set DATABASE_URL=postgres://…)")
    settings.DEMO_MODE = True
    for index, agent_id in enumerate(("agent-d", "agent-e", "agent-f")):
        agent_with_numbers(agent_id, default_org, phone=f"+1415555011{index}")
    # Each SMS costs 0.0083: a cap of 0.05 lets exactly 6 through, whichever agents send them.
    default_org.__class__.objects.filter(pk=default_org.pk).update(max_spend_per_day=Decimal("0.05"))
    threads_count = 18
    outcomes = concurrent_sends(["agent-d", "agent-e", "agent-f"], threads_count)
    assert outcomes.count("sent") == 6, outcomes
    assert outcomes.count("spend_limit_reached") == threads_count - 6, outcomes
    org_day = UsageBucket.objects.get(scope="org", scope_id=default_org.pk, window="day")
    assert (org_day.actions, org_day.spend) == (6, Decimal("0.0498"))
