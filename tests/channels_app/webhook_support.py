"""Helpers for webhook tests: load the real provider payloads in fixtures/webhooks and sign them the
way Twilio, Resend (Svix) and LINE do, over the URL the provider would call."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from channels_app import signatures

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
TWILIO_TOKEN = "test-twilio-auth-token-0123456789"
RESEND_SECRET = "whsec_" + "dGVzdC1yZXNlbmQtd2ViaG9vay1zZWNyZXQtMDEyMw=="
LINE_SECRET = "test-line-channel-secret"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def webhook_secrets(settings: Any) -> None:
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.RESEND_WEBHOOK_SECRET = RESEND_SECRET
    settings.LINE_CHANNEL_SECRET = LINE_SECRET
    settings.PUBLIC_BASE_URL = "https://comms.example.com"


def post_twilio(
    client: Client,
    path: str,
    params: dict[str, str],
    *,
    token: str = TWILIO_TOKEN,
    signed_url: str | None = None,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    from django.conf import settings

    url = signed_url or settings.PUBLIC_BASE_URL + path
    if signature is None:
        signature = signatures.twilio_sign(url=url, params=params, auth_token=token)
    extra = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    for name, value in (headers or {}).items():
        extra["HTTP_" + name.upper().replace("-", "_")] = value
    return client.post(path, urlencode(params), content_type="application/x-www-form-urlencoded", **extra)


def svix_headers(body: str, *, secret: str = RESEND_SECRET, msg_id: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    msg_id = msg_id or "msg_" + secrets.token_hex(10)
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": signatures.svix_sign(msg_id=msg_id, timestamp=timestamp, body=body, secret=secret),
    }


def post_svix(client: Client, path: str, payload: dict[str, Any], **kwargs: Any) -> Any:
    body = json.dumps(payload)
    headers = kwargs.pop("headers", None) or svix_headers(body, **kwargs)
    return client.post(path, body, content_type="application/json", headers=headers)


def post_line(client: Client, path: str, payload: dict[str, Any], *, secret: str = LINE_SECRET, body: bytes | None = None) -> Any:
    raw = body if body is not None else json.dumps(payload, ensure_ascii=False).encode()
    return client.post(
        path, raw, content_type="application/json", headers={"X-Line-Signature": signatures.line_sign(body=raw, secret=secret)}
    )
