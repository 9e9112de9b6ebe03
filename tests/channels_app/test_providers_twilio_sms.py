"""Twilio SMS and WhatsApp through the real SDK against the loopback fake."""

from __future__ import annotations

import json

import pytest

from channels_app.providers import twilio_client
from channels_app.providers.base import OutboundMessage, ProviderError
from channels_app.providers.pricing import unit_price
from channels_app.providers.twilio_sms import TwilioSmsProvider, parse_status_callback
from channels_app.providers.twilio_whatsapp import TwilioWhatsAppProvider
from tests.fake_providers import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN

MESSAGES_PATH = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"


def sms(body: str = "Hello", **kwargs) -> OutboundMessage:
    fields = {"channel": "sms", "from_address": "+14155550100", "to_address": "+14155550199", "body": body, "agent_id": "agent-a"}
    fields.update(kwargs)
    return OutboundMessage(**fields)


def test_it_posts_the_message_form_with_basic_auth_and_our_status_callback(live_provider_settings) -> None:
    fake = live_provider_settings
    result = TwilioSmsProvider().send(sms())

    request = fake.last("twilio", "POST", "Messages")
    assert request.path == MESSAGES_PATH
    assert request.basic_auth == (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    assert request.form == {
        "To": "+14155550199",
        "From": "+14155550100",
        "Body": "Hello",
        "StatusCallback": "http://localhost:3100/webhooks/agent-a/message-status",
    }
    assert result.external_id.startswith("SM") and len(result.external_id) == 34
    assert result.external_id in fake.twilio_messages
    assert result.status == "queued"
    assert result.provider == "twilio"


def test_it_uses_public_base_url_for_the_status_callback(live_provider_settings, settings) -> None:
    settings.PUBLIC_BASE_URL = "https://comms.example.net"
    TwilioSmsProvider().send(sms(agent_id="bot-7"))
    assert live_provider_settings.last("twilio").form["StatusCallback"] == "https://comms.example.net/webhooks/bot-7/message-status"


@pytest.mark.parametrize(
    "text",
    ["Tom & cat", "a; b; c=d", "line one\r\nline two\r\n", "emoji 👋🏽 ok", "שלום עולם", "مرحبا بالعالم", "100% + 50%=?#"],
)
def test_it_delivers_normal_text_byte_exact(live_provider_settings, text: str) -> None:
    TwilioSmsProvider().send(sms(text))
    request = live_provider_settings.last("twilio", "POST", "Messages")
    assert request.form["Body"] == text
    assert request.form["Body"].encode("utf-8") == text.encode("utf-8")


def test_it_sends_each_media_url_as_a_repeated_field(live_provider_settings) -> None:
    urls = ("https://example.org/a.png", "https://example.org/b.jpg?x=1&y=2")
    TwilioSmsProvider().send(sms(media_urls=urls))
    assert live_provider_settings.last("twilio").form_lists["MediaUrl"] == list(urls)


def test_it_estimates_the_cost_per_segment_when_twilio_has_no_price_yet(live_provider_settings, settings) -> None:
    result = TwilioSmsProvider().send(sms())
    assert result.cost == unit_price("sms")
    assert result.cost_estimated is True
    assert result.segments == 1


def test_it_maps_an_invalid_number_to_a_permanent_error(live_provider_settings) -> None:
    live_provider_settings.twilio_error(21211)
    with pytest.raises(ProviderError) as raised:
        TwilioSmsProvider().send(sms())
    error = raised.value
    assert (error.permanent, error.code, error.status, error.reason, error.provider) == (
        True,
        "21211",
        400,
        "invalid_recipient",
        "twilio",
    )
    assert "not a valid phone number" in error.message


def test_it_maps_an_opted_out_recipient_to_its_own_reason(live_provider_settings) -> None:
    live_provider_settings.twilio_error(21610)
    with pytest.raises(ProviderError) as raised:
        TwilioSmsProvider().send(sms())
    assert raised.value.permanent is True
    assert raised.value.code == "21610"
    assert raised.value.reason == "recipient_opted_out"


def test_it_treats_a_twilio_server_error_as_transient(live_provider_settings) -> None:
    live_provider_settings.script("twilio", status=503, json_body={"code": 20500, "message": "Service unavailable", "status": 503})
    with pytest.raises(ProviderError) as raised:
        TwilioSmsProvider().send(sms())
    assert raised.value.permanent is False
    assert raised.value.status == 503


def test_it_treats_rate_limiting_as_transient(live_provider_settings) -> None:
    live_provider_settings.twilio_error(20429, status=429)
    with pytest.raises(ProviderError) as raised:
        TwilioSmsProvider().send(sms())
    assert (raised.value.permanent, raised.value.reason) == (False, "rate_limited")


def test_it_treats_refused_credentials_as_permanent(live_provider_settings, settings) -> None:
    settings.TWILIO_AUTH_TOKEN = "wrong"
    with pytest.raises(ProviderError) as raised:
        TwilioSmsProvider().send(sms())
    assert (raised.value.permanent, raised.value.status, raised.value.code, raised.value.reason) == (
        True,
        401,
        "20003",
        "auth_failed",
    )


def test_it_treats_a_timeout_as_transient(live_provider_settings, monkeypatch) -> None:
    monkeypatch.setattr(twilio_client, "TIMEOUT_SECONDS", 0.2)
    live_provider_settings.script("twilio", status=201, json_body={}, delay=1.0)
    with pytest.raises(ProviderError) as raised:
        TwilioSmsProvider().send(sms())
    assert (raised.value.permanent, raised.value.status, raised.value.reason) == (False, None, "unavailable")


def test_it_treats_an_unreachable_api_as_transient(live_provider_settings, settings) -> None:
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # discard port: connection refused
    with pytest.raises(ProviderError) as raised:
        TwilioSmsProvider().send(sms())
    assert raised.value.permanent is False


def test_it_prefixes_both_whatsapp_addresses_on_the_wire(live_provider_settings) -> None:
    result = TwilioWhatsAppProvider().send(sms("Hi & bye", channel="whatsapp"))
    form = live_provider_settings.last("twilio").form
    assert form["To"] == "whatsapp:+14155550199"
    assert form["From"] == "whatsapp:+14155550100"
    assert form["Body"] == "Hi & bye"
    assert form["StatusCallback"] == "http://localhost:3100/webhooks/agent-a/message-status"
    assert result.to_address == "+14155550199"


def test_it_sends_a_whatsapp_template_as_content_sid_and_variables(live_provider_settings) -> None:
    message = sms("", channel="whatsapp", template_id="HX" + "a" * 32, template_vars={"1": "Ada", "2": "3pm"})
    TwilioWhatsAppProvider().send(message)
    form = live_provider_settings.last("twilio").form
    assert form["ContentSid"] == "HX" + "a" * 32
    assert json.loads(form["ContentVariables"]) == {"1": "Ada", "2": "3pm"}
    assert "Body" not in form


def test_it_reports_a_closed_whatsapp_window(live_provider_settings) -> None:
    live_provider_settings.twilio_error(63016)
    with pytest.raises(ProviderError) as raised:
        TwilioWhatsAppProvider().send(sms(channel="whatsapp"))
    assert (raised.value.permanent, raised.value.reason) == (True, "whatsapp_window_closed")


def test_it_reads_a_message_status_callback() -> None:
    update = parse_status_callback(
        {"MessageSid": "SM" + "1" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003", "AccountSid": "AC1"}
    )
    assert update is not None
    assert (update.external_id, update.status, update.error_code, update.provider) == ("SM" + "1" * 32, "undelivered", "30003", "twilio")
    assert parse_status_callback({"CallSid": "CA1"}) is None


def test_it_checks_twilio_credentials_by_fetching_the_account(live_provider_settings) -> None:
    name = twilio_client.check_credentials(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, live_provider_settings.base_url("twilio"))
    assert name == "Fake Twilio account"
    assert live_provider_settings.last("twilio").path == f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}.json"
    with pytest.raises(ProviderError):
        twilio_client.check_credentials(TWILIO_ACCOUNT_SID, "nope", live_provider_settings.base_url("twilio"))


def test_it_sends_from_a_messaging_service_when_the_sender_is_one(live_provider_settings) -> None:
    TwilioSmsProvider().send(sms(from_address="MG" + "b" * 32))
    form = live_provider_settings.last("twilio").form
    assert form["MessagingServiceSid"] == "MG" + "b" * 32
    assert "From" not in form
