"""Our Prometheus metrics (contract §4).

With several worker processes on one host set PROMETHEUS_MULTIPROC_DIR to an empty directory
before start: prometheus_client then keeps the values in shared files and `/metrics` aggregates them.
Separate hosts are scraped one by one, as Prometheus expects.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from channels_app.channel_registry import channel_names

PROCESS_STARTED_AT = time.time()
PROCESS_STARTED_MONOTONIC = time.monotonic()


def uptime_seconds() -> float:
    return time.monotonic() - PROCESS_STARTED_MONOTONIC


# The series of each label set, looked up once: metric.labels() validates the names, builds a key and
# takes the metric's lock on every call, a measurable share of a webhook's CPU. Bounded, because some
# label values come from requests; prometheus_client keeps the series themselves either way.
_MAX_CACHED_SERIES = 10_000
_series: dict[tuple[Any, ...], Any] = {}


def labelled(metric: Any, **labels: str) -> Any:
    """`metric.labels(**labels)`, from a cache after the first call (the metric itself without labels)."""
    if not labels:
        return metric
    key = (id(metric), *labels.items())
    child = _series.get(key)
    if child is None:
        if len(_series) >= _MAX_CACHED_SERIES:
            _series.clear()
        child = _series[key] = metric.labels(**labels)
    return child


MESSAGES_SENT = Counter("mcp_messages_sent", "Outbound messages accepted by a provider", ["channel"])
MESSAGES_RECEIVED = Counter("mcp_messages_received", "Inbound messages stored", ["channel"])
TOOL_CALLS = Counter("mcp_tool_calls", "MCP tool calls", ["tool", "outcome"])
WEBHOOKS_RECEIVED = Counter("mcp_webhook_received", "Provider webhooks", ["type", "outcome"])
AUTH_FAILURES = Counter("mcp_auth_failures", "Failed authentications")
RATE_LIMIT_HITS = Counter("mcp_rate_limit_hits", "Refusals by a rate or spend limit", ["limit_type"])
ACTIVE_AGENTS = Gauge("mcp_active_agents", "Agents with a live MCP session in this process", multiprocess_mode="livesum")
ACTIVE_VOICE_SESSIONS = Gauge(
    "mcp_active_voice_sessions", "Live ConversationRelay sockets in this process", multiprocess_mode="livesum"
)
VOICE_TURN_SECONDS = Histogram(
    "mcp_voice_turn_seconds",
    "Time from a caller's prompt to the agent's first reply token",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13),
)
UPTIME = Gauge("mcp_uptime_seconds", "Seconds since this process started", multiprocess_mode="max")

# Known label values start at 0, so dashboards and alerts see a series before the first event.
# (A channel registered after import gets its series at its first event.)
CHANNELS = channel_names()
LIMIT_TYPES = (
    "per_minute",
    "per_hour",
    "per_day",
    "spend_day",
    "spend_month",
    "calls_per_number",
    "org_spend_day",
    "org_spend_month",
)
for _channel in CHANNELS:
    MESSAGES_SENT.labels(channel=_channel)
    MESSAGES_RECEIVED.labels(channel=_channel)
for _limit_type in LIMIT_TYPES:
    RATE_LIMIT_HITS.labels(limit_type=_limit_type)
