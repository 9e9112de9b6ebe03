"""Reads behind the admin JSON API (contract §9): settings status, the agent list and the dashboard.

Every read is scoped to the caller: a super-admin sees every organization, an org admin (org token or
staff member) only its own. The dashboard aggregates in SQL: its query count does not grow with the
number of agents or messages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import (
    AddressKind,
    Agent,
    AgentStatus,
    ChannelAddress,
    OptOut,
    Organization,
    UsageBucket,
    UsageRecord,
)
from agents.principals import Principal, Role
from agents.selectors import agents_visible_to
from agents.services import default_email_address
from agents.usage import window_start
from channels_app.channel_registry import channels
from channels_app.models import Direction, Message, MessageKind, MessageStatus
from orchestrator.timestamps import iso_utc
from voice.models import Call

logger = logging.getLogger(__name__)

SERIES_DAYS = 14
# A cap at or above this share of its limit raises a "spend near cap" alert.
SPEND_ALERT_RATIO = Decimal("0.8")
PROVIDER_ERROR_ALERT_HOURS = 24
READINESS_CACHE_SECONDS = 60
RECENT_FAILURES = 10

# Provider → the /health/ready check that covers it (orchestrator.health.READINESS_KEYS).
PROVIDERS: dict[str, str] = {"twilio": "telephony", "resend": "email", "elevenlabs": "tts", "line": "line"}
FAILED_STATUSES = (MessageStatus.FAILED, MessageStatus.UNDELIVERED)


def money(value: Decimal | None) -> float:
    return float((value or Decimal("0")).quantize(Decimal("0.000001")))


def mask_secret(value: str | None, *, keep: int = 4) -> str | None:
    """`AC…cdef`: enough to recognise which account is configured, never enough to use it."""
    if not value:
        return None
    if len(value) <= keep * 2:
        return "…" + value[-2:]
    return f"{value[:2]}…{value[-keep:]}"


# --- status ---------------------------------------------------------------------------------------


def settings_status() -> dict[str, Any]:
    """What is configured, secrets masked (contract §9 `status`)."""
    return {
        "twilio": {
            "configured": bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN),
            "accountSid": mask_secret(settings.TWILIO_ACCOUNT_SID),
        },
        "elevenlabs": {
            "configured": bool(settings.ELEVENLABS_API_KEY),
            "defaultVoice": settings.ELEVENLABS_DEFAULT_VOICE,
        },
        "resend": {
            "configured": bool(settings.RESEND_API_KEY),
            "webhookSecretConfigured": bool(settings.RESEND_WEBHOOK_SECRET),
            "emailDomain": settings.EMAIL_DEFAULT_DOMAIN,
        },
        "line": {
            "configured": bool(settings.LINE_CHANNEL_ACCESS_TOKEN),
            "channelSecretConfigured": bool(settings.LINE_CHANNEL_SECRET),
        },
        "voice": {
            "defaultGreeting": settings.VOICE_DEFAULT_GREETING,
            "defaultLanguage": settings.VOICE_DEFAULT_LANGUAGE,
            "aiDisclosure": settings.VOICE_AI_DISCLOSURE,
        },
        "server": {
            "publicBaseUrl": settings.PUBLIC_BASE_URL,
            "demoMode": settings.DEMO_MODE,
            "environment": settings.ENVIRONMENT,
            "version": settings.VERSION,
        },
    }


# --- agents ---------------------------------------------------------------------------------------


def _live_addresses() -> Prefetch[Any]:
    return Prefetch(
        "addresses",
        queryset=ChannelAddress.objects.filter(released_at__isnull=True).order_by("created_at"),
        to_attr="live_addresses",
    )


def admin_agents(principal: Principal) -> list[Agent]:
    """The caller's agents (deprovisioned ones left out), with live addresses and limits: two queries."""
    return list(
        agents_visible_to(principal)
        .exclude(status=AgentStatus.DEPROVISIONED)
        .select_related("limits")
        .prefetch_related(_live_addresses())
        .order_by("organization_id", "id")
    )


def connected_agent_ids(agent_ids: list[str]) -> set[str]:
    from orchestrator.agent_registry import connected_agent_ids_sync

    try:
        return connected_agent_ids_sync(agent_ids)
    except Exception:
        # The registry's Redis being down must not take the admin down with it: nobody reads as connected.
        logger.warning("Agent registry lookup failed; showing every agent as not connected", exc_info=True)
        return set()


def _addresses(agent: Agent) -> dict[str, str]:
    found: dict[str, str] = {}
    for address in getattr(agent, "live_addresses", []):
        found.setdefault(address.kind, address.address)
    return found


def agent_channels(addresses: dict[str, str]) -> list[str]:
    """The channels an agent can use, in the registry's order: those with an address of their kind (a
    number gives SMS and voice), and those with a default address (every agent has email)."""
    return [spec.name for spec in channels() if spec.address_kind in addresses or spec.default_address]


def agent_list_entry(agent: Agent, *, connected: bool) -> dict[str, Any]:
    addresses = _addresses(agent)
    return {
        "agentId": agent.pk,
        "displayName": agent.display_name,
        "orgId": agent.organization_id,
        "phoneNumber": addresses.get(AddressKind.PHONE),
        "whatsappNumber": addresses.get(AddressKind.WHATSAPP),
        "emailAddress": addresses.get(AddressKind.EMAIL) or default_email_address(agent.pk),
        "status": agent.status,
        "channels": agent_channels(addresses),
        "blockedChannels": list(agent.blocked_channels or []),
        "connected": connected,
    }


def agents_for_admin(principal: Principal) -> list[dict[str, Any]]:
    agents = admin_agents(principal)
    connected = connected_agent_ids([agent.pk for agent in agents])
    return [agent_list_entry(agent, connected=agent.pk in connected) for agent in agents]


# --- dashboard ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The rows a caller may see, as filters on each model."""

    org_id: str | None  # None: every organization (super-admin)

    def filter(self, queryset: QuerySet[Any], path: str = "organization_id") -> QuerySet[Any]:
        return queryset if self.org_id is None else queryset.filter(**{path: self.org_id})


def _scope(principal: Principal) -> Scope:
    return Scope(None if principal.role is Role.SUPER_ADMIN else principal.org_id)


def _ratio(spent: Decimal, limit: Decimal | None) -> float | None:
    if limit is None or limit <= 0:
        return None
    return round(float(spent / limit), 4)


def _bucket_spend(scope: str, ids: list[str], now: datetime) -> dict[tuple[str, str], Decimal]:
    """(id, "day"|"month") → spend in the current window, from the limit counters (one query)."""
    if not ids:
        return {}
    day, month = window_start(UsageBucket.Window.DAY, now), window_start(UsageBucket.Window.MONTH, now)
    rows = UsageBucket.objects.filter(scope=scope, scope_id__in=ids).filter(
        Q(window=UsageBucket.Window.DAY, window_start=day) | Q(window=UsageBucket.Window.MONTH, window_start=month)
    ).values_list("scope_id", "window", "spend")
    return {(scope_id, window): spend for scope_id, window, spend in rows}


def _spend_entry(spent_today: Decimal, spent_month: Decimal, day_limit: Decimal | None,
                 month_limit: Decimal | None) -> dict[str, Any]:
    return {
        "today": money(spent_today),
        "month": money(spent_month),
        "dayLimit": money(day_limit) if day_limit is not None else None,
        "monthLimit": money(month_limit) if month_limit is not None else None,
        "dayRatio": _ratio(spent_today, day_limit),
        "monthRatio": _ratio(spent_month, month_limit),
    }


def _daily_series(scope: Scope, since: datetime, today: datetime) -> list[dict[str, Any]]:
    """Per UTC day: messages in and out, calls, delivery failures and cost (four grouped queries)."""
    days = [(today - timedelta(days=offset)).date() for offset in range(SERIES_DAYS - 1, -1, -1)]
    series: dict[Any, dict[str, Any]] = {
        day: {"date": day.isoformat(), "inbound": 0, "outbound": 0, "failed": 0, "calls": 0, "cost": 0.0}
        for day in days
    }
    messages = (
        scope.filter(Message.objects.filter(created_at__gte=since, kind=MessageKind.MESSAGE))
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(
            inbound=Count("pk", filter=Q(direction=Direction.INBOUND)),
            outbound=Count("pk", filter=Q(direction=Direction.OUTBOUND)),
            failed=Count("pk", filter=Q(direction=Direction.OUTBOUND, status__in=FAILED_STATUSES)),
        )
    )
    for row in messages:
        if row["day"] in series:
            series[row["day"]].update(inbound=row["inbound"], outbound=row["outbound"], failed=row["failed"])
    calls = (
        scope.filter(Call.objects.filter(created_at__gte=since))
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(count=Count("pk"))
    )
    for row in calls:
        if row["day"] in series:
            series[row["day"]]["calls"] = row["count"]
    costs = (
        scope.filter(UsageRecord.objects.filter(created_at__gte=since))
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(cost=Sum("provider_cost"))
    )
    for row in costs:
        if row["day"] in series:
            series[row["day"]]["cost"] = money(row["cost"])
    return list(series.values())


def _usage_totals(scope: Scope, today: datetime, month: datetime) -> dict[str, Any]:
    usage = scope.filter(UsageRecord.objects.all()).aggregate(
        total_cost=Sum("provider_cost"),
        today_actions=Count("pk", filter=Q(created_at__gte=today)),
        today_cost=Sum("provider_cost", filter=Q(created_at__gte=today)),
        month_cost=Sum("provider_cost", filter=Q(created_at__gte=month)),
        month_actions=Count("pk", filter=Q(created_at__gte=month)),
    )
    messages = scope.filter(Message.objects.filter(kind=MessageKind.MESSAGE)).aggregate(
        total=Count("pk"),
        today=Count("pk", filter=Q(created_at__gte=today)),
        inbound=Count("pk", filter=Q(direction=Direction.INBOUND)),
        outbound=Count("pk", filter=Q(direction=Direction.OUTBOUND)),
    )
    calls = scope.filter(Call.objects.all()).aggregate(
        total=Count("pk"), today=Count("pk", filter=Q(created_at__gte=today)), seconds=Sum("duration_seconds")
    )
    return {
        "totalMessages": messages["total"],
        "inboundMessages": messages["inbound"],
        "outboundMessages": messages["outbound"],
        "messagesToday": messages["today"],
        "totalCalls": calls["total"],
        "callsToday": calls["today"],
        # Two decimals, so that a short call does not read as none (2 s is 0.03, not 0.0).
        "callMinutes": round((calls["seconds"] or 0) / 60, 2),
        "todayActions": usage["today_actions"],
        "monthActions": usage["month_actions"],
        "totalCost": money(usage["total_cost"]),
        "todayCost": money(usage["today_cost"]),
        "monthCost": money(usage["month_cost"]),
    }


def _delivery_failures(scope: Scope, since: datetime) -> dict[str, Any]:
    failed = scope.filter(
        Message.objects.filter(direction=Direction.OUTBOUND, status__in=FAILED_STATUSES, created_at__gte=since)
    )
    recent = failed.order_by("-created_at").values(
        "id", "agent_id", "channel", "to_address", "status", "error_code", "error_message", "created_at"
    )[:RECENT_FAILURES]
    return {
        "count": failed.count(),
        "recent": [
            {
                "messageId": row["id"],
                "agentId": row["agent_id"],
                "channel": row["channel"],
                "to": row["to_address"],
                "status": row["status"],
                "errorCode": row["error_code"] or None,
                "errorMessage": row["error_message"] or None,
                "createdAt": iso_utc(row["created_at"]),
            }
            for row in recent
        ],
    }


def _opt_outs(scope: Scope, since: datetime) -> dict[str, Any]:
    rows = scope.filter(OptOut.objects.all(), "agent__organization_id")
    totals = rows.aggregate(total=Count("pk"), recent=Count("pk", filter=Q(created_at__gte=since)))
    by_channel = {row["channel"]: row["count"] for row in rows.values("channel").annotate(count=Count("pk"))}
    return {"total": totals["total"], "lastDays": totals["recent"], "byChannel": by_channel}


def _callbacks_failing(scope: Scope) -> dict[str, int]:
    """Agent → events whose callback failed at least once and that are still undelivered."""
    rows = (
        scope.filter(Message.objects.filter(delivered_at__isnull=True, callback_attempts__gt=0))
        .values("agent_id")
        .annotate(count=Count("pk"))
    )
    return {row["agent_id"]: row["count"] for row in rows}


def _readiness(check_name: str) -> str:
    """The provider's /health/ready answer, cached: a dashboard refresh must not call every provider."""
    from orchestrator.health import provider_check

    key = f"admin_ui:readiness:{check_name}:{settings.DEMO_MODE}"
    answer = cache.get(key)
    if answer is None:
        answer = provider_check(check_name)
        cache.set(key, answer, READINESS_CACHE_SECONDS)
    return str(answer)


def _services(scope: Scope, since: datetime) -> dict[str, Any]:
    configured = settings_status()
    errors = scope.filter(Message.objects.filter(created_at__gte=since).exclude(error_code=""))
    latest = {
        row["provider"]: row["last"] for row in errors.values("provider").annotate(last=Max("updated_at"))
    }
    services: dict[str, Any] = {}
    for provider, check_name in PROVIDERS.items():
        last_error = None
        if provider in latest:
            row = errors.filter(provider=provider, updated_at=latest[provider]).values(
                "error_code", "error_message", "channel", "updated_at").first()
            if row is not None:
                last_error = {
                    "code": row["error_code"],
                    "message": row["error_message"],
                    "channel": row["channel"],
                    "at": iso_utc(row["updated_at"]),
                }
        services[provider] = {
            "configured": configured[provider]["configured"],
            "mode": "sandbox" if settings.DEMO_MODE else "live",
            "readiness": _readiness(check_name),
            "lastError": last_error,
        }
    return services


def _alerts(agents: list[dict[str, Any]], organizations: list[dict[str, Any]], services: dict[str, Any],
            now: datetime) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []

    def spend_alerts(spend: dict[str, Any], subject: str, ids: dict[str, str]) -> None:
        for period, label in (("day", "daily"), ("month", "monthly")):
            ratio = spend[f"{period}Ratio"]
            if ratio is not None and ratio >= float(SPEND_ALERT_RATIO):
                reached = ratio >= 1
                alerts.append({
                    "kind": "spend_cap_reached" if reached else "spend_near_cap",
                    "level": "critical" if reached else "warning",
                    "message": f"{subject} has spent {ratio:.0%} of its {label} cap "
                               f"(${spend['today' if period == 'day' else 'month']:.4f} of "
                               f"${spend[f'{period}Limit']:.2f}).",
                    **ids,
                })

    for org in organizations:
        spend_alerts(org["spend"], f"Organization {org['name']}", {"orgId": org["orgId"]})
    for agent in agents:
        spend_alerts(agent["spend"], f"Agent {agent['displayName']}", {"agentId": agent["agentId"]})
        if agent["callbacksFailing"]:
            alerts.append({
                "kind": "callbacks_failing",
                "level": "warning",
                "message": f"{agent['callbacksFailing']} event(s) for agent {agent['displayName']} could not be "
                           "delivered to its callback URL and are being retried.",
                "agentId": agent["agentId"],
            })
    recent = now - timedelta(hours=PROVIDER_ERROR_ALERT_HOURS)
    for provider, service in services.items():
        error = service["lastError"]
        if error and datetime.fromisoformat(error["at"].replace("Z", "+00:00")) >= recent:
            alerts.append({
                "kind": "provider_error",
                "level": "warning",
                "message": f"{provider} refused a request at {error['at']}: {error['message'] or error['code']}",
                "provider": provider,
            })
        if service["readiness"] == "error":
            alerts.append({
                "kind": "provider_not_ready",
                "level": "critical",
                "message": f"{provider} is configured but failed its readiness check.",
                "provider": provider,
            })
    return alerts


def dashboard_for(principal: Principal, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard page shows, scoped to the caller (contract §9 `dashboard`)."""
    now = now or timezone.now()
    scope = _scope(principal)
    today = window_start(UsageBucket.Window.DAY, now)
    month = window_start(UsageBucket.Window.MONTH, now)
    since = today - timedelta(days=SERIES_DAYS - 1)

    agents = admin_agents(principal)
    agent_ids = [agent.pk for agent in agents]
    connected = connected_agent_ids(agent_ids)
    agent_spend = _bucket_spend(UsageBucket.Scope.AGENT, agent_ids, now)
    callbacks = _callbacks_failing(scope)
    agent_entries = []
    for agent in agents:
        limits = getattr(agent, "limits", None)
        entry = agent_list_entry(agent, connected=agent.pk in connected)
        entry["spend"] = _spend_entry(
            agent_spend.get((agent.pk, "day"), Decimal("0")),
            agent_spend.get((agent.pk, "month"), Decimal("0")),
            limits.max_spend_per_day if limits else None,
            limits.max_spend_per_month if limits else None,
        )
        entry["callbacksFailing"] = callbacks.get(agent.pk, 0)
        agent_entries.append(entry)

    organizations = list(scope.filter(Organization.objects.all(), "pk").order_by("pk"))
    org_spend = _bucket_spend(UsageBucket.Scope.ORG, [org.pk for org in organizations], now)
    org_entries = [
        {
            "orgId": org.pk,
            "name": org.name,
            "spend": _spend_entry(org_spend.get((org.pk, "day"), Decimal("0")),
                                  org_spend.get((org.pk, "month"), Decimal("0")),
                                  org.max_spend_per_day, org.max_spend_per_month),
        }
        for org in organizations
    ]
    services = _services(scope, since)
    usage = _usage_totals(scope, today, month)
    usage["activeAgents"] = len(agent_entries)
    usage["connectedAgents"] = len(connected)
    return {
        "generatedAt": iso_utc(now),
        "scope": {"orgId": scope.org_id, "allOrganizations": scope.org_id is None},
        "agents": agent_entries,
        "organizations": org_entries,
        "usage": usage,
        "series": _daily_series(scope, since, today),
        "deliveryFailures": _delivery_failures(scope, since),
        "optOuts": _opt_outs(scope, since),
        "callbacksFailing": sum(callbacks.values()),
        "services": services,
        "alerts": _alerts(agent_entries, org_entries, services, now),
    }
