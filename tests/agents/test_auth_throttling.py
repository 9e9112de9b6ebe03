"""Failed-auth throttling per client address (contract §2), kept in the database for every process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from agents.authentication import client_address_from
from agents.models import AuthFailureWindow

pytestmark = pytest.mark.django_db

ATTACKER = "198.51.100.7"
BYSTANDER = "198.51.100.8"


@pytest.fixture(autouse=True)
def low_limit(settings: Any) -> None:
    settings.AUTH_FAILURE_LIMIT = 3
    settings.AUTH_FAILURE_WINDOW_SECONDS = 60


def call(client: Client, token: str, address: str, **headers: str) -> Any:
    return client.get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=address, **headers)


def fail_until_throttled(client: Client, address: str) -> None:
    for _ in range(3):
        assert call(client, "agt_wrong", address).status_code == 401


def test_it_throttles_an_address_after_the_failure_limit_even_with_a_valid_token(
    client: Client, make_agent: Any
) -> None:
    _agent, token = make_agent("agent-a")
    fail_until_throttled(client, ATTACKER)

    response = call(client, token, ATTACKER)

    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "too_many_auth_failures"
    assert 0 < body["retryAfter"] <= 61
    assert response["Retry-After"] == str(body["retryAfter"])


def test_it_does_not_throttle_before_the_limit(client: Client, make_agent: Any) -> None:
    _agent, token = make_agent("agent-a")
    for _ in range(2):
        call(client, "agt_wrong", ATTACKER)
    assert call(client, token, ATTACKER).status_code == 200


def test_it_leaves_other_addresses_alone(client: Client, make_agent: Any) -> None:
    _agent, token = make_agent("agent-a")
    fail_until_throttled(client, ATTACKER)
    assert call(client, token, BYSTANDER).status_code == 200


def test_it_keeps_the_count_in_the_database(client: Client) -> None:
    fail_until_throttled(client, ATTACKER)
    window = AuthFailureWindow.objects.get(client_address=ATTACKER)
    assert window.failures == 3


def test_it_lets_the_address_in_again_when_the_window_has_passed(client: Client, make_agent: Any) -> None:
    _agent, token = make_agent("agent-a")
    fail_until_throttled(client, ATTACKER)
    AuthFailureWindow.objects.filter(client_address=ATTACKER).update(
        window_started_at=timezone.now() - timedelta(seconds=61)
    )

    assert call(client, token, ATTACKER).status_code == 200
    assert call(client, "agt_wrong", ATTACKER).status_code == 401
    assert AuthFailureWindow.objects.get(client_address=ATTACKER).failures == 1


def test_it_counts_missing_tokens_as_failures_on_authenticated_endpoints() -> None:
    from agents.authentication import authenticate_token
    from orchestrator.errors import ApiError

    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            authenticate_token(None, client_address=ATTACKER)
        assert refused.value.code == "missing_token"
    with pytest.raises(ApiError) as throttled:
        authenticate_token(None, client_address=ATTACKER)
    assert throttled.value.code == "too_many_auth_failures"


def test_it_ignores_x_forwarded_for_unless_the_peer_is_a_trusted_proxy(client: Client, settings: Any) -> None:
    # An attacker cannot dodge the throttle by inventing a new X-Forwarded-For on every request.
    for fake in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        call(client, "agt_wrong", ATTACKER, HTTP_X_FORWARDED_FOR=fake)
    assert AuthFailureWindow.objects.get(client_address=ATTACKER).failures == 3
    assert not AuthFailureWindow.objects.filter(client_address__startswith="203.0.113.").exists()


def test_it_believes_a_trusted_proxy_about_the_client_address(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    assert client_address_from("10.0.0.2", "203.0.113.9, 10.0.0.2") == "203.0.113.9"
    assert client_address_from("10.0.0.3", "203.0.113.9") == "10.0.0.3"
    assert client_address_from("10.0.0.2", "not-an-ip") == "10.0.0.2"
