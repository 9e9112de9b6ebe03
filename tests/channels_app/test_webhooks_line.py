"""LINE webhooks: the agent's own channel secret or the default, message types, follow/unfollow, standby, verify."""

from __future__ import annotations

import json

import pytest

from agents.models import OptOut
from agents.services import AgentAddresses
from channels_app.models import Message, WebhookEvent
from tests.channels_app.webhook_support import LINE_SECRET, fixture, post_line, webhook_secrets  # noqa: F401

pytestmark = pytest.mark.usefixtures("webhook_secrets")

PATH = "/webhooks/agent-a/line"
USER = "U4af4980629a2b3c4d5e6f708192a3b4c"


@pytest.fixture
def agent(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(line=True))
    return agent


@pytest.fixture
def own_channel_agent(make_agent):
    agent, _token = make_agent(
        "agent-b", addresses=AgentAddresses(line=True), line_channel_secret="agent-b-own-secret",
        line_channel_access_token="agent-b-token",
    )
    return agent


def test_it_stores_a_text_message(client, agent):
    response = post_line(client, PATH, fixture("line_text.json"))
    assert response.status_code == 200
    assert response.content == b""
    message = Message.objects.get()
    assert (message.channel, message.from_address) == ("line", USER)
    assert message.body == "こんにちは、予約できますか？"
    assert message.external_id == "468789577898262530"


def test_it_renders_a_sticker_as_text(client, agent):
    assert post_line(client, PATH, fixture("line_sticker.json")).status_code == 200
    body = Message.objects.get().body
    assert body.startswith("[sticker 11537/52002734]")
    assert "cony" in body


def test_it_answers_the_console_verify_call(client, agent):
    response = post_line(client, PATH, fixture("line_verify.json"))
    assert response.status_code == 200
    assert not Message.objects.exists()


def test_an_unfollow_opts_the_user_out_and_a_follow_back_in(client, agent):
    assert post_line(client, PATH, fixture("line_unfollow.json")).status_code == 200
    assert OptOut.objects.filter(agent=agent, channel="line", contact=USER).exists()
    assert post_line(client, PATH, fixture("line_follow.json")).status_code == 200
    assert not OptOut.objects.exists()
    assert not Message.objects.exists()


def test_a_standby_message_is_stored_and_not_replied_to(client, agent, live_provider_settings, settings):
    settings.LINE_CHANNEL_SECRET = LINE_SECRET
    response = post_line(client, PATH, fixture("line_standby.json"))
    assert response.status_code == 200
    assert Message.objects.get().body == "Is anyone there?"
    assert live_provider_settings.requests_to("line") == []


def test_a_redelivered_event_is_processed_once(client, agent):
    payload = fixture("line_text.json")
    payload["events"][0]["deliveryContext"]["isRedelivery"] = True
    post_line(client, PATH, fixture("line_text.json"))
    assert post_line(client, PATH, payload).status_code == 200
    assert Message.objects.count() == 1
    assert WebhookEvent.objects.filter(provider="line").count() == 1


def test_it_refuses_a_tampered_body(client, agent):
    raw = json.dumps(fixture("line_text.json"), ensure_ascii=False).encode()
    from channels_app.signatures import line_sign

    signature = line_sign(body=raw, secret=LINE_SECRET)
    tampered = raw.replace("予約".encode(), "解約".encode())
    response = client.post(PATH, tampered, content_type="application/json", headers={"X-Line-Signature": signature})
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_it_refuses_a_missing_signature(client, agent):
    response = client.post(PATH, json.dumps(fixture("line_text.json")), content_type="application/json")
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_an_agent_with_its_own_channel_is_checked_with_its_own_secret(client, own_channel_agent):
    path = "/webhooks/agent-b/line"
    assert post_line(client, path, fixture("line_text.json"), secret=LINE_SECRET).status_code == 403
    assert post_line(client, path, fixture("line_text.json"), secret="agent-b-own-secret").status_code == 200
    assert Message.objects.get().agent_id == "agent-b"


def test_it_refuses_everything_in_live_mode_without_any_line_secret(client, agent, settings):
    settings.LINE_CHANNEL_SECRET = None
    settings.DEMO_MODE = False
    assert post_line(client, PATH, fixture("line_text.json"), secret="").status_code == 403


def test_a_blocked_line_channel_is_acknowledged_and_ignored(client, agent):
    agent.blocked_channels = ["line"]
    agent.save()
    assert post_line(client, PATH, fixture("line_text.json")).status_code == 200
    assert not Message.objects.exists()
