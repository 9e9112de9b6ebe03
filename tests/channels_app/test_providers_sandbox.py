"""The sandbox provider set (DEMO_MODE) and the price table."""

from __future__ import annotations

import re
import wave
from decimal import Decimal
from io import BytesIO

import phonenumbers
import pytest

from agents.models import PhoneNumber
from channels_app.providers import pricing, registry
from channels_app.providers.base import OutboundMessage, ProviderError, status_advances


@pytest.fixture
def demo(settings, fake_providers):
    settings.DEMO_MODE = True
    # Even with real credentials configured, nothing may leave the machine.
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = "t"
    settings.TWILIO_API_BASE_URL = fake_providers.base_url("twilio")
    settings.RESEND_API_KEY = "re_x"
    settings.RESEND_API_BASE_URL = fake_providers.base_url("resend")
    return fake_providers


def message(channel: str = "sms", to: str = "+14155550199", body: str = "Hello", **kwargs) -> OutboundMessage:
    return OutboundMessage(channel=channel, from_address="+12025550100", to_address=to, body=body, agent_id="agent-a", **kwargs)


def test_it_returns_twilio_shaped_sids_and_a_simulated_delivery(demo, settings) -> None:
    result = registry.messaging_provider("sms").send(message())
    assert re.fullmatch(r"SM[0-9a-f]{32}", result.external_id)
    assert (result.status, result.provider) == ("delivered", "sandbox")
    assert result.cost == pricing.unit_price("sms")
    assert result.cost_estimated is True
    assert demo.requests == []


def test_it_gives_each_send_a_new_id(demo) -> None:
    provider = registry.messaging_provider("whatsapp")
    assert len({provider.send(message("whatsapp")).external_id for _ in range(20)}) == 20


def test_it_shapes_email_and_line_ids_like_the_real_providers(demo) -> None:
    email_id = registry.messaging_provider("email").send(message("email", to="a@example.org", subject="s")).external_id
    line_id = registry.messaging_provider("line").send(message("line", to="U" + "a" * 32)).external_id
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", email_id)
    assert re.fullmatch(r"\d{18}", line_id)


def test_it_prices_a_long_sms_per_segment(demo, settings) -> None:
    result = registry.messaging_provider("sms").send(message(body="x" * 161))
    assert result.segments == 2
    assert result.cost == pricing.unit_price("sms") * 2


@pytest.mark.parametrize(
    ("to", "code", "reason"),
    [("+15005550001", "21211", "invalid_recipient"), ("+15005550004", "21610", "recipient_opted_out")],
)
def test_it_refuses_twilios_magic_test_numbers_like_twilio(demo, to: str, code: str, reason: str) -> None:
    with pytest.raises(ProviderError) as raised:
        registry.messaging_provider("sms").send(message(to=to))
    assert (raised.value.code, raised.value.reason, raised.value.permanent) == (code, reason, True)


def test_it_simulates_calls_with_ca_sids(demo) -> None:
    call = registry.telephony_provider().create_call(
        agent_id="agent-a", from_number="+12025550100", to_number="+14155550199", twiml="<Response/>"
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.call_sid)
    assert call.status == "queued"
    assert registry.telephony_provider().update_call(call.call_sid, status="completed").status == "completed"


@pytest.mark.django_db
def test_it_offers_numbers_from_the_fictional_range_that_are_valid_e164(demo) -> None:
    found = registry.telephony_provider().search_numbers("US", limit=3)
    assert [n.number for n in found] == ["+12025550100", "+12025550101", "+12025550102"]
    for number in found:
        assert phonenumbers.is_valid_number(phonenumbers.parse(number.number))


@pytest.mark.django_db
def test_it_skips_sandbox_numbers_already_assigned_to_an_agent(demo, make_agent) -> None:
    agent, _ = make_agent("agent-a")
    PhoneNumber.objects.create(number="+12025550100", agent=agent, is_sandbox=True)
    PhoneNumber.objects.create(number="+12025550101", agent=None, is_sandbox=True)  # back in the pool
    found = registry.telephony_provider().search_numbers("US", limit=2)
    assert [n.number for n in found] == ["+12025550101", "+12025550102"]


def test_it_buys_only_sandbox_numbers(demo) -> None:
    provider = registry.telephony_provider()
    bought = provider.purchase_number("+12025550150", agent_id="agent-a")
    assert re.fullmatch(r"PN[0-9a-f]{32}", bought.sid)
    with pytest.raises(ProviderError):
        provider.purchase_number("+14155550100", agent_id="agent-a")
    provider.release_number(bought.sid)


def test_it_synthesizes_a_playable_wav(demo) -> None:
    audio = registry.tts_provider().synthesize("one two three four five")
    with wave.open(BytesIO(audio.audio)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getnframes() / wav.getframerate() == pytest.approx(2.0)
    assert audio.content_type == "audio/wav"
    assert audio.duration_seconds == pytest.approx(2.0)
    assert registry.tts_provider().list_voices()


def test_it_has_no_received_emails_and_one_verified_domain(demo, settings) -> None:
    provider = registry.email_provider()
    with pytest.raises(ProviderError) as raised:
        provider.fetch_received("e1")
    assert raised.value.reason == "not_found"
    assert [d.name for d in provider.list_domains()] == [settings.EMAIL_DEFAULT_DOMAIN]


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension-table characters count twice
        ("€" * 81, 2),
        ("é" * 160, 1),  # é is in the GSM basic set
        ("ł" * 70, 1),  # ł is not: UCS-2
        ("ł" * 71, 2),
        ("👋" * 35, 1),  # two UTF-16 units each
        ("👋" * 36, 2),
    ],
)
def test_it_counts_sms_segments_the_way_carriers_bill_them(body: str, segments: int) -> None:
    assert pricing.sms_segments(body) == segments


def test_it_prices_calls_per_started_minute(settings) -> None:
    minute = pricing.unit_price("voice")
    assert pricing.estimate_call_cost(0) == 0
    assert pricing.estimate_call_cost(1) == minute
    assert pricing.estimate_call_cost(61) == minute * 2


def test_it_takes_prices_from_settings(settings) -> None:
    settings.PROVIDER_PRICES = {**settings.PROVIDER_PRICES, "whatsapp": "0.0123"}
    assert pricing.estimate_message_cost("whatsapp", "hi") == (Decimal("0.0123"), None)


@pytest.mark.parametrize(
    ("current", "new", "advances"),
    [
        ("pending", "queued", True),
        ("queued", "sent", True),
        ("sent", "delivered", True),
        ("delivered", "read", True),
        ("delivered", "sent", False),
        ("failed", "delivered", False),
        ("delivered", "undelivered", True),
        ("sent", "sent", False),
    ],
)
def test_it_moves_message_status_forward_only(current: str, new: str, advances: bool) -> None:
    assert status_advances(current, new) is advances
