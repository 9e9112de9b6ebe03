"""The delivery worker's housekeeping pass (deliver_callbacks): what it removes and what it keeps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from agents.models import AuthFailureWindow

# The worker closes stale connections between passes, as a long-running process must: that would end a
# test's wrapping transaction on PostgreSQL, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_worker_deletes_expired_failed_auth_windows_and_keeps_live_ones(settings: Any) -> None:
    settings.AUTH_FAILURE_WINDOW_SECONDS = 60
    now = timezone.now()
    AuthFailureWindow.objects.create(client_address="198.51.100.1", window_started_at=now - timedelta(minutes=5), failures=9)
    AuthFailureWindow.objects.create(client_address="198.51.100.2", window_started_at=now - timedelta(seconds=10), failures=9)

    call_command("deliver_callbacks", "--once")

    assert list(AuthFailureWindow.objects.values_list("client_address", flat=True)) == ["198.51.100.2"]


def test_an_address_still_throttled_stays_throttled_after_the_worker_ran(settings: Any, client: Client) -> None:
    settings.AUTH_FAILURE_LIMIT = 2
    settings.AUTH_FAILURE_WINDOW_SECONDS = 60
    for _ in range(2):
        client.get("/api/v1/health", HTTP_AUTHORIZATION="Bearer agt_wrong", REMOTE_ADDR="198.51.100.3")

    call_command("deliver_callbacks", "--once")

    refused = client.get("/api/v1/health", HTTP_AUTHORIZATION="Bearer agt_wrong", REMOTE_ADDR="198.51.100.3")
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_auth_failures"
