"""The policy checks before any outbound action (contract §6.2), in the contract's order:

1. agent active → 2. channel not blocked → 3. recipient not opted out → 4. quiet hours (calls and voice
messages) → 5. rate limits and spend caps, agent and organization, atomically → 6. WhatsApp 24-hour
window → provider call.

Checks 1–4 only read (`policy_check`). Checks 5–6 run inside the caller's transaction (`policy_reserve`):
5 counts the action, and a refusal at 6 raises so the rollback gives the count back. Each refusal says
why (`code`) and what would pass (`retryAfter`, `nextAllowedAt`, `hint`).

Voice operations use the same two calls with channel "voice" (quiet hours, calls_per_number):

    policy_check(agent=agent, channel="voice", to=to, recipient_timezone=tz)
    with transaction.atomic():
        call = Call.objects.create(...)                      # persisted before the provider call
        record_id = usage_record_create(agent=agent, action_type="make_call", channel="voice", cost=estimate,
                                        reference=call.session_id)
        reservation = policy_reserve(agent=agent, limits=limits, channel="voice", to=to, cost=estimate)
    try:
        result = telephony_provider().create_call(...)
    except ProviderError:
        usage_release(reservation=reservation, record_id=record_id)   # refused: nothing counted or charged
        raise
    if result.cost is not None and result.cost != estimate:
        usage_reprice(reservation=reservation, record_id=record_id, cost=result.cost)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django.utils import timezone
from phonenumbers import timezone as phone_timezones

from agents.consent import opt_out_channels
from agents.models import Agent, AgentLimits, AgentStatus
from agents.usage import Reservation, usage_reserve
from channels_app.models import Direction, Message
from orchestrator import sql
from orchestrator.errors import ApiError

# Channels that ring a phone: quiet hours apply to them only (contract §6.2).
QUIET_HOURS_CHANNELS = frozenset({"voice"})
WHATSAPP_WINDOW = timedelta(hours=24)



def policy_check(
    *,
    agent: Agent,
    channel: str,
    to: str,
    recipient_timezone: str | None = None,
    now: datetime | None = None,
    opted_out: bool | None = None,
) -> None:
    """Checks 1–4 of §6.2; raises the first refusal. `opted_out`: already read by the caller."""
    if agent.status != AgentStatus.ACTIVE:
        raise ApiError(403, "agent_inactive", f"Agent {agent.pk!r} is {agent.status}; it cannot send.",
                       hint="An org admin can reactivate the agent.")
    if agent.is_channel_blocked(channel):
        raise ApiError(403, "channel_blocked", f"The {channel} channel is blocked for this agent.",
                       hint="An org admin can unblock it with POST /admin/api/agents/<agentId>/blocked-channels.")
    if opted_out is None:
        opted_out = sql.opted_out(agent.pk, opt_out_channels(channel), to)  # read on every send: plain SQL
    if opted_out:
        raise ApiError(403, "opted_out", f"{to} has opted out of messages from this agent on {channel}.",
                       hint="The contact can opt back in by replying START.")
    if channel in QUIET_HOURS_CHANNELS:
        quiet_hours_check(agent=agent, to=to, recipient_timezone=recipient_timezone, now=now or timezone.now())


def policy_reserve(
    *,
    agent: Agent,
    limits: AgentLimits,
    channel: str,
    to: str,
    cost: Decimal,
    template_id: str | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Checks 5–6 of §6.2. Call inside transaction.atomic(); a refusal raises and counts nothing."""
    now = now or timezone.now()
    reservation = usage_reserve(
        agent=agent,
        limits=limits,
        organization=agent.organization,
        cost=cost,
        call_to=to if channel == "voice" else None,
        now=now,
    )
    if channel == "whatsapp" and not template_id and not whatsapp_window_open(agent=agent, contact=to, now=now):
        raise ApiError(
            409,
            "whatsapp_window_closed",
            f"{to} has not written to this agent on WhatsApp in the last 24 hours, so free text is not allowed.",
            hint="Send an approved template instead: give templateId (a Twilio Content SID, HX…) and templateVars.",
        )
    return reservation


def whatsapp_window_open(*, agent: Agent, contact: str, now: datetime) -> bool:
    """Free text is allowed within 24 hours of the contact's last inbound WhatsApp message."""
    return Message.objects.filter(
        agent=agent,
        direction=Direction.INBOUND,
        channel="whatsapp",
        from_address__in=(contact, f"whatsapp:{contact}"),
        created_at__gte=now - WHATSAPP_WINDOW,
    ).exists()


# --- quiet hours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    start: int  # first allowed local hour
    end: int  # first local hour that is quiet again

    def allows(self, local: datetime) -> bool:
        if self.start == self.end:
            return True  # configured without quiet hours
        if self.start < self.end:
            return self.start <= local.hour < self.end
        return local.hour >= self.start or local.hour < self.end  # a window that wraps midnight


def recipient_time_zones(*, to: str, recipient_timezone: str | None) -> list[ZoneInfo]:
    """The recipient's zone from `recipientTimezone`, else every zone libphonenumber gives the number."""
    if recipient_timezone:
        try:
            return [ZoneInfo(recipient_timezone)]
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(400, "invalid_request", f"Unknown time zone {recipient_timezone!r}; use an IANA name "
                           "such as America/New_York.", field="recipientTimezone") from None
    try:
        number = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        return []
    zones = []
    for name in phone_timezones.time_zones_for_number(number):
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue  # "Etc/Unknown": libphonenumber cannot place the number
    return zones


def quiet_hours_check(*, agent: Agent, to: str, recipient_timezone: str | None, now: datetime) -> None:
    """403 quiet_hours when it is outside the allowed hours in any of the recipient's possible zones."""
    window = QuietHours(agent.quiet_hours_start, agent.quiet_hours_end)
    zones = recipient_time_zones(to=to, recipient_timezone=recipient_timezone)
    if all(window.allows(now.astimezone(zone)) for zone in zones):
        return
    next_allowed = next_allowed_at(window=window, zones=zones, now=now)
    raise ApiError(
        403,
        "quiet_hours",
        f"It is outside {window.start:02d}:00–{window.end:02d}:00 for the recipient "
        f"({', '.join(zone.key for zone in zones)}).",
        retry_after=max(1, math.ceil((next_allowed - now).total_seconds())),
        hint="Try again at nextAllowedAt, or pass recipientTimezone if the recipient is elsewhere.",
        nextAllowedAt=next_allowed.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    )


def next_allowed_at(*, window: QuietHours, zones: list[ZoneInfo], now: datetime) -> datetime:
    """The first instant at which every zone is inside the allowed hours.

    It is either now or the start of a zone's allowed window, so those are the only candidates.
    """
    candidates: list[datetime] = []
    for zone in zones:
        local_now = now.astimezone(zone)
        for days in range(0, 3):
            day = (local_now + timedelta(days=days)).date()
            start = datetime(day.year, day.month, day.day, window.start, tzinfo=zone)
            if start > now:
                candidates.append(start)
    candidates.sort()
    for candidate in candidates:
        if all(window.allows(candidate.astimezone(zone)) for zone in zones):
            return candidate
    # The zones never share an allowed hour (e.g. a number spanning half the globe): wait for the latest.
    return max(candidates) if candidates else now
