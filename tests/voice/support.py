"""Helpers for the outbound voice tests: agents with numbers, signed Twilio callbacks, zones that are
inside or outside the allowed calling hours right now."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import OperationalError
from django.test import Client

from agents.models import Agent, Organization
from tests.channels_app.webhook_support import post_twilio
from tests.ops_helpers import agent_with_numbers
from voice.models import Call

AGENT_NUMBER = "+14155550100"
TO = "+14155550123"  # America/Los_Angeles


def voice_agent(agent_id: str = "agent-a", org: Organization | None = None, **kwargs: Any) -> tuple[Agent, str]:
    org = org or Organization.objects.get_or_create(pk="default", defaults={"name": "Default organization"})[0]
    return agent_with_numbers(agent_id, org, phone=kwargs.pop("phone", AGENT_NUMBER), **kwargs)


def etc_zone_at_local_hour(hour: int, now: datetime | None = None) -> str:
    """An IANA zone (Etc/GMT±N) in which it is `hour` o'clock now: lets an API test pick a recipient in
    quiet hours, or in allowed hours, whatever the time of the run."""
    utc_hour = (now or datetime.now(UTC)).hour
    offset = (hour - utc_hour + 36) % 24 - 12  # -12..+11
    if offset == 0:
        return "Etc/GMT"
    # Etc/GMT names are sign-inverted: Etc/GMT-9 is UTC+9.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def call_status(client: Client, agent_id: str, call_sid: str, status: str, **fields: str) -> Any:
    params = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": AGENT_NUMBER,
        "To": TO,
        **fields,
    }
    return post_twilio(client, f"/webhooks/{agent_id}/call-status", params, token=settings.TWILIO_AUTH_TOKEN)


def outbound_call(agent: Agent, call_sid: str = "CA" + "1" * 32, status: str = "queued", **fields: Any) -> Call:
    return Call.objects.create(
        agent=agent, organization_id=agent.organization_id, direction="outbound", status=status,
        from_address=AGENT_NUMBER, to_address=TO, call_sid=call_sid, **fields,
    )


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0, what: str = "the condition") -> None:
    """Poll the database until `condition` holds. The test suite's in-memory SQLite refuses a read while
    another thread (a simulated call) writes the same table ("table is locked"): that is a retry, not a
    failure."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OperationalError:
            pass
        assert time.monotonic() < deadline, f"{what} was not reached in {timeout} s"
        time.sleep(0.05)
