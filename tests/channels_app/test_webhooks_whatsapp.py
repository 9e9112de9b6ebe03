"""Twilio WhatsApp webhooks: `whatsapp:` prefixes, the 24-hour window, opt-out keywords."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import OptOut
from agents.services import AgentAddresses
from channels_app.models import Message
from channels_app.selectors import contact_last_inbound_at
from tests.channels_app.webhook_support import fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = pytest.mark.usefixtures("webhook_secrets")

PATH = "/webhooks/agent-a/whatsapp"


@pytest.fixture
def agent(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(whatsapp="+14155550111"))
    return agent


def test_it_stores_a_signed_whatsapp_message_without_the_prefixes(client, agent):
    params = fixture("twilio_whatsapp.json")
    response = post_twilio(client, PATH, params)
    assert response.status_code == 200
    message = Message.objects.get()
    assert message.channel == "whatsapp"
    assert message.from_address == "+34612345678"
    assert message.to_address == "+14155550111"
    assert message.body == "¿Podemos cambiar la cita al jueves?"


def test_an_inbound_message_opens_the_24_hour_window_for_that_contact(client, agent):
    assert contact_last_inbound_at(agent_id="agent-a", channel="whatsapp", contact="+34612345678") is None
    post_twilio(client, PATH, fixture("twilio_whatsapp.json"))
    last = contact_last_inbound_at(agent_id="agent-a", channel="whatsapp", contact="+34612345678")
    assert last is not None and timezone.now() - last < timedelta(minutes=1)
    assert contact_last_inbound_at(agent_id="agent-a", channel="whatsapp", contact="+34600000000") is None


def test_it_refuses_a_whatsapp_message_signed_for_the_sms_route(client, agent):
    response = post_twilio(
        client, PATH, fixture("twilio_whatsapp.json"), signed_url="https://comms.example.com/webhooks/agent-a/sms"
    )
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_stop_on_whatsapp_records_a_whatsapp_opt_out(client, agent):
    response = post_twilio(client, PATH, dict(fixture("twilio_whatsapp.json"), Body="Stop"))
    assert b"unsubscribed" in response.content
    opt_out = OptOut.objects.get()
    assert (opt_out.channel, opt_out.contact) == ("whatsapp", "+34612345678")


def test_a_blocked_whatsapp_channel_leaves_sms_open(client, agent):
    agent.blocked_channels = ["whatsapp"]
    agent.save()
    assert post_twilio(client, PATH, fixture("twilio_whatsapp.json")).status_code == 200
    assert not Message.objects.exists()
    assert post_twilio(client, "/webhooks/agent-a/sms", fixture("twilio_sms.json")).status_code == 200
    assert Message.objects.get().channel == "sms"
