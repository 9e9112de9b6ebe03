"""dashboard (contract §9): agents with spend against limits, 14-day series, failures, opt-outs, provider
health and alerts, scoped to the caller, in a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentLimits, OptOut, UsageBucket, UsageRecord
from agents.usage import window_start
from channels_app.models import Message
from tests.admin_ui.conftest import Tenant, bearer
from voice.models import Call

pytestmark = pytest.mark.django_db


def message(tenant: Tenant, **fields: Any) -> Message:
    defaults = {"direction": "outbound", "channel": "sms", "from_address": "+14155550101",
                "to_address": "+14155550123", "body": "hi", "status": "sent", "provider": "twilio"}
    created_at = fields.pop("created_at", None)
    row = Message.objects.create(agent=tenant.agent, organization=tenant.org, **{**defaults, **fields})
    if created_at is not None:
        Message.objects.filter(pk=row.pk).update(created_at=created_at)
    return row


def bucket(scope: str, scope_id: str, window: str, spend: str) -> None:
    UsageBucket.objects.create(scope=scope, scope_id=scope_id, window=window,
                               window_start=window_start(window, timezone.now()), spend=Decimal(spend))


@pytest.fixture
def activity(tenants: dict[str, Tenant]) -> dict[str, Tenant]:
    a, b = tenants["a"], tenants["b"]
    now = timezone.now()
    message(a)
    message(a, created_at=now - timedelta(days=3))
    message(a, status="failed", error_code="21211", error_message="The 'To' number is not valid.")
    message(a, direction="inbound", status="received", callback_attempts=2)
    message(b, status="undelivered", provider="twilio", error_code="30003", error_message="Unreachable")
    Call.objects.create(agent=a.agent, organization=a.org, direction="outbound", from_address="+14155550101",
                        to_address="+14155550123", duration_seconds=90)
    UsageRecord.objects.create(agent=a.agent, organization=a.org, action_type="message", channel="sms",
                               provider_cost=Decimal("0.0083"))
    UsageRecord.objects.create(agent=b.agent, organization=b.org, action_type="message", channel="sms",
                               provider_cost=Decimal("1.5"))
    OptOut.objects.create(agent=a.agent, channel="sms", contact="+14155550123", keyword="STOP")
    AgentLimits.objects.filter(agent=a.agent).update(max_spend_per_day=Decimal("1.00"))
    bucket("agent", "agent-a", "day", "0.85")
    bucket("agent", "agent-a", "month", "0.85")
    a.org.max_spend_per_month = Decimal("10")
    a.org.save()
    bucket("org", "org-a", "month", "10")
    return tenants


def dashboard(token: str) -> dict[str, Any]:
    response = Client().get("/admin/api/dashboard", **bearer(token))
    assert response.status_code == 200, response.content
    return response.json()


def test_an_org_token_sees_only_its_own_organization(activity: dict[str, Tenant]) -> None:
    body = dashboard(activity["a"].token)

    assert [agent["agentId"] for agent in body["agents"]] == ["agent-a"]
    assert [org["orgId"] for org in body["organizations"]] == ["org-a"]
    usage = body["usage"]
    assert usage["totalMessages"] == 4
    assert usage["todayActions"] == 1
    assert usage["totalCost"] == pytest.approx(0.0083)
    assert usage["totalCalls"] == 1 and usage["callMinutes"] == 1.5
    assert body["deliveryFailures"]["count"] == 1
    assert body["deliveryFailures"]["recent"][0]["errorCode"] == "21211"
    assert body["optOuts"]["total"] == 1 and body["optOuts"]["byChannel"] == {"sms": 1}
    assert "30003" not in str(body) and "Unreachable" not in str(body)


def test_a_call_of_a_few_seconds_counts_in_call_minutes(activity: dict[str, Tenant]) -> None:
    a = activity["a"]
    Call.objects.create(agent=a.agent, organization=a.org, direction="outbound", from_address="+14155550101",
                        to_address="+14155550124", duration_seconds=2)

    assert dashboard(a.token)["usage"]["callMinutes"] == 1.53  # 92 s


def test_the_super_admin_sees_every_organization(activity: dict[str, Tenant], orchestrator_token: str) -> None:
    body = dashboard(orchestrator_token)
    assert [agent["agentId"] for agent in body["agents"]] == ["agent-a", "agent-b"]
    assert body["usage"]["totalMessages"] == 5
    assert body["usage"]["totalCost"] == pytest.approx(1.5083)
    assert body["deliveryFailures"]["count"] == 2


def test_agents_carry_channels_connection_and_spend_against_their_limits(activity: dict[str, Tenant]) -> None:
    agent = dashboard(activity["a"].token)["agents"][0]
    assert agent["channels"] == ["sms", "email", "voice"]
    assert agent["connected"] is False
    assert agent["blockedChannels"] == []
    assert agent["spend"] == {"today": 0.85, "month": 0.85, "dayLimit": 1.0, "monthLimit": 500.0,
                              "dayRatio": 0.85, "monthRatio": 0.0017}
    assert agent["callbacksFailing"] == 1


def test_the_series_covers_fourteen_days_ending_today(activity: dict[str, Tenant]) -> None:
    series = dashboard(activity["a"].token)["series"]
    today = timezone.now().date()
    assert len(series) == 14
    assert series[-1]["date"] == today.isoformat()
    assert series[0]["date"] == (today - timedelta(days=13)).isoformat()
    assert series[-1] == {"date": today.isoformat(), "inbound": 1, "outbound": 2, "failed": 1, "calls": 1,
                          "cost": 0.0083}
    assert series[-4]["outbound"] == 1


def test_alerts_name_spend_near_and_at_cap_callbacks_and_provider_errors(activity: dict[str, Tenant]) -> None:
    alerts = dashboard(activity["a"].token)["alerts"]
    kinds = {(alert["kind"], alert.get("agentId") or alert.get("orgId") or alert.get("provider")) for alert in alerts}
    assert ("spend_near_cap", "agent-a") in kinds
    assert ("spend_cap_reached", "org-a") in kinds
    assert ("callbacks_failing", "agent-a") in kinds
    assert ("provider_error", "twilio") in kinds
    assert all(alert["level"] in ("warning", "critical") and alert["message"] for alert in alerts)


def test_services_report_configuration_readiness_and_the_last_error(activity: dict[str, Tenant]) -> None:
    services = dashboard(activity["a"].token)["services"]
    assert set(services) == {"twilio", "resend", "elevenlabs", "line"}
    twilio = services["twilio"]
    assert twilio["configured"] is False and twilio["readiness"] == "not_configured" and twilio["mode"] == "live"
    assert twilio["lastError"]["code"] == "21211"
    assert services["resend"]["lastError"] is None


def test_the_query_count_does_not_grow_with_agents(tenants: dict[str, Tenant], make_agent: Any,
                                                   orchestrator_token: str, monkeypatch: Any) -> None:
    # The auth throttle's read is skipped for an address found clean within the last second (a deadline set
    # by the request that read it, maybe an earlier test's): on a slow machine the two measured requests
    # could straddle that deadline and differ by that one read. An address of its own, found clean by a
    # first request, stays clean for the whole test.
    from agents import authentication

    monkeypatch.setattr(authentication, "NOT_THROTTLED_SECONDS", 3600.0)
    client = Client(REMOTE_ADDR="192.0.2.135")

    def get_dashboard() -> None:
        response = client.get("/admin/api/dashboard", **bearer(orchestrator_token))
        assert response.status_code == 200, response.content

    get_dashboard()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            get_dashboard()
        return len(captured)

    message(tenants["b"], status="failed", error_code="1")
    queries()  # a first request may set the connection up (PostgreSQL)
    before = queries()
    for n in range(5):
        agent, _token = make_agent(f"extra-{n}", org=tenants["a"].org)
        message(Tenant(tenants["a"].org, "", agent, ""), status="failed", error_code="1")
    assert queries() == before
    assert before < 30
