"""send-message through REST, in demo mode and in live mode against the loopback fake providers."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from agents.models import OptOut, UsageBucket, UsageRecord
from channels_app.models import Message
from tests.fake_providers import LINE_CHANNEL_ACCESS_TOKEN, RESEND_API_KEY, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.ops_helpers import Api, agent_with_numbers

pytestmark = pytest.mark.django_db

AWKWARD_TEXT = "Tom & cat; a=b?c\r\nsecond line 🐱👍🏽 שלום עולם مرحبا 日本語 %20 <b>&amp;</b>"
TO = "+14155550123"


@pytest.fixture
def demo(settings):
    settings.DEMO_MODE = True


@pytest.fixture
def agent(default_org):
    return agent_with_numbers("agent-a", default_org, phone="+14155550100", whatsapp="+14155550101", line=True)


def sent_counter(channel: str) -> float:
    return REGISTRY.get_sample_value("mcp_messages_sent_total", {"channel": channel}) or 0.0


# --- demo mode ------------------------------------------------------------------------------------


def test_it_sends_an_sms_in_demo_mode_and_records_it(demo, agent):
    _, token = agent
    before = sent_counter("sms")
    status, body = Api(token).post("send-message", {"to": TO, "body": "Hello"})
    assert status == 200, body
    assert body["success"] is True
    assert body["channel"] == "sms" and body["from"] == "+14155550100" and body["to"] == TO
    assert body["externalId"].startswith("SM") and len(body["externalId"]) == 34
    assert body["cost"] == pytest.approx(0.0083)
    message = Message.objects.get(pk=body["messageId"])
    assert (message.direction, message.status, message.provider) == ("outbound", body["status"], "sandbox")
    assert UsageRecord.objects.filter(agent_id="agent-a", reference=message.pk).count() == 1
    assert sent_counter("sms") == before + 1


@pytest.mark.parametrize(
    ("channel", "to", "extra", "sender"),
    [
        ("email", "ana@example.com", {"subject": "Hi", "html": "<p>Hi</p>"}, "agent-a@agents.example.com"),
        ("whatsapp", "whatsapp:+14155550123", {"templateId": "HX" + "0" * 32}, "+14155550101"),
        ("line", "U" + "a" * 32, {}, "agent-a"),
    ],
)
def test_it_sends_on_every_channel_in_demo_mode(demo, agent, channel, to, extra, sender):
    _, token = agent
    status, body = Api(token).post("send-message", {"to": to, "body": "Hello", "channel": channel, **extra})
    assert status == 200, body
    assert body["channel"] == channel and body["from"] == sender
    assert body["to"] == to.removeprefix("whatsapp:")


def test_it_accepts_media_urls_as_a_list_or_a_single_string(demo, agent):
    _, token = agent
    api = Api(token)
    _, first = api.post("send-message", {"to": TO, "body": "pic", "mediaUrls": ["https://example.com/a.png"]})
    _, second = api.post("send-message", {"to": TO, "body": "pic", "mediaUrl": "https://example.com/b.png"})
    assert Message.objects.get(pk=first["messageId"]).media_urls == ["https://example.com/a.png"]
    assert Message.objects.get(pk=second["messageId"]).media_urls == ["https://example.com/b.png"]


def test_it_never_rejects_normal_text_for_its_characters(demo, agent):
    _, token = agent
    status, body = Api(token).post("send-message", {"to": TO, "body": AWKWARD_TEXT})
    assert status == 200, body
    assert Message.objects.get(pk=body["messageId"]).body == AWKWARD_TEXT


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "code", "field"),
    [
        ({"to": "4155550123", "body": "x"}, 400, "invalid_phone", "to"),
        ({"to": "+1415", "body": "x"}, 400, "invalid_phone", "to"),
        ({"to": "+14155550123; DROP", "body": "x"}, 400, "invalid_phone", "to"),
        ({"to": "not-an-email", "body": "x", "channel": "email", "subject": "s"}, 400, "invalid_email", "to"),
        ({"to": "ana@example.com", "body": "x", "channel": "email"}, 400, "invalid_request", "subject"),
        ({"to": TO, "body": "x", "channel": "pigeon"}, 400, "invalid_request", "channel"),
        ({"to": TO, "body": "x", "mediaUrls": ["file:///etc/passwd"]}, 400, "invalid_request", "mediaUrls.0"),
        ({"body": "x"}, 400, "invalid_request", "to"),
        ({"to": TO}, 400, "invalid_request", "body"),
    ],
)
def test_it_refuses_bad_input_naming_the_field(demo, agent, payload, status, code, field):
    _, token = agent
    got_status, body = Api(token).post("send-message", payload)
    assert (got_status, body["code"], body.get("field")) == (status, code, field), body
    assert Message.objects.count() == 0


def test_it_ignores_unknown_fields(demo, agent):
    _, token = agent
    status, body = Api(token).post("send-message", {"to": TO, "body": "x", "priority": "urgent"})
    assert status == 200, body


def test_it_says_when_the_agent_has_no_number_for_the_channel(demo, default_org):
    _, token = agent_with_numbers("agent-n", default_org, phone=None)
    status, body = Api(token).post("send-message", {"to": TO, "body": "x"})
    assert (status, body["code"]) == (400, "channel_not_provisioned")


# --- idempotency ----------------------------------------------------------------------------------


def test_it_returns_the_first_result_for_a_repeated_idempotency_key(demo, agent):
    _, token = agent
    api = Api(token)
    _, first = api.post("send-message", {"to": TO, "body": "once", "idempotencyKey": "k-1"})
    _, second = api.post("send-message", {"to": TO, "body": "once", "idempotencyKey": "k-1"})
    assert second == first
    assert Message.objects.count() == 1
    assert UsageRecord.objects.count() == 1
    _, other = api.post("send-message", {"to": TO, "body": "twice", "idempotencyKey": "k-2"})
    assert other["messageId"] != first["messageId"]


def test_it_scopes_idempotency_keys_to_the_agent(demo, agent, default_org):
    _, token_a = agent
    _, token_b = agent_with_numbers("agent-b", default_org, phone="+14155550102")
    _, first = Api(token_a).post("send-message", {"to": TO, "body": "x", "idempotencyKey": "same"})
    _, second = Api(token_b).post("send-message", {"to": TO, "body": "x", "idempotencyKey": "same"})
    assert first["messageId"] != second["messageId"]


def test_it_sends_again_once_the_idempotency_key_is_a_day_old(demo, agent):
    _, token = agent
    api = Api(token)
    _, first = api.post("send-message", {"to": TO, "body": "x", "idempotencyKey": "old"})
    Message.objects.filter(pk=first["messageId"]).update(created_at=Message.objects.get().created_at.replace(year=2020))
    _, second = api.post("send-message", {"to": TO, "body": "x", "idempotencyKey": "old"})
    assert second["messageId"] != first["messageId"]


# --- live mode against the fake providers --------------------------------------------------------------


def test_it_sends_an_sms_through_twilio_byte_exact(live_provider_settings, agent):
    fake = live_provider_settings
    _, token = agent
    status, body = Api(token).post(
        "send-message", {"to": TO, "body": AWKWARD_TEXT, "mediaUrls": ["https://example.com/a.png?x=1&y=2"]}
    )
    assert status == 200, body
    request = fake.last("twilio", "POST", r"/Messages\.json$")
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"
    assert request.basic_auth == (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    assert request.form["Body"] == AWKWARD_TEXT
    assert request.form["From"] == "+14155550100" and request.form["To"] == TO
    assert request.form_lists["MediaUrl"] == ["https://example.com/a.png?x=1&y=2"]
    assert request.form["StatusCallback"] == "http://localhost:3100/webhooks/agent-a/message-status"
    assert body["externalId"] == Message.objects.get().external_id
    assert body["externalId"].startswith("SM")


def test_it_sends_whatsapp_with_prefixed_addresses(live_provider_settings, agent):
    fake = live_provider_settings
    _, token = agent
    status, body = Api(token).post(
        "send-message", {"to": TO, "body": "hi", "channel": "whatsapp", "templateId": "HX" + "1" * 32}
    )
    assert status == 200, body
    request = fake.last("twilio", "POST", r"/Messages\.json$")
    assert request.form["From"] == "whatsapp:+14155550101" and request.form["To"] == f"whatsapp:{TO}"


def test_it_sends_email_through_resend_byte_exact(live_provider_settings, agent):
    fake = live_provider_settings
    _, token = agent
    status, body = Api(token).post(
        "send-message",
        {"to": "ana@example.com", "body": AWKWARD_TEXT, "channel": "email", "subject": "Re: Tom & cat 🐱",
         "idempotencyKey": "mail-1"},
    )
    assert status == 200, body
    request = fake.last("resend", "POST")
    assert request.bearer == RESEND_API_KEY
    assert request.json["text"] == AWKWARD_TEXT
    assert request.json["subject"] == "Re: Tom & cat 🐱"
    assert request.json["to"] in (["ana@example.com"], "ana@example.com")
    assert request.json["from"].endswith("agent-a@agents.example.com")


def test_it_pushes_line_messages_with_the_default_channel(live_provider_settings, agent):
    fake = live_provider_settings
    _, token = agent
    to = "U" + "b" * 32
    status, body = Api(token).post("send-message", {"to": to, "body": AWKWARD_TEXT, "channel": "line"})
    assert status == 200, body
    request = fake.last("line", "POST")
    assert request.bearer == LINE_CHANNEL_ACCESS_TOKEN
    assert request.json["to"] == to
    assert request.json["messages"][0]["text"] == AWKWARD_TEXT


def test_it_uses_the_agents_own_line_credentials(live_provider_settings, default_org):
    fake = live_provider_settings
    with fake.lock:
        fake.line_tokens.add("own-token")
    _, token = agent_with_numbers("agent-l", default_org, line=True, line_channel_access_token="own-token",
                                  line_channel_secret="own-secret")
    status, _ = Api(token).post("send-message", {"to": "U" + "c" * 32, "body": "x", "channel": "line"})
    assert status == 200
    assert fake.last("line", "POST").bearer == "own-token"


def test_it_sends_once_for_a_repeated_idempotency_key_in_live_mode(live_provider_settings, agent):
    fake = live_provider_settings
    _, token = agent
    api = Api(token)
    responses = [api.post("send-message", {"to": TO, "body": "x", "idempotencyKey": "live-1"}) for _ in range(3)]
    assert len({body["messageId"] for _, body in responses}) == 1
    assert len(fake.requests_to("twilio", "POST", r"/Messages\.json$")) == 1


def test_it_charges_nothing_when_the_provider_refuses(live_provider_settings, agent):
    fake = live_provider_settings
    _, token = agent
    fake.twilio_error(21211)
    before = sent_counter("sms")
    status, body = Api(token).post("send-message", {"to": TO, "body": "x", "idempotencyKey": "refused"})
    assert status == 502, body
    assert body["code"] == "provider_error" and body["providerCode"] == "21211" and body["permanent"] is True
    message = Message.objects.get()
    assert message.status == "failed" and message.error_code == "21211"
    assert UsageRecord.objects.count() == 0
    assert all(b.actions == 0 and b.spend == Decimal("0") for b in UsageBucket.objects.all())
    assert sent_counter("sms") == before
    # The failed attempt does not hold the key: a retry really sends.
    status, body = Api(token).post("send-message", {"to": TO, "body": "x", "idempotencyKey": "refused"})
    assert status == 200, body


def test_it_records_an_opt_out_when_twilio_says_the_recipient_unsubscribed(live_provider_settings, agent):
    fake = live_provider_settings
    _, token = agent
    fake.twilio_error(21610)
    status, body = Api(token).post("send-message", {"to": TO, "body": "x"})
    assert (status, body["code"]) == (403, "opted_out")
    assert OptOut.objects.filter(agent_id="agent-a", channel="sms", contact=TO).exists()
    status, body = Api(token).post("send-message", {"to": TO, "body": "x"})
    assert (status, body["code"]) == (403, "opted_out")
    assert len(fake.requests_to("twilio", "POST", r"/Messages\.json$")) == 1


def test_it_answers_503_when_the_channel_has_no_provider_configured(settings, agent):
    settings.DEMO_MODE = False
    _, token = agent
    status, body = Api(token).post("send-message", {"to": TO, "body": "x"})
    assert (status, body["code"]) == (503, "provider_not_configured")
    assert Message.objects.count() == 0


# --- the demo sandbox: the same steps and end states as a live provider ---------------------------------


def test_it_records_a_sandbox_send_with_its_outcome_and_usage(demo, agent):
    _, token = agent
    status, body = Api(token).post("send-message", {"to": TO, "body": "x"})
    assert status == 200, body
    message = Message.objects.get()
    assert (message.status, message.external_id, message.cost) == ("delivered", body["externalId"], Decimal("0.0083"))
    assert UsageRecord.objects.get().reference == message.pk


def test_it_charges_nothing_when_the_sandbox_refuses(demo, agent):
    _, token = agent
    before = sent_counter("sms")
    refused = {"to": "+15005550001", "body": "x", "idempotencyKey": "refused"}
    status, body = Api(token).post("send-message", refused)
    assert (status, body["code"], body["providerCode"]) == (502, "provider_error", "21211")
    message = Message.objects.get()
    assert (message.status, message.error_code, message.idempotency_key) == ("failed", "21211", "")
    assert message.to_address == "+15005550001" and message.provider == "sandbox"
    assert UsageRecord.objects.count() == 0
    assert all(b.actions == 0 and b.spend == Decimal("0") for b in UsageBucket.objects.all())
    assert sent_counter("sms") == before
    # The failed attempt does not hold the key: a retry to a good number really sends.
    status, body = Api(token).post("send-message", {**refused, "to": TO})
    assert status == 200, body
    assert UsageBucket.objects.get(scope="agent", window="minute").actions == 1


def test_it_records_an_opt_out_when_the_sandbox_says_the_recipient_unsubscribed(demo, agent):
    _, token = agent
    status, body = Api(token).post("send-message", {"to": "+15005550004", "body": "x"})
    assert (status, body["code"]) == (403, "opted_out")
    assert OptOut.objects.filter(agent_id="agent-a", channel="sms", contact="+15005550004").exists()
    assert Message.objects.get().status == "failed"


def test_it_records_an_unexpected_sandbox_error_as_a_failed_row_and_raises_it(demo, agent, monkeypatch):
    from channels_app.providers.sandbox import SandboxMessagingProvider
    from channels_app.services import SendMessageInput, message_send

    row, _ = agent

    def broken(self, message):
        raise RuntimeError("boom")

    monkeypatch.setattr(SandboxMessagingProvider, "send", broken)
    with pytest.raises(RuntimeError, match="boom"):
        message_send(agent=row, request=SendMessageInput(channel="sms", to=TO, body="x"))
    message = Message.objects.get()
    assert (message.status, message.error_code) == ("failed", "internal_error")
    assert all(b.actions == 0 for b in UsageBucket.objects.all())


def test_a_limit_refusal_wins_over_a_sandbox_refusal_and_leaves_nothing(demo, agent):
    from agents.models import AgentLimits

    row, token = agent
    AgentLimits.objects.filter(agent=row).update(max_actions_per_minute=0)
    status, body = Api(token).post("send-message", {"to": "+15005550004", "body": "x"})
    assert (status, body["code"], body["limitType"]) == (429, "rate_limited", "per_minute")
    assert not Message.objects.exists() and not UsageRecord.objects.exists()
    assert not OptOut.objects.exists()  # the sandbox's "unsubscribed" answer is not acted on


# --- usage and billing as a caller reads them -------------------------------------------------------------


def usage_and_billing(token: str) -> tuple[dict, dict]:
    api = Api(token)
    status, usage = api.get("usage", {"period": "today"})
    assert status == 200, usage
    status, billing = api.get("billing", {"period": "month"})
    assert status == 200, billing
    return usage, billing


def test_it_shows_a_send_in_usage_and_billing_at_its_cost(demo, agent):
    _, token = agent
    status, body = Api(token).post("send-message", {"to": TO, "body": "x"})
    assert status == 200, body
    usage, billing = usage_and_billing(token)
    assert usage["actions"] == {"send_message": 1} and usage["totalActions"] == 1
    assert usage["costsByChannel"] == {"sms": pytest.approx(0.0083)}
    assert usage["currentUsage"]["actionsThisMinute"] == 1
    assert usage["currentUsage"]["spendToday"] == pytest.approx(0.0083)
    assert billing["providerCost"] == pytest.approx(0.0083) and billing["byChannel"]["sms"]["count"] == 1


def test_it_leaves_usage_and_billing_as_if_a_refused_send_never_happened(demo, agent):
    _, token = agent
    status, body = Api(token).post("send-message", {"to": "+15005550002", "body": "x"})
    assert (status, body["code"]) == (502, "provider_error")
    usage, billing = usage_and_billing(token)
    assert usage["actions"] == {} and usage["totalActions"] == 0 and usage["costsByChannel"] == {}
    assert usage["currentUsage"]["actionsThisMinute"] == 0 and usage["currentUsage"]["spendToday"] == 0
    assert billing["providerCost"] == 0 and billing["byChannel"] == {}


def test_it_charges_the_providers_price_when_it_differs_from_the_estimate(demo, agent, monkeypatch):
    from channels_app.providers.sandbox import SandboxMessagingProvider

    _, token = agent
    estimate_send = SandboxMessagingProvider.send

    def priced(self, message):
        result = estimate_send(self, message)
        return replace(result, cost=Decimal("0.0500"), cost_estimated=False)

    monkeypatch.setattr(SandboxMessagingProvider, "send", priced)
    status, body = Api(token).post("send-message", {"to": TO, "body": "x"})
    assert status == 200, body
    assert body["cost"] == pytest.approx(0.05)
    assert Message.objects.get().cost == Decimal("0.05")
    assert UsageRecord.objects.get().provider_cost == Decimal("0.05")
    spend = {(b.scope, b.window): b.spend for b in UsageBucket.objects.all()}
    assert spend[("agent", "day")] == spend[("agent", "month")] == Decimal("0.05")
    assert spend[("org", "day")] == spend[("org", "month")] == Decimal("0.05")
    usage, billing = usage_and_billing(token)
    assert usage["costsByChannel"] == {"sms": pytest.approx(0.05)}
    assert usage["currentUsage"]["spendToday"] == pytest.approx(0.05)
    assert billing["providerCost"] == pytest.approx(0.05)


def statement(sql: str) -> str:
    """'INSERT agents_usagerecord' for an INSERT INTO "agents_usagerecord" (...), and so on."""
    words = sql.replace(" OR IGNORE", "").split()
    table = words[2] if words[0] in ("INSERT", "DELETE") else words[1] if words[0] == "UPDATE" else ""
    if words[0] == "SELECT":
        table = words[words.index("FROM") + 1]
    return f"{words[0]} {table.strip(chr(34))}"


def test_it_records_the_send_and_its_usage_before_the_provider_call_and_the_outcome_in_one_statement(
    demo, agent, monkeypatch
):
    from channels_app.providers.sandbox import SandboxMessagingProvider
    from channels_app.services import SendMessageInput, message_send

    row, token = agent
    assert Api(token).post("send-message", {"to": TO, "body": "first"})[0] == 200
    send = SandboxMessagingProvider.send
    seen: dict[str, object] = {}

    def watching(self, message):
        seen["before"] = [statement(query["sql"]) for query in captured.captured_queries]
        seen["row"] = Message.objects.values_list("status", flat=True).get(pk=message.idempotency_key)
        seen["recorded"] = UsageRecord.objects.filter(reference=message.idempotency_key).exists()
        return send(self, message)

    monkeypatch.setattr(SandboxMessagingProvider, "send", watching)
    row = type(row).objects.select_related("organization", "limits").get(pk=row.pk)
    with CaptureQueriesContext(connection) as captured:
        message_send(agent=row, request=SendMessageInput(channel="sms", to=TO, body="x"))
    assert seen["row"] == "pending" and seen["recorded"] is True
    before = seen["before"]
    # The sender address and the opt-out are read by one statement (orchestrator.sql).
    assert before[0] == "SELECT agents_channeladdress" and "agents_optout" in captured.captured_queries[0]["sql"]
    assert "SELECT agents_optout" not in before
    # Counter rows are created at most once a window (INSERT agents_usagebucket), so they are left out here.
    writes = [s for s in before if s.split()[0] in ("INSERT", "UPDATE") and s != "INSERT agents_usagebucket"]
    assert writes == ["INSERT channels_app_message", "INSERT agents_usagerecord", "UPDATE agents_usagebucket"]
    # The provider's answer at the estimated price is written by one statement: no second transaction.
    after = [statement(query["sql"]) for query in captured.captured_queries[len(before) + 2:]]
    assert after == ["UPDATE channels_app_message"]
