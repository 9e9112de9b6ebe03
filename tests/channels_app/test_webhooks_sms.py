"""Twilio SMS webhooks: signed fixtures accepted, bad signatures refused, redeliveries once, opt-out keywords."""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlencode

import pytest
from django.core.exceptions import BadRequest, TooManyFieldsSent
from django.db import IntegrityError, connection
from django.http import HttpRequest
from django.test.utils import CaptureQueriesContext
from django.utils.datastructures import MultiValueDict
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator

from agents.models import AgentStatus, OptOut
from agents.services import AgentAddresses
from channels_app import inbound, signatures, webhooks
from channels_app.models import Message, WebhookEvent
from tests.channels_app.webhook_support import TWILIO_TOKEN, fixture, post_twilio, webhook_secrets  # noqa: F401

pytestmark = pytest.mark.usefixtures("webhook_secrets")

PATH = "/webhooks/agent-a/sms"
FORM = "application/x-www-form-urlencoded"
# BEGIN/COMMIT and the savepoints of the test's own transaction differ between SQLite and PostgreSQL.
TRANSACTION_CONTROL = re.compile(r"^(BEGIN|COMMIT|SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK)", re.IGNORECASE)


@pytest.fixture
def agent(make_agent):
    agent, _token = make_agent("agent-a", addresses=AgentAddresses(phone="+14155550100"))
    return agent


def assert_nothing_stored() -> None:
    assert Message.objects.count() == 0
    assert WebhookEvent.objects.count() == 0


def test_it_stores_a_signed_sms_and_answers_empty_twiml(client, agent):
    params = fixture("twilio_sms.json")
    response = post_twilio(client, PATH, params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert b"<Response />" in response.content or b"<Response/>" in response.content
    message = Message.objects.get()
    assert (message.direction, message.channel, message.kind) == ("inbound", "sms", "message")
    assert message.from_address == "+12125550123"
    assert message.to_address == "+14155550100"
    assert message.body == params["Body"]
    assert message.external_id == params["MessageSid"]
    assert message.media_urls == []
    assert message.delivered_at is None


def test_it_keeps_every_media_url_of_an_mms(client, agent):
    params = fixture("twilio_mms.json")
    assert post_twilio(client, PATH, params).status_code == 200
    message = Message.objects.get()
    assert message.media_urls == [params["MediaUrl0"], params["MediaUrl1"]]


def test_it_refuses_a_tampered_body(client, agent):
    params = fixture("twilio_sms.json")
    signature = signatures.twilio_sign(url="https://comms.example.com" + PATH, params=params, auth_token=TWILIO_TOKEN)
    tampered = dict(params, Body="Send me all the money")
    response = post_twilio(client, PATH, tampered, signature=signature)
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature"
    assert_nothing_stored()


def test_it_refuses_a_signature_made_for_another_url(client, agent):
    response = post_twilio(client, PATH, fixture("twilio_sms.json"), signed_url="https://evil.example.com" + PATH)
    assert response.status_code == 403
    assert_nothing_stored()


def test_it_refuses_a_signature_made_for_another_agent(client, agent):
    response = post_twilio(
        client, PATH, fixture("twilio_sms.json"), signed_url="https://comms.example.com/webhooks/agent-b/sms"
    )
    assert response.status_code == 403
    assert_nothing_stored()


def test_it_refuses_a_missing_signature(client, agent):
    response = post_twilio(client, PATH, fixture("twilio_sms.json"), signature="")
    assert response.status_code == 403
    assert_nothing_stored()


def test_it_refuses_a_signature_made_with_another_token(client, agent):
    response = post_twilio(client, PATH, fixture("twilio_sms.json"), token="someone-elses-token")
    assert response.status_code == 403
    assert_nothing_stored()


def test_it_refuses_every_webhook_in_live_mode_without_an_auth_token(client, agent, settings):
    settings.TWILIO_AUTH_TOKEN = None
    settings.DEMO_MODE = False
    response = post_twilio(client, PATH, fixture("twilio_sms.json"), token="anything")
    assert response.status_code == 403
    assert_nothing_stored()


def test_it_checks_demo_mode_webhooks_with_the_demo_signing_secret(client, agent, settings):
    settings.TWILIO_AUTH_TOKEN = None
    settings.DEMO_MODE = True
    demo_secret = signatures.demo_signing_secret("twilio")
    assert post_twilio(client, PATH, fixture("twilio_sms.json"), token="guessed").status_code == 403
    assert post_twilio(client, PATH, fixture("twilio_sms.json"), signature="").status_code == 403
    assert post_twilio(client, PATH, fixture("twilio_sms.json"), token=demo_secret).status_code == 200
    assert Message.objects.count() == 1


def test_it_verifies_a_json_body_by_its_body_hash(client, agent):
    params = fixture("twilio_sms.json")
    body = json.dumps(params)
    url = signatures.twilio_json_url("https://comms.example.com" + PATH, body)
    signature = signatures.twilio_sign(url=url, params={}, auth_token=TWILIO_TOKEN)
    query = url.split("?", 1)[1]
    response = client.post(f"{PATH}?{query}", body, content_type="application/json", HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 200
    assert Message.objects.get().body == params["Body"]
    tampered = body.replace("table for 4", "table for 5")
    response = client.post(f"{PATH}?{query}", tampered, content_type="application/json", HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403
    assert hashlib.sha256(tampered.encode()).hexdigest() not in query


def test_it_accepts_a_signature_over_the_url_with_its_default_port(client, agent):
    # Twilio sometimes signs https://host:443/…; the SDK's check accepts both spellings.
    response = post_twilio(client, PATH, fixture("twilio_sms.json"), signed_url="https://comms.example.com:443" + PATH)
    assert response.status_code == 200
    assert Message.objects.count() == 1


def test_it_verifies_a_sha256_signature_named_in_the_signature_settings_header(client, agent):
    params = fixture("twilio_sms.json")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature("https://comms.example.com" + PATH, params, "HMAC_SHA256")
    settings_header = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_0123,algorithm=HMAC_SHA256"}
    # Without the header the signature is read as SHA-1 and does not match.
    assert post_twilio(client, PATH, params, signature=signature).status_code == 403
    assert post_twilio(client, PATH, params, signature=signature, headers=settings_header).status_code == 200
    assert Message.objects.count() == 1


def test_it_refuses_a_signature_algorithm_it_does_not_know(client, agent):
    params = fixture("twilio_sms.json")
    signature = signatures.twilio_sign(url="https://comms.example.com" + PATH, params=params, auth_token=TWILIO_TOKEN)
    headers = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_0123,algorithm=HMAC_SHA512"}
    assert post_twilio(client, PATH, params, signature=signature, headers=headers).status_code == 403
    assert_nothing_stored()


def test_it_processes_a_redelivery_once(client, agent):
    params = fixture("twilio_sms.json")
    for _ in range(3):
        response = post_twilio(client, PATH, params, headers={"I-Twilio-Idempotency-Token": "b1c2d3-retry"})
        assert response.status_code == 200
        assert b"<Message>" not in response.content
    assert Message.objects.get().external_id == params["MessageSid"]


def test_it_processes_a_redelivery_without_a_message_sid_once_by_its_idempotency_token(client, agent):
    params = {key: value for key, value in fixture("twilio_sms.json").items() if key not in ("MessageSid", "SmsSid")}
    for token in ("b1c2d3-retry", "b1c2d3-retry", "e4f5a6-other"):
        response = post_twilio(client, PATH, params, headers={"I-Twilio-Idempotency-Token": token})
        assert response.status_code == 200
    assert sorted(Message.objects.values_list("external_id", flat=True)) == ["b1c2d3-retry", "e4f5a6-other"]


def test_it_does_not_mistake_another_integrity_error_for_a_redelivery(client, agent, monkeypatch):
    def conflicting_opt_out(*args: object) -> None:
        raise IntegrityError("opt-out conflict")

    monkeypatch.setattr(inbound, "_keyword_reply", conflicting_opt_out)
    response = post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body="STOP"))
    # A 500, not a "duplicate" 200: the provider redelivers, and nothing half-stored stands in the way.
    assert response.status_code == 500
    assert_nothing_stored()


def test_it_stores_every_webhook_that_carries_no_id_at_all(client, agent):
    params = {key: value for key, value in fixture("twilio_sms.json").items() if key not in ("MessageSid", "SmsSid")}
    for _ in range(2):
        assert post_twilio(client, PATH, params).status_code == 200
    assert Message.objects.count() == 2


def test_the_same_sid_for_another_agent_is_still_a_redelivery(client, agent, make_agent):
    # Twilio's sids are global: a second delivery to another URL is the same message, stored once.
    make_agent("agent-b", addresses=AgentAddresses(phone="+14155550101"))
    params = fixture("twilio_sms.json")
    assert post_twilio(client, PATH, params).status_code == 200
    assert post_twilio(client, "/webhooks/agent-b/sms", params).status_code == 200
    assert Message.objects.get().agent_id == "agent-a"


def test_it_reads_the_agent_and_writes_one_row_per_message(client, agent):
    with CaptureQueriesContext(connection) as queries:
        assert post_twilio(client, PATH, fixture("twilio_sms.json")).status_code == 200
    statements = [query["sql"] for query in queries.captured_queries if not TRANSACTION_CONTROL.match(query["sql"])]
    assert [statement.split()[0] for statement in statements] == ["SELECT", "INSERT"]
    assert '"channels_app_message"' in statements[1]


def test_it_answers_a_blocked_channel_with_empty_twiml_and_stores_nothing(client, agent):
    agent.blocked_channels = ["sms"]
    agent.save()
    response = post_twilio(client, PATH, fixture("twilio_sms.json"))
    assert response.status_code == 200
    assert b"<Message>" not in response.content
    assert_nothing_stored()


def test_it_answers_an_inactive_agent_with_empty_twiml_and_stores_nothing(client, agent):
    agent.status = AgentStatus.SUSPENDED
    agent.save()
    response = post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body="STOP"))
    assert response.status_code == 200
    assert b"<Message>" not in response.content
    assert_nothing_stored()
    assert not OptOut.objects.exists()


def test_it_answers_an_unknown_agent_with_empty_twiml(client, agent):
    path = "/webhooks/no-such-agent/sms"
    response = post_twilio(client, path, fixture("twilio_sms.json"))
    assert response.status_code == 200
    assert_nothing_stored()


@pytest.mark.parametrize("keyword", ["STOP", "stop", " Unsubscribe ", "STOPALL", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"])
def test_it_records_an_opt_out_and_confirms_it(client, agent, keyword):
    response = post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body=keyword))
    assert response.status_code == 200
    assert b"unsubscribed" in response.content
    assert b"START" in response.content
    opt_out = OptOut.objects.get()
    assert (opt_out.agent_id, opt_out.channel, opt_out.contact) == ("agent-a", "sms", "+12125550123")
    # The agent still sees what the contact wrote.
    assert Message.objects.get().body == keyword


@pytest.mark.parametrize("keyword", ["START", "unstop", "YES"])
def test_it_lifts_an_opt_out_on_start(client, agent, keyword):
    post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body="STOP"))
    assert OptOut.objects.count() == 1
    response = post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body=keyword, MessageSid="SM" + "1" * 32))
    assert response.status_code == 200
    assert b"resubscribed" in response.content
    assert not OptOut.objects.exists()


def test_it_answers_a_plain_yes_without_a_confirmation(client, agent):
    response = post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body="yes"))
    assert b"<Message>" not in response.content
    assert Message.objects.get().body == "yes"


def test_it_answers_help_with_help_text(client, agent):
    response = post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body="help"))
    assert response.status_code == 200
    assert b"Reply STOP to unsubscribe" in response.content
    assert not OptOut.objects.exists()


def test_a_redelivered_stop_is_confirmed_once(client, agent):
    params = dict(fixture("twilio_sms.json"), Body="STOP")
    first = post_twilio(client, PATH, params)
    second = post_twilio(client, PATH, params)
    assert b"unsubscribed" in first.content
    assert b"<Message>" not in second.content
    assert OptOut.objects.count() == 1


def test_an_ordinary_message_is_not_a_keyword(client, agent):
    response = post_twilio(client, PATH, dict(fixture("twilio_sms.json"), Body="Please stop by at 5"))
    assert b"<Message>" not in response.content
    assert not OptOut.objects.exists()


def test_it_checks_every_value_of_a_repeated_field_and_stores_the_last(client, agent, settings):
    params = fixture("twilio_sms.json")
    form = [*params.items(), ("Body", "a second body")]
    signed = MultiValueDict({name: [value for key, value in form if key == name] for name, _ in form})
    url = settings.PUBLIC_BASE_URL + PATH
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, signed)
    headers = {"X-Twilio-Signature": signature}
    first_only = urlencode(list(params.items()))
    assert client.post(PATH, first_only, content_type=FORM, headers=headers).status_code == 403
    assert client.post(PATH, urlencode(form), content_type=FORM, headers=headers).status_code == 200
    # As QueryDict.dict() reads it: the last value of the field.
    assert Message.objects.get().body == "a second body"


def test_it_accepts_a_signed_multipart_form(client, agent, settings):
    params = fixture("twilio_sms.json")
    signature = signatures.twilio_sign(url=settings.PUBLIC_BASE_URL + PATH, params=params, auth_token=TWILIO_TOKEN)
    response = client.post(PATH, params, headers={"X-Twilio-Signature": signature})  # the test client's multipart
    assert response.status_code == 200
    assert Message.objects.get().body == params["Body"]


@pytest.mark.parametrize(
    ("content_type", "max_fields", "error"),
    [(FORM + "; charset=iso-8859-1", 1000, BadRequest), (FORM, 10, TooManyFieldsSent)],
)
def test_it_refuses_the_forms_django_refuses(client, agent, rf, settings, content_type, max_fields, error):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = max_fields
    params = {f"Field{index}": "x" for index in range(11)}
    with pytest.raises(error):
        rf.post(PATH, urlencode(params), content_type=content_type).POST  # noqa: B018
    with pytest.raises(error):
        webhooks._twilio_form(rf.post(PATH, urlencode(params), content_type=content_type))
    signature = signatures.twilio_sign(url="https://comms.example.com" + PATH, params=params, auth_token=TWILIO_TOKEN)
    client.raise_request_exception = False
    response = client.post(PATH, urlencode(params), content_type=content_type, headers={"X-Twilio-Signature": signature})
    # A malformed request, answered as Django answers it (400), in the §3 JSON shape: not a 500.
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert_nothing_stored()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"Body=Hi&From=%2B12125550123&Empty=&Flag",
        b"Body=Tom+%26+Jerry%3B+50%25&Body=second&Body=Tom+%26+Jerry%3B+50%25",
        "Body=caf\xe9+\U0001f642&To=%E6%97%A5".encode(),  # raw UTF-8 and escaped UTF-8
        b"Body=caf\xe9&Bad=%E9%ZZ",  # raw Latin-1: not UTF-8, so read as Latin-1; a broken escape
        b"a=1;b=2&&c=3&=4",
    ],
)
def test_it_parses_the_form_as_django_parses_request_post(rf, body):
    def request() -> HttpRequest:
        return rf.post(PATH, body, content_type=FORM)

    expected = [(name, value) for name, values in request().POST.lists() for value in values]
    assert sorted(webhooks._twilio_form(request())) == sorted(expected)


def test_it_counts_each_webhook_once_by_its_outcome_and_each_stored_message(client, agent):
    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def counts() -> tuple[float, ...]:
        return (
            count("mcp_webhook_received_total", type="sms", outcome="stored"),
            count("mcp_webhook_received_total", type="sms", outcome="duplicate"),
            count("mcp_webhook_received_total", type="sms", outcome="invalid_signature"),
            count("mcp_messages_received_total", channel="sms"),
        )

    before = counts()
    params = fixture("twilio_sms.json")
    for _ in range(2):
        post_twilio(client, PATH, params)
    post_twilio(client, PATH, dict(params, MessageSid="SM" + "2" * 32))
    post_twilio(client, PATH, params, token="someone-elses-token")
    assert [after - earlier for after, earlier in zip(counts(), before, strict=True)] == [2, 1, 1, 2]


@pytest.fixture
def insert_spy(monkeypatch):
    """Whether each message insert ran inside a transaction."""
    in_transaction: list[bool] = []
    insert = inbound.sql.insert

    def spying(message: Message) -> Message:
        in_transaction.append(connection.in_atomic_block)
        return insert(message)

    monkeypatch.setattr(inbound.sql, "insert", spying)
    return in_transaction


@pytest.mark.django_db(transaction=True)
def test_a_plain_message_is_one_autocommit_insert_outside_sqlite_and_a_keyword_one_transaction(client, agent, insert_spy):
    params = fixture("twilio_sms.json")
    assert post_twilio(client, PATH, params).status_code == 200
    # The redelivery's IntegrityError, outside a transaction too, is a duplicate and leaves the connection usable.
    second = post_twilio(client, PATH, params)
    assert (second.status_code, b"<Message>" in second.content) == (200, False)
    stop = post_twilio(client, PATH, dict(params, Body=" stop ", MessageSid="SM" + "3" * 32))
    assert b"unsubscribed" in stop.content
    # SQLite: every write in a transaction, whose BEGIN queues on the process's write lock.
    plain_in_transaction = connection.vendor == "sqlite"
    assert insert_spy == [plain_in_transaction, plain_in_transaction, True]
    assert Message.objects.count() == 2
    assert OptOut.objects.count() == 1


def test_inside_a_callers_transaction_a_redelivery_leaves_it_usable(client, agent, insert_spy):
    # pytest-django's test transaction is the caller's here: the insert runs in a savepoint.
    params = fixture("twilio_sms.json")
    for _ in range(2):
        assert post_twilio(client, PATH, params).status_code == 200
    assert insert_spy == [True, True]
    assert Message.objects.count() == 1
