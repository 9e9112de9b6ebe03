"""Liveness, readiness and metrics (contract §4)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

from orchestrator import metrics

logger = logging.getLogger(__name__)

# Provider modules register a live check here: name → callable that raises when the provider is unreachable.
ProviderCheck = Callable[[], None]
PROVIDER_CHECKS: dict[str, tuple[Callable[[], bool], ProviderCheck]] = {}
READINESS_KEYS = ("telephony", "email", "tts", "line")


def register_provider_check(name: str, *, configured: Callable[[], bool], check: ProviderCheck) -> None:
    PROVIDER_CHECKS[name] = (configured, check)


def health_body() -> dict[str, object]:
    return {
        "status": "ok",
        "uptime": round(metrics.uptime_seconds(), 3),
        "version": settings.VERSION,
        "environment": settings.ENVIRONMENT,
        "demoMode": settings.DEMO_MODE,
    }


# No cookies or state here: exempt from CSRF so a stray POST gets a JSON 405, not an HTML 403.
@csrf_exempt
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse(health_body())


def database_check() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception:
        logger.exception("Readiness: database check failed")
        return "error"


async def _channel_layer_roundtrip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned another message")


def channel_layer_check() -> str:
    try:
        async_to_sync(_channel_layer_roundtrip)()
        return "ok"
    except Exception:
        logger.exception("Readiness: channel layer check failed")
        return "error"


def provider_check(name: str) -> str:
    if settings.DEMO_MODE:
        return "ok"  # the sandbox provider set answers for every channel
    entry = PROVIDER_CHECKS.get(name)
    if entry is None:
        return "not_configured"
    configured, check = entry
    if not configured():
        return "not_configured"
    try:
        check()
        return "ok"
    except Exception:
        logger.warning("Readiness: %s provider check failed", name, exc_info=True)
        return "error"


# No cookies or state here: exempt from CSRF so a stray POST gets a JSON 405, not an HTML 403.
@csrf_exempt
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {"database": database_check()}
    for name in READINESS_KEYS:
        checks[name] = provider_check(name)
    checks["channelLayer"] = channel_layer_check()
    is_ready = all(value != "error" for value in checks.values())
    return JsonResponse({"status": "ready" if is_ready else "not_ready", "checks": checks}, status=200 if is_ready else 503)


# No cookies or state here: exempt from CSRF so a stray POST gets a JSON 405, not an HTML 403.
@csrf_exempt
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    metrics.UPTIME.set(metrics.uptime_seconds())
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    # Negotiate like prometheus_client's own exporter: 0.0.4 text unless the scraper asks for OpenMetrics.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
