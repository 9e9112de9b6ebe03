"""provision, deprovision, channel-status, usage, billing, agent-limits and regenerate-token over REST."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from agents.crypto import decrypt
from agents.models import Agent, AgentToken, ChannelAddress, PhoneNumber, UsageRecord, WhatsAppSender
from tests.fake_providers import TWILIO_ACCOUNT_SID
from tests.ops_helpers import Api, agent_with_numbers

pytestmark = pytest.mark.django_db

ALL = ["sms", "voice", "email", "whatsapp", "line"]


@pytest.fixture
def demo(settings):
    settings.DEMO_MODE = True


@pytest.fixture
def orch(orchestrator_token):
    return Api(orchestrator_token)


# --- provision ------------------------------------------------------------------------------------


def test_it_provisions_every_channel_in_demo_mode_from_the_sandbox_range(demo, orch):
    status, body = orch.post("provision", {"agentId": "bot-1", "displayName": "Bot", "capabilities": ALL,
                                           "greeting": "Hi", "line": {"channelAccessToken": "t", "channelSecret": "s"}})
    assert status == 200, body
    number = body["channels"]["phone"]["number"]
    assert number.startswith("+1202555") and 100 <= int(number[-4:]) <= 199
    assert body["channels"]["voiceAi"]["number"] == number
    assert body["channels"]["whatsapp"]["number"]
    assert body["channels"]["email"]["address"] == "bot-1@agents.example.com"
    assert body["channels"]["line"] == {"status": "active"}
    assert body["orgId"] == "default" and body["securityToken"].startswith("agt_")
    assert body["callbackSecret"]
    assert body["webhookUrls"]["sms"] == "http://localhost:3100/webhooks/bot-1/sms"
    assert body["webhookUrls"]["callStatus"] == "http://localhost:3100/webhooks/bot-1/call-status"
    assert PhoneNumber.objects.get(number=number).is_sandbox is True
    agent = Agent.objects.get(pk="bot-1")
    assert decrypt(agent.line_channel_access_token_encrypted) == "t"  # stored encrypted, readable by us
    assert agent.line_channel_access_token_encrypted != "t"
    # The token works, once.
    assert Api(body["securityToken"]).get("channel-status")[0] == 200


def test_it_generates_an_agent_id_and_gives_out_distinct_sandbox_numbers(demo, orch):
    _, first = orch.post("provision", {"displayName": "One", "capabilities": ["sms"]})
    _, second = orch.post("provision", {"displayName": "Two", "capabilities": ["sms"]})
    assert first["agentId"] != second["agentId"]
    assert first["channels"]["phone"]["number"] != second["channels"]["phone"]["number"]
    assert first["channels"]["whatsapp"] is None and first["channels"]["email"] is None


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"capabilities": ["sms"]}, "invalid_request", "displayName"),
        ({"displayName": "X", "capabilities": []}, "invalid_request", "capabilities"),
        ({"displayName": "X", "capabilities": ["fax"]}, "invalid_request", "capabilities.0"),
        ({"displayName": "X", "capabilities": ["sms"], "country": "USA"}, "invalid_request", "country"),
        ({"displayName": "X", "capabilities": ["sms"], "agentId": "bad id!"}, "invalid_request", "agentId"),
    ],
)
def test_it_refuses_bad_provision_requests(demo, orch, payload, code, field):
    status, body = orch.post("provision", payload)
    assert (status, body["code"], body.get("field")) == (400, code, field), body
    assert Agent.objects.count() == 0


def test_it_refuses_an_existing_agent_id(demo, orch):
    orch.post("provision", {"agentId": "dup", "displayName": "A", "capabilities": ["email"]})
    status, body = orch.post("provision", {"agentId": "dup", "displayName": "B", "capabilities": ["email"]})
    assert (status, body["code"]) == (409, "agent_exists")


def test_an_agent_id_taken_in_another_org_gets_the_same_answer_as_one_taken_in_ones_own_and_buys_nothing(
    live_provider_settings, make_org
):
    fake = live_provider_settings
    _, acme = make_org("Acme", "acme")
    _, globex = make_org("Globex", "globex")
    request = {"agentId": "sales", "displayName": "Sales", "capabilities": ["sms", "email"]}
    assert Api(acme).post("provision", request)[0] == 200
    purchases = len(fake.requests_to("twilio", "POST", r"/IncomingPhoneNumbers\.json$"))

    own = Api(acme).client.post("/api/v1/provision", json.dumps(request), content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {acme}")
    other = Api(globex).client.post("/api/v1/provision", json.dumps(request), content_type="application/json",
                                    HTTP_AUTHORIZATION=f"Bearer {globex}")

    assert (own.status_code, own.content) == (other.status_code, other.content)
    assert other.status_code == 409 and other.json()["code"] == "agent_exists"
    assert b"acme" not in other.content.lower()
    # Refused before anything was bought: no purchase (and release) whose cost or delay tells more.
    assert len(fake.requests_to("twilio", "POST", r"/IncomingPhoneNumbers\.json$")) == purchases
    assert fake.requests_to("twilio", "DELETE", r"/IncomingPhoneNumbers/") == []
    assert Agent.objects.get(pk="sales").organization_id == "acme"


def test_it_puts_agents_in_the_org_of_an_org_token_and_in_orgid_for_the_orchestrator(demo, orch, make_org):
    org, org_token = make_org("Acme", "acme")
    _, body = Api(org_token).post("provision", {"displayName": "A", "capabilities": ["email"]})
    assert body["orgId"] == "acme"
    _, body = orch.post("provision", {"displayName": "B", "capabilities": ["email"], "orgId": "acme"})
    assert body["orgId"] == "acme"
    status, body = orch.post("provision", {"displayName": "C", "capabilities": ["email"], "orgId": "nope"})
    assert (status, body["code"]) == (404, "not_found")
    status, body = Api(org_token).post("provision", {"displayName": "D", "capabilities": ["email"], "orgId": "default"})
    assert status == 403


def test_it_uses_the_email_domain_asked_for(demo, orch):
    _, body = orch.post("provision", {"agentId": "m", "displayName": "M", "capabilities": ["email"],
                                      "emailDomain": "Mail.Example.ORG"})
    assert body["channels"]["email"]["address"] == "m@mail.example.org"


def test_an_agent_token_may_not_provision(demo, default_org):
    _, token = agent_with_numbers("agent-a", default_org)
    status, body = Api(token).post("provision", {"displayName": "X", "capabilities": ["sms"]})
    assert (status, body["code"]) == (403, "forbidden")


def test_it_buys_a_number_with_our_webhooks_in_live_mode(live_provider_settings, orch):
    fake = live_provider_settings
    WhatsAppSender.objects.create(phone_number="+14155550177", sender_sid="XE" + "1" * 32)
    status, body = orch.post("provision", {"agentId": "live-1", "displayName": "Live", "capabilities": ALL,
                                           "country": "gb"})
    assert status == 200, body
    search = fake.last("twilio", "GET", r"/AvailablePhoneNumbers/GB/Local\.json$")
    assert search.query.get("SmsEnabled") == ["true"] and search.query.get("VoiceEnabled") == ["true"]
    purchase = fake.last("twilio", "POST", r"/IncomingPhoneNumbers\.json$")
    assert purchase.path == f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/IncomingPhoneNumbers.json"
    assert purchase.form["SmsUrl"] == "http://localhost:3100/webhooks/live-1/sms"
    assert purchase.form["VoiceUrl"] == "http://localhost:3100/webhooks/live-1/voice"
    assert purchase.form["StatusCallback"] == "http://localhost:3100/webhooks/live-1/call-status"
    assert body["channels"]["phone"]["number"] == purchase.form["PhoneNumber"]
    number = PhoneNumber.objects.get(agent_id="live-1")
    assert number.provider_sid.startswith("PN") and number.is_sandbox is False
    assert body["channels"]["whatsapp"]["number"] == "+14155550177"
    assert WhatsAppSender.objects.get(phone_number="+14155550177").agent_id == "live-1"


def test_it_refuses_whatsapp_when_no_sender_is_free_without_buying_anything(live_provider_settings, orch):
    fake = live_provider_settings
    status, body = orch.post("provision", {"displayName": "W", "capabilities": ["sms", "whatsapp"]})
    assert (status, body["code"]) == (409, "whatsapp_sender_unavailable")
    assert fake.requests_to("twilio", "POST", r"/IncomingPhoneNumbers\.json$") == []
    assert Agent.objects.count() == 0


def test_a_failure_after_the_purchase_releases_the_number_and_leaves_nothing(live_provider_settings, orch, default_org):
    fake = live_provider_settings
    # Someone else already owns the address this provision will ask for: it fails after buying.
    agent_with_numbers("other", default_org, phone=None)
    ChannelAddress.objects.filter(agent_id="other", kind="email").update(address="clash@agents.example.com")
    status, body = orch.post("provision", {"agentId": "clash", "displayName": "Clash", "capabilities": ["sms", "email"]})
    assert (status, body["code"]) == (409, "address_in_use"), body
    assert len(fake.requests_to("twilio", "POST", r"/IncomingPhoneNumbers\.json$")) == 1
    assert len(fake.requests_to("twilio", "DELETE", r"/IncomingPhoneNumbers/PN[0-9a-f]{32}\.json$")) == 1
    assert not Agent.objects.filter(pk="clash").exists()
    assert PhoneNumber.objects.count() == 0
    assert not AgentToken.objects.filter(agent_id="clash").exists()


def test_it_answers_503_when_live_provisioning_has_no_telephony_configured(settings, orch):
    settings.DEMO_MODE = False
    status, body = orch.post("provision", {"displayName": "X", "capabilities": ["sms"]})
    assert (status, body["code"]) == (503, "provider_not_configured")


# --- deprovision and channel-status -----------------------------------------------------------------------


def test_deprovision_releases_the_number_returns_the_sender_and_revokes_tokens(live_provider_settings, orch):
    fake = live_provider_settings
    WhatsAppSender.objects.create(phone_number="+14155550177", sender_sid="XE" + "1" * 32)
    _, provisioned = orch.post("provision", {"agentId": "gone", "displayName": "G", "capabilities": ["sms", "whatsapp"]})
    sid = PhoneNumber.objects.get(agent_id="gone").provider_sid
    status, body = orch.post("deprovision", {"agentId": "gone"})
    assert status == 200, body
    assert body == {"success": True, "agentId": "gone", "status": "deprovisioned", "numberReleased": True,
                    "revokedTokens": 1}
    release = fake.last("twilio", "DELETE")
    assert release.path.endswith(f"/IncomingPhoneNumbers/{sid}.json")
    assert WhatsAppSender.objects.get(phone_number="+14155550177").agent_id is None
    assert PhoneNumber.objects.count() == 0
    status, body = Api(provisioned["securityToken"]).get("channel-status")
    assert (status, body["code"]) == (401, "invalid_token")
    status, body = orch.get("channel-status", {"agentId": "gone"})
    assert status == 200 and body["status"] == "deprovisioned" and body["channels"]["phone"] is None


def test_deprovision_can_keep_the_number_in_the_pool(demo, orch):
    _, provisioned = orch.post("provision", {"agentId": "keep", "displayName": "K", "capabilities": ["sms"]})
    _, body = orch.post("deprovision", {"agentId": "keep", "releaseNumber": False})
    assert body["numberReleased"] is False
    kept = PhoneNumber.objects.get(number=provisioned["channels"]["phone"]["number"])
    assert kept.agent_id is None
    # The freed sandbox number is given to the next agent.
    _, again = orch.post("provision", {"agentId": "next", "displayName": "N", "capabilities": ["sms"]})
    assert again["channels"]["phone"]["number"] == kept.number


def test_channel_status_reports_channels_blocks_and_connection(demo, default_org):
    agent, token = agent_with_numbers("agent-a", default_org, phone="+14155550100", whatsapp="+14155550101",
                                      line=True)
    Agent.objects.filter(pk="agent-a").update(blocked_channels=["voice"])
    status, body = Api(token).get("channel-status")
    assert status == 200
    assert body == {
        "agentId": "agent-a",
        "displayName": "Agent-A",
        "status": "active",
        "blockedChannels": ["voice"],
        "channels": {
            "phone": {"number": "+14155550100", "status": "active"},
            "whatsapp": {"number": "+14155550101", "status": "active"},
            "email": {"address": "agent-a@agents.example.com", "status": "active"},
            "voiceAi": {"number": "+14155550100", "status": "active"},
            "line": {"status": "active"},
        },
        "connected": False,
    }


# --- limits, tokens -------------------------------------------------------------------------------------


def test_agent_limits_is_a_partial_update_for_admins_only(demo, orch, default_org):
    _, token = agent_with_numbers("agent-a", default_org)
    status, body = orch.post("agent-limits", {"agentId": "agent-a", "limits": {"maxActionsPerMinute": 5,
                                                                                "maxSpendPerDay": 12.5}})
    assert status == 200, body
    assert body["limits"] == {"maxActionsPerMinute": 5, "maxActionsPerHour": 1000, "maxActionsPerDay": 10000,
                              "maxSpendPerDay": 12.5, "maxSpendPerMonth": 500.0, "maxCallsPerDaySameNumber": 3}
    _, body = orch.post("agent-limits", {"agentId": "agent-a", "limits": {"maxCallsPerDaySameNumber": 1}})
    assert body["limits"]["maxActionsPerMinute"] == 5 and body["limits"]["maxCallsPerDaySameNumber"] == 1
    status, body = orch.post("agent-limits", {"agentId": "agent-a", "limits": {"maxActionsPerMinute": -1}})
    assert (status, body["field"]) == (400, "limits.maxActionsPerMinute")
    status, body = Api(token).post("agent-limits", {"agentId": "agent-a", "limits": {"maxActionsPerMinute": 999}})
    assert (status, body["code"]) == (403, "forbidden")


def test_regenerate_token_replaces_every_earlier_token(demo, orch, default_org):
    _, old = agent_with_numbers("agent-a", default_org)
    status, body = orch.post("agents/agent-a/regenerate-token")
    assert status == 200 and body["agentId"] == "agent-a" and body["revokedCount"] == 1
    assert Api(old).get("channel-status")[1]["code"] == "invalid_token"
    assert Api(body["token"]).get("channel-status")[0] == 200
    status, body = Api(body["token"]).post("agents/agent-a/regenerate-token")
    assert status == 403


# --- usage and billing ------------------------------------------------------------------------------------


def send_some(token: str) -> None:
    api = Api(token)
    api.post("send-message", {"to": "+14155550123", "body": "a"})
    api.post("send-message", {"to": "+14155550123", "body": "b"})
    api.post("send-message", {"to": "ana@example.com", "body": "c", "channel": "email", "subject": "s"})


def test_usage_counts_actions_and_costs_by_channel(demo, default_org):
    _, token = agent_with_numbers("agent-a", default_org)
    send_some(token)
    status, body = Api(token).get("usage", {"period": "today"})
    assert status == 200
    assert body["actions"] == {"send_message": 3} and body["totalActions"] == 3
    assert body["costsByChannel"] == {"email": 0.0004, "sms": 0.0166}
    assert body["totalCost"] == pytest.approx(0.017)
    assert body["currentUsage"]["actionsThisMinute"] == 3
    assert body["currentUsage"]["spendToday"] == pytest.approx(0.017)
    assert body["limits"]["maxActionsPerMinute"] == 60
    assert Api(token).get("usage", {"period": "decade"})[0] == 400


@pytest.mark.parametrize(("markup", "factor"), [(Decimal("0"), 1), (Decimal("20"), 1.2)])
def test_billing_applies_the_agents_markup_and_an_explicit_zero_stays_zero(demo, default_org, markup, factor):
    _, token = agent_with_numbers("agent-a", default_org)
    Agent.objects.filter(pk="agent-a").update(markup_percent=markup)
    send_some(token)
    status, body = Api(token).get("billing")
    assert status == 200
    assert body["period"] == "month" and body["markupPercent"] == float(markup)
    assert body["providerCost"] == pytest.approx(0.017)
    assert body["billingCost"] == pytest.approx(0.017 * factor)
    assert body["byChannel"]["sms"] == {"providerCost": 0.0166, "billingCost": pytest.approx(0.0166 * factor),
                                        "count": 2}
    assert UsageRecord.objects.count() == 3
