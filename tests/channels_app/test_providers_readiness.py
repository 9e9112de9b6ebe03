"""/health/ready asks each configured provider for a cheap live call (contract §4)."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_it_reports_every_configured_provider_ready_after_a_live_call(client, live_provider_settings) -> None:
    fake = live_provider_settings
    response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 200
    assert {k: body["checks"][k] for k in ("telephony", "email", "tts", "line")} == {
        "telephony": "ok",
        "email": "ok",
        "tts": "ok",
        "line": "ok",
    }
    assert fake.requests_to("twilio", "GET", r"/Accounts/AC[0-9a-f]{32}\.json$")
    assert fake.requests_to("resend", "GET", "^/domains$")
    assert fake.requests_to("elevenlabs", "GET", "^/v1/voices$")
    assert fake.requests_to("line", "GET", "^/v2/bot/info$")


@pytest.mark.django_db
def test_it_is_not_ready_when_a_configured_provider_refuses_our_credentials(client, live_provider_settings, settings) -> None:
    settings.TWILIO_AUTH_TOKEN = "revoked"
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["telephony"] == "error"
    assert response.json()["checks"]["email"] == "ok"


@pytest.mark.django_db
def test_it_reports_unconfigured_providers_without_calling_anyone(client, fake_providers) -> None:
    response = client.get("/health/ready")
    checks = response.json()["checks"]
    assert {checks[k] for k in ("telephony", "email", "tts", "line")} == {"not_configured"}
    assert response.status_code == 200
    assert fake_providers.requests == []
