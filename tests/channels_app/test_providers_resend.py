"""Resend email through the real SDK against the loopback fake."""

from __future__ import annotations

import pytest

from channels_app.providers import resend_email
from channels_app.providers.base import OutboundMessage, ProviderError
from channels_app.providers.pricing import unit_price
from channels_app.providers.resend_email import ResendEmailProvider, parse_delivery_event
from tests.fake_providers import RESEND_API_KEY


def email(**kwargs) -> OutboundMessage:
    fields = {
        "channel": "email",
        "from_address": "agent-a@agents.example.com",
        "to_address": "ada@example.org",
        "subject": "Tom & Jerry; a report",
        "body": "Line one\r\nLine two — 👋 שלום",
        "agent_id": "agent-a",
    }
    fields.update(kwargs)
    return OutboundMessage(**fields)


def test_it_posts_the_email_as_json_with_the_bearer_key(live_provider_settings, settings) -> None:
    fake = live_provider_settings
    result = ResendEmailProvider().send(email(html="<p>Tom &amp; Jerry</p>"))
    request = fake.last("resend", "POST", "^/emails$")
    assert request.headers["authorization"] == f"Bearer {RESEND_API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "from": "agent-a@agents.example.com",
        "to": ["ada@example.org"],
        "subject": "Tom & Jerry; a report",
        "text": "Line one\r\nLine two — 👋 שלום",
        "html": "<p>Tom &amp; Jerry</p>",
    }
    assert len(result.external_id) == 36  # a UUID
    assert (result.status, result.provider) == ("sent", "resend")
    assert result.cost == unit_price("email")


def test_it_sends_media_urls_as_remote_attachments(live_provider_settings) -> None:
    ResendEmailProvider().send(email(media_urls=("https://example.org/files/report.pdf?sig=1",)))
    assert live_provider_settings.last("resend").json["attachments"] == [
        {"path": "https://example.org/files/report.pdf?sig=1", "filename": "report.pdf"}
    ]


def test_it_passes_our_idempotency_key_to_resend(live_provider_settings) -> None:
    ResendEmailProvider().send(email(idempotency_key="agent-a:key-1"))
    assert live_provider_settings.last("resend").headers["idempotency-key"] == "agent-a:key-1"


def test_it_maps_a_validation_error_to_a_permanent_error(live_provider_settings) -> None:
    live_provider_settings.script(
        "resend", status=422, json_body={"statusCode": 422, "message": "Invalid `to` field.", "name": "validation_error"}
    )
    with pytest.raises(ProviderError) as raised:
        ResendEmailProvider().send(email())
    assert (raised.value.permanent, raised.value.status, raised.value.code) == (True, 422, "validation_error")
    assert raised.value.message == "Invalid `to` field."


def test_it_maps_a_refused_key_to_a_permanent_auth_error(live_provider_settings, settings) -> None:
    settings.RESEND_API_KEY = "re_wrong"
    with pytest.raises(ProviderError) as raised:
        ResendEmailProvider().send(email())
    assert (raised.value.permanent, raised.value.reason) == (True, "auth_failed")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_it_treats_throttling_and_server_errors_as_transient(live_provider_settings, status: int) -> None:
    live_provider_settings.script("resend", status=status, json_body={"statusCode": status, "message": "try later", "name": "x"})
    with pytest.raises(ProviderError) as raised:
        ResendEmailProvider().send(email())
    assert raised.value.permanent is False


def test_it_treats_an_unreachable_api_as_transient(live_provider_settings, settings) -> None:
    settings.RESEND_API_BASE_URL = "http://127.0.0.1:9"
    with pytest.raises(ProviderError) as raised:
        ResendEmailProvider().send(email())
    assert raised.value.permanent is False


def test_it_fetches_a_received_emails_body(live_provider_settings) -> None:
    live_provider_settings.add_received_email(
        "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", text="Body & more\r\n", html="<b>Body</b>", cc=["c@example.org"]
    )
    received = ResendEmailProvider().fetch_received("4ef9a417-02e9-4d39-ad75-9611e0fcc33c")
    assert live_provider_settings.last("resend", "GET").path == "/emails/receiving/4ef9a417-02e9-4d39-ad75-9611e0fcc33c"
    assert (received.text, received.html, received.subject) == ("Body & more\r\n", "<b>Body</b>", "Hello")
    assert received.from_address == "Alice <alice@example.org>"
    assert received.to == ("agent-a@agents.example.com",)
    assert received.cc == ("c@example.org",)


def test_it_reports_an_unknown_received_email_as_not_found(live_provider_settings) -> None:
    with pytest.raises(ProviderError) as raised:
        ResendEmailProvider().fetch_received("missing")
    assert (raised.value.status, raised.value.reason, raised.value.permanent) == (404, "not_found", True)


def test_it_lists_the_sending_domains(live_provider_settings) -> None:
    domains = ResendEmailProvider().list_domains()
    assert [(d.name, d.status) for d in domains] == [("agents.example.com", "verified")]


def test_it_checks_an_explicit_api_key_without_disturbing_the_configured_one(live_provider_settings) -> None:
    assert resend_email.check_api_key(RESEND_API_KEY) == 1
    with pytest.raises(ProviderError):
        resend_email.check_api_key("re_wrong")
    ResendEmailProvider().send(email())
    assert live_provider_settings.last("resend", "POST").bearer == RESEND_API_KEY


@pytest.mark.parametrize(
    ("event", "status", "error_code"),
    [
        ({"type": "email.delivered", "data": {"email_id": "e1"}}, "delivered", None),
        ({"type": "email.sent", "data": {"email_id": "e1"}}, "sent", None),
        ({"type": "email.bounced", "data": {"email_id": "e1", "bounce": {"type": "Permanent", "message": "no"}}}, "undelivered", "Permanent"),
        ({"type": "email.failed", "data": {"email_id": "e1", "failed": {"reason": "reached_daily_quota"}}}, "failed", "failed"),
    ],
)
def test_it_reads_resend_delivery_events(event, status: str, error_code: str | None) -> None:
    update = parse_delivery_event(event)
    assert update is not None
    assert (update.external_id, update.status, update.error_code, update.provider) == ("e1", status, error_code, "resend")


def test_it_ignores_resend_events_that_change_no_status() -> None:
    assert parse_delivery_event({"type": "email.opened", "data": {"email_id": "e1"}}) is None
    assert parse_delivery_event({"type": "email.received", "data": {"email_id": "e1"}}) is None


def test_it_never_sends_with_a_key_being_checked_in_another_thread(live_provider_settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def send(_: int) -> None:
        ResendEmailProvider().send(email())

    def check(_: int) -> None:
        with pytest.raises(ProviderError):
            resend_email.check_api_key("re_typed_into_the_setup_form")

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(send if i % 3 else check, i) for i in range(30)]
        for future in futures:
            future.result()
    sends = live_provider_settings.requests_to("resend", "POST", "^/emails$")
    assert len(sends) == 20
    assert {request.bearer for request in sends} == {RESEND_API_KEY}
