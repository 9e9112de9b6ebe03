"""Failed admin logins count against the same per-address throttle as failed tokens (contract §2)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agents.models import AuthFailureWindow

pytestmark = pytest.mark.django_db

ATTACKER = "198.51.100.20"


@pytest.fixture(autouse=True)
def low_limit(settings: Any) -> None:
    settings.AUTH_FAILURE_LIMIT = 3
    settings.AUTH_FAILURE_WINDOW_SECONDS = 60


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser("operator", "op@example.com", "right-password-123")


def login(client: Client, password: str, address: str = ATTACKER) -> Any:
    return client.post("/admin/login/?next=/admin/", {"username": "operator", "password": password},
                       REMOTE_ADDR=address)


def test_it_counts_failed_logins_and_then_refuses_even_the_right_password_with_429(operator: User) -> None:
    client = Client()
    for _ in range(3):
        response = login(client, "wrong")
        assert response.status_code == 200
        assert "Please enter the correct username and password" in response.content.decode()
    assert AuthFailureWindow.objects.get(client_address=ATTACKER).failures == 3

    refused = login(client, "right-password-123")

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 61
    assert "Too many failed sign-in attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    page = client.get("/admin/login/", REMOTE_ADDR=ATTACKER)
    assert page.status_code == 429
    assert "Too many failed sign-in attempts" in page.content.decode()


def test_failed_tokens_throttle_the_login_page_too(operator: User) -> None:
    for _ in range(3):
        Client().get("/api/v1/health", HTTP_AUTHORIZATION="Bearer agt_wrong", REMOTE_ADDR=ATTACKER)
    assert login(Client(), "right-password-123").status_code == 429


def test_other_addresses_and_the_right_password_before_the_limit_get_in(operator: User) -> None:
    client = Client()
    for _ in range(3):
        login(client, "wrong")
    assert login(Client(), "right-password-123", address="198.51.100.21").status_code == 302

    fresh = Client()
    login(fresh, "wrong", address="198.51.100.22")
    assert login(fresh, "right-password-123", address="198.51.100.22").status_code == 302
