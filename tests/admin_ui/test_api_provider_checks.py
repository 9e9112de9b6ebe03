"""test/twilio, test/elevenlabs, test/resend (contract §9): the real SDKs, against the loopback fake, with
exactly the credentials given; refused credentials are 200 success:false, missing fields 400."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.admin_ui.conftest import bearer
from tests.fake_providers import (
    ELEVENLABS_API_KEY,
    LINE_CHANNEL_ACCESS_TOKEN,
    RESEND_API_KEY,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(settings: Any, fake_providers: FakeProviders) -> FakeProviders:
    """Base URLs at the fake, but no configured credentials: the check must use the ones it is given."""
    settings.TWILIO_API_BASE_URL = fake_providers.base_url("twilio")
    settings.RESEND_API_BASE_URL = fake_providers.base_url("resend")
    settings.ELEVENLABS_API_BASE_URL = fake_providers.base_url("elevenlabs")
    settings.LINE_API_BASE_URL = fake_providers.base_url("line")
    settings.LINE_CHANNEL_ACCESS_TOKEN = None
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = None
    settings.RESEND_API_KEY = settings.ELEVENLABS_API_KEY = None
    return fake_providers


def check(client: Client, token: str, provider: str, body: dict[str, Any]) -> Any:
    return client.post(f"/admin/api/test/{provider}", body, content_type="application/json", **bearer(token))


def test_twilio_accepted_credentials_fetch_the_account(client: Client, orchestrator_token: str,
                                                       fake: FakeProviders) -> None:
    response = check(client, orchestrator_token, "twilio",
                     {"accountSid": TWILIO_ACCOUNT_SID, "authToken": TWILIO_AUTH_TOKEN})

    assert response.status_code == 200
    assert response.json() == {"success": True,
                               "message": "Twilio accepted these credentials (account 'Fake Twilio account')."}
    request = fake.last("twilio")
    assert request.method == "GET"
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}.json"
    assert request.basic_auth == (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    assert len(fake.requests_to("twilio")) == 1


def test_twilio_rejected_credentials_are_success_false(client: Client, orchestrator_token: str,
                                                      fake: FakeProviders) -> None:
    response = check(client, orchestrator_token, "twilio",
                     {"accountSid": TWILIO_ACCOUNT_SID, "authToken": "wrong-token-typed"})

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False
    assert "refused these credentials" in body["message"]
    assert "wrong-token-typed" not in response.content.decode()
    assert fake.last("twilio").basic_auth == (TWILIO_ACCOUNT_SID, "wrong-token-typed")


def test_an_unreachable_provider_is_success_false_with_a_reason(client: Client, orchestrator_token: str,
                                                               settings: Any, fake: FakeProviders) -> None:
    fake.script("twilio", status=503, json_body={"code": 20500, "message": "Service unavailable", "status": 503})
    response = check(client, orchestrator_token, "twilio",
                     {"accountSid": TWILIO_ACCOUNT_SID, "authToken": TWILIO_AUTH_TOKEN})
    assert response.status_code == 200
    assert response.json()["success"] is False
    assert "could not be reached" in response.json()["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"authToken": "x"}, "accountSid"),
    ({"accountSid": TWILIO_ACCOUNT_SID}, "authToken"),
    ({"accountSid": "  ", "authToken": "x"}, "accountSid"),
    ({"accountSid": "AC../../evil", "authToken": "x"}, "accountSid"),
    ({"accountSid": TWILIO_ACCOUNT_SID, "authToken": "a\r\nX-Injected: 1"}, "authToken"),
])
def test_twilio_missing_or_malformed_fields_are_400_and_call_nobody(client: Client, orchestrator_token: str,
                                                                   fake: FakeProviders, body: dict[str, Any],
                                                                   field: str) -> None:
    response = check(client, orchestrator_token, "twilio", body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["field"] == field
    assert fake.requests_to("twilio") == []


def test_elevenlabs_checks_exactly_the_given_key(client: Client, orchestrator_token: str,
                                                 fake: FakeProviders) -> None:
    accepted = check(client, orchestrator_token, "elevenlabs", {"apiKey": ELEVENLABS_API_KEY})
    assert accepted.json() == {"success": True, "message": "ElevenLabs accepted this key (2 voices available)."}
    assert fake.last("elevenlabs").path == "/v1/voices"
    assert fake.last("elevenlabs").headers["xi-api-key"] == ELEVENLABS_API_KEY

    rejected = check(client, orchestrator_token, "elevenlabs", {"apiKey": "sk_typed_wrong"})
    assert rejected.status_code == 200
    assert rejected.json()["success"] is False
    assert fake.last("elevenlabs").headers["xi-api-key"] == "sk_typed_wrong"

    missing = check(client, orchestrator_token, "elevenlabs", {})
    assert (missing.status_code, missing.json()["field"]) == (400, "apiKey")


def test_resend_checks_exactly_the_given_key(client: Client, orchestrator_token: str, fake: FakeProviders) -> None:
    accepted = check(client, orchestrator_token, "resend", {"apiKey": RESEND_API_KEY})
    assert accepted.json() == {"success": True, "message": "Resend accepted this key (1 sending domains)."}
    request = fake.last("resend")
    assert (request.method, request.path, request.bearer) == ("GET", "/domains", RESEND_API_KEY)

    rejected = check(client, orchestrator_token, "resend", {"apiKey": "re_typed_wrong"})
    assert rejected.status_code == 200
    assert rejected.json()["success"] is False
    assert "refused these credentials" in rejected.json()["message"]
    assert fake.last("resend").bearer == "re_typed_wrong"

    missing = check(client, orchestrator_token, "resend", {"apiKey": ""})
    assert (missing.status_code, missing.json()["field"]) == (400, "apiKey")


def test_line_checks_exactly_the_given_channel_access_token(client: Client, orchestrator_token: str,
                                                            fake: FakeProviders) -> None:
    accepted = check(client, orchestrator_token, "line", {"channelAccessToken": LINE_CHANNEL_ACCESS_TOKEN})
    assert accepted.json() == {"success": True, "message": "LINE accepted this token (bot 'Fake LINE bot')."}
    request = fake.last("line")
    assert (request.method, request.path, request.bearer) == ("GET", "/v2/bot/info", LINE_CHANNEL_ACCESS_TOKEN)

    rejected = check(client, orchestrator_token, "line", {"channelAccessToken": "typed-wrong-line-token"})
    assert rejected.status_code == 200
    assert rejected.json()["success"] is False
    assert "refused these credentials" in rejected.json()["message"]
    assert "typed-wrong-line-token" not in rejected.content.decode()
    assert fake.last("line").bearer == "typed-wrong-line-token"

    missing = check(client, orchestrator_token, "line", {})
    assert (missing.status_code, missing.json()["field"]) == (400, "channelAccessToken")
    assert len(fake.requests_to("line")) == 2
