"""Resend `email.received` webhooks (through Svix): signature window, body fetched from Resend, once only."""

from __future__ import annotations

import json
import time

import pytest

from agents.services import AgentAddresses
from channels_app.models import Message, WebhookEvent
from tests.channels_app.webhook_support import RESEND_SECRET, fixture, post_svix, svix_headers, webhook_secrets  # noqa: F401
from tests.fake_providers import RESEND_WEBHOOK_SECRET

PATH = "/webhooks/agent-a/email"
EMAIL_ID = "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"


@pytest.fixture
def agent(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(email="agent-a@agents.example.com"))
    return agent


@pytest.fixture
def fake_resend(live_provider_settings, settings):
    settings.PUBLIC_BASE_URL = "https://comms.example.com"
    live_provider_settings.add_received_email(
        EMAIL_ID, subject="Quarterly numbers", text="Revenue is up 12%.", html="<p>Revenue is up <b>12%</b>.</p>"
    )
    return live_provider_settings


def test_it_stores_a_received_email_with_the_body_fetched_from_resend(client, agent, fake_resend):
    response = post_svix(client, PATH, fixture("resend_email_received.json"), secret=RESEND_WEBHOOK_SECRET)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    message = Message.objects.get()
    assert message.channel == "email"
    assert message.from_address == "alice@example.com"
    # data.to is a list: the agent's own address is the recipient.
    assert message.to_address == "agent-a@agents.example.com"
    assert message.subject == "Quarterly numbers"
    assert message.body == "Revenue is up 12%."
    assert message.html == "<p>Revenue is up <b>12%</b>.</p>"
    assert message.external_id == EMAIL_ID
    fetch = fake_resend.last("resend", "GET", f"/emails/receiving/{EMAIL_ID}")
    assert fetch.bearer == fake_resend_api_key()


def fake_resend_api_key() -> str:
    from tests.fake_providers import RESEND_API_KEY

    return RESEND_API_KEY


def test_a_redelivery_is_stored_once_and_not_fetched_again(client, agent, fake_resend):
    body = json.dumps(fixture("resend_email_received.json"))
    headers = svix_headers(body, secret=RESEND_WEBHOOK_SECRET, msg_id="msg_2Lh9KRb0pzN4LePd3ZAeR")
    for _ in range(2):
        response = client.post(PATH, body, content_type="application/json", headers=headers)
        assert response.status_code == 200
    assert Message.objects.count() == 1
    assert WebhookEvent.objects.filter(provider="resend", event_id="msg_2Lh9KRb0pzN4LePd3ZAeR").count() == 1
    assert len(fake_resend.requests_to("resend", "GET")) == 1


def test_it_asks_for_a_redelivery_when_resend_cannot_give_the_body_now(client, agent, fake_resend):
    fake_resend.script("resend", status=500, json_body={"statusCode": 500, "message": "boom", "name": "internal_server_error"}, times=5)
    response = post_svix(client, PATH, fixture("resend_email_received.json"), secret=RESEND_WEBHOOK_SECRET)
    assert response.status_code == 503
    assert not Message.objects.exists()
    assert not WebhookEvent.objects.exists()


def test_it_keeps_the_metadata_when_resend_no_longer_has_the_email(client, agent, fake_resend):
    payload = fixture("resend_email_received.json")
    payload["data"]["email_id"] = "00000000-0000-0000-0000-000000000000"
    response = post_svix(client, PATH, payload, secret=RESEND_WEBHOOK_SECRET)
    assert response.status_code == 200
    message = Message.objects.get()
    assert message.subject == "Quarterly numbers"
    assert message.body == ""


@pytest.mark.usefixtures("webhook_secrets")
def test_it_accepts_an_inline_body_without_fetching(client, agent):
    payload = fixture("resend_email_received.json")
    payload["data"]["text"] = "Inline text body"
    response = post_svix(client, PATH, payload)
    assert response.status_code == 200
    assert Message.objects.get().body == "Inline text body"


@pytest.mark.usefixtures("webhook_secrets")
def test_it_refuses_a_stale_svix_timestamp(client, agent):
    payload = fixture("resend_email_received.json")
    response = post_svix(client, PATH, payload, timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 403
    assert not Message.objects.exists() and not WebhookEvent.objects.exists()


@pytest.mark.usefixtures("webhook_secrets")
def test_it_accepts_a_timestamp_within_five_minutes(client, agent):
    payload = fixture("resend_email_received.json")
    payload["data"]["text"] = "x"
    assert post_svix(client, PATH, payload, timestamp=int(time.time()) - 4 * 60).status_code == 200


@pytest.mark.usefixtures("webhook_secrets")
@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_it_refuses_a_missing_svix_header(client, agent, missing):
    payload = fixture("resend_email_received.json")
    body = json.dumps(payload)
    headers = svix_headers(body)
    del headers[missing]
    response = client.post(PATH, body, content_type="application/json", headers=headers)
    assert response.status_code == 403
    assert not Message.objects.exists()


@pytest.mark.usefixtures("webhook_secrets")
def test_it_refuses_a_tampered_email(client, agent):
    body = json.dumps(fixture("resend_email_received.json"))
    headers = svix_headers(body)
    tampered = body.replace("alice@example.com", "mallory@example.com")
    response = client.post(PATH, tampered, content_type="application/json", headers=headers)
    assert response.status_code == 403
    assert not Message.objects.exists()


@pytest.mark.usefixtures("webhook_secrets")
def test_it_refuses_a_garbled_signature_header(client, agent):
    body = json.dumps(fixture("resend_email_received.json"))
    headers = dict(svix_headers(body), **{"svix-signature": "v1,@@not-base64@@ nonsense"})
    response = client.post(PATH, body, content_type="application/json", headers=headers)
    assert response.status_code == 403


@pytest.mark.usefixtures("webhook_secrets")
def test_it_acknowledges_other_resend_events_without_storing(client, agent):
    payload = {"type": "email.opened", "created_at": "2026-11-28T16:40:12.000Z", "data": {"email_id": "x"}}
    response = post_svix(client, PATH, payload)
    assert response.status_code == 200
    assert not Message.objects.exists()


@pytest.mark.usefixtures("webhook_secrets")
def test_it_ignores_email_for_a_blocked_channel(client, agent):
    agent.blocked_channels = ["*"]
    agent.save()
    payload = fixture("resend_email_received.json")
    payload["data"]["text"] = "x"
    assert post_svix(client, PATH, payload).status_code == 200
    assert not Message.objects.exists()


def test_the_test_secret_is_a_svix_secret():
    assert RESEND_SECRET.startswith("whsec_")


# --- delivery events of the agent's own emails --------------------------------------------------

SENT_EMAIL_ID = "56761188-7520-42d8-8898-ff6fc54ce618"


@pytest.fixture
def sent_email(agent):
    return Message.objects.create(
        agent=agent,
        organization_id=agent.organization_id,
        direction="outbound",
        channel="email",
        from_address="agent-a@agents.example.com",
        to_address="alice@example.com",
        subject="Your appointment",
        body="See you at 10.",
        status="sent",
        provider="resend",
        external_id=SENT_EMAIL_ID,
    )


@pytest.mark.usefixtures("webhook_secrets")
def test_a_delivered_event_marks_the_agents_email_delivered(client, sent_email):
    response = post_svix(client, PATH, fixture("resend_email_delivered.json"))
    assert response.status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == "delivered"
    assert not Message.objects.filter(direction="inbound").exists()


@pytest.mark.usefixtures("webhook_secrets")
def test_a_bounce_becomes_a_delivery_failure_for_the_agent_once(client, sent_email):
    post_svix(client, PATH, fixture("resend_email_delivered.json"))
    first = post_svix(client, PATH, fixture("resend_email_bounced.json"))
    again = post_svix(client, PATH, fixture("resend_email_bounced.json"))
    assert (first.status_code, again.status_code) == (200, 200)
    sent_email.refresh_from_db()
    assert (sent_email.status, sent_email.error_code) == ("undelivered", "Permanent")
    assert "suppression list" in sent_email.error_message
    event = Message.objects.get(kind="delivery_failure")
    assert (event.channel, event.to_address, event.external_id, event.provider) == (
        "email", "alice@example.com", SENT_EMAIL_ID, "resend"
    )
    assert event.delivered_at is None


@pytest.mark.usefixtures("webhook_secrets")
def test_a_late_delivered_event_does_not_undo_a_bounce(client, sent_email):
    post_svix(client, PATH, fixture("resend_email_bounced.json"))
    post_svix(client, PATH, fixture("resend_email_delivered.json"))
    sent_email.refresh_from_db()
    assert sent_email.status == "undelivered"


@pytest.mark.usefixtures("webhook_secrets")
def test_a_spam_complaint_opts_the_recipient_out_of_the_agents_email(client, sent_email, make_agent):
    from agents.models import OptOut

    response = post_svix(client, PATH, fixture("resend_email_complained.json"))
    assert response.status_code == 200
    opt_out = OptOut.objects.get()
    assert (opt_out.agent_id, opt_out.channel, opt_out.contact, opt_out.keyword) == (
        "agent-a", "email", "alice@example.com", "COMPLAINT"
    )


@pytest.mark.usefixtures("webhook_secrets")
def test_a_delivery_event_for_an_email_of_another_agent_changes_nothing(client, sent_email, make_agent):
    make_agent("agent-b", addresses=AgentAddresses(email="agent-b@agents.example.com"))
    response = post_svix(client, "/webhooks/agent-b/email", fixture("resend_email_bounced.json"))
    assert response.status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == "sent"
    assert not Message.objects.filter(kind="delivery_failure").exists()


@pytest.mark.usefixtures("webhook_secrets")
def test_an_unsigned_delivery_event_is_refused_and_changes_nothing(client, sent_email):
    body = json.dumps(fixture("resend_email_bounced.json"))
    headers = svix_headers(body)
    response = client.post(PATH, data=body, content_type="application/json", **{
        f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "svix-signature"
    })
    assert response.status_code == 403
    sent_email.refresh_from_db()
    assert sent_email.status == "sent"
