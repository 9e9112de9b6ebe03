"""The Twilio form signature check agrees with the Twilio SDK's own validate() on every form shape."""

from __future__ import annotations

import pytest
from django.utils.datastructures import MultiValueDict
from twilio.request_validator import RequestValidator

from channels_app import signatures

TOKEN = "test-twilio-auth-token-0123456789"

FORMS: list[list[tuple[str, str]]] = [
    [],
    [("Body", "Hi"), ("From", "+12125550123"), ("To", "+14155550100")],
    # Unicode, separators the form encoding escapes, an empty value.
    [("Body", "Tom & Jerry; 50% off? a+b=c 🙂 日本"), ("Subject", ""), ("MediaUrl0", "https://x.example/a?b=1&c=2")],
    # A repeated name: every value is signed, sorted; the same pair twice counts once (as a QueryDict's set).
    [("Tag", "b"), ("Tag", "a"), ("Tag", "b"), ("A", "z")],
    # Names that sort differently as pairs than by plain concatenation.
    [("ab", "c"), ("a", "bc"), ("a", "b"), ("B", "x")],
]
URLS = [
    "https://comms.example.com/webhooks/agent-a/sms",
    "https://comms.example.com:443/webhooks/agent-a/sms",
    "http://localhost:3100/webhooks/agent-a/sms?x=1&y=%20",
    "http://comms.example.com/webhooks/agent-a/sms",
]


def sdk_params(form: list[tuple[str, str]]) -> MultiValueDict[str, str]:
    grouped: dict[str, list[str]] = {}
    for name, value in form:
        grouped.setdefault(name, []).append(value)
    return MultiValueDict(grouped)


@pytest.mark.parametrize("algorithm", ["HMAC_SHA1", "HMAC_SHA256"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("signed_url", URLS)
@pytest.mark.parametrize("checked_url", URLS)
def test_it_accepts_exactly_what_the_sdk_accepts(form, signed_url, checked_url, algorithm):
    validator = RequestValidator(TOKEN)
    signature = validator.compute_signature(signed_url, sdk_params(form), algorithm)
    settings_header = f"key=webhooks_sharedkey_0123,algorithm={algorithm}" if algorithm != "HMAC_SHA1" else ""
    ours = signatures.twilio_signature_valid(
        url=checked_url, params=form, signature=signature, auth_token=TOKEN, signature_settings=settings_header
    )
    assert ours == validator.validate(checked_url, sdk_params(form), signature, algorithm=algorithm)
    if signed_url == checked_url:
        assert ours


@pytest.mark.parametrize("form", FORMS[1:])
def test_it_refuses_a_changed_value_a_missing_pair_and_an_added_pair(form):
    url = URLS[0]
    signature = RequestValidator(TOKEN).compute_signature(url, sdk_params(form))

    def valid(params: list[tuple[str, str]]) -> bool:
        return signatures.twilio_signature_valid(url=url, params=params, signature=signature, auth_token=TOKEN)

    assert valid(list(reversed(form)))
    assert not valid([(form[0][0], form[0][1] + "x"), *form[1:]])
    assert not valid(form[:-1])
    assert not valid([*form, ("Extra", "")])


def test_it_refuses_another_token_an_empty_signature_and_a_malformed_one():
    form = FORMS[1]
    signature = RequestValidator(TOKEN).compute_signature(URLS[0], sdk_params(form))
    check = signatures.twilio_signature_valid
    assert not check(url=URLS[0], params=form, signature=signature, auth_token="another-token")
    assert not check(url=URLS[0], params=form, signature="", auth_token=TOKEN)
    assert not check(url=URLS[0], params=form, signature=signature, auth_token=None)
    assert not check(url=URLS[0], params=form, signature=signature[:-2] + "é=", auth_token=TOKEN)
    assert not check(url=URLS[0], params=form, signature=signature + " ", auth_token=TOKEN)
