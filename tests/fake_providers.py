"""A loopback fake of the provider HTTP APIs, for running the real SDKs in tests.

One real HTTP server on 127.0.0.1 (random port, one thread per connection) serves, under a prefix per
provider:

    /twilio      Accounts, Messages, Calls, IncomingPhoneNumbers, AvailablePhoneNumbers (2010-04-01 API)
    /resend      POST /emails, GET /emails/receiving/<id>, GET /domains
    /line        POST /v2/bot/message/push, GET /v2/bot/info
    /elevenlabs  POST /v1/text-to-speech/<voiceId>, GET /v1/voices
    /telegram    POST /bot<token>/sendMessage (the Bot API; for the channel tests/channels_app/telegram_channel.py adds)

Every request is recorded (method, path, query, headers, raw body, parsed form/JSON), credentials are
checked the way the provider checks them (401 in the provider's error shape otherwise), and a test can
script the next responses, e.g. `fake_providers.twilio_error(21211)`.

Fixtures (imported into tests/conftest.py):
    fake_providers          the running fake, state reset for the test
    live_provider_settings  DEMO_MODE off, every *_API_BASE_URL pointed at the fake, fake credentials set
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

TWILIO_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TWILIO_AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
RESEND_API_KEY = "re_fake_0123456789abcdef"
RESEND_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"fake-resend-webhook-secret-0123").decode()
ELEVENLABS_API_KEY = "sk_fake_elevenlabs_0123456789"
LINE_CHANNEL_ACCESS_TOKEN = "fake-line-channel-access-token"
LINE_CHANNEL_SECRET = "fake-line-channel-secret"
TELEGRAM_BOT_TOKEN = "123456:fake-telegram-bot-token"

# A few bytes that look like an MP3 (ID3 tag + MPEG frame sync) for the fake TTS answer.
FAKE_MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 412

SERVICES = ("twilio", "resend", "line", "elevenlabs", "telegram")


@dataclass
class RecordedRequest:
    service: str
    method: str
    path: str  # without the service prefix, e.g. /2010-04-01/Accounts/AC…/Messages.json
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    form_lists: dict[str, list[str]] = field(default_factory=dict)
    json: Any = None

    @property
    def form(self) -> dict[str, str]:
        """Form fields, first value of each (use form_lists for repeated fields such as MediaUrl)."""
        return {key: values[0] for key, values in self.form_lists.items()}

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


@dataclass
class ScriptedResponse:
    service: str
    method: str | None
    path_pattern: str  # a regular expression searched in the path
    status: int
    body: bytes
    content_type: str
    delay: float = 0.0
    hold: threading.Event | None = None  # answer only once the test sets it


def twilio_error_body(code: int, status: int = 400, message: str | None = None) -> dict[str, Any]:
    """Twilio's legacy error JSON, exactly as the API returns it."""
    messages = {
        20003: "Authenticate",
        20404: "The requested resource was not found",
        21211: "The 'To' number +1555 is not a valid phone number.",
        21610: "Attempt to send to unsubscribed recipient",
        21614: "'To' number is not a valid mobile number",
        63016: "Failed to send freeform message because you are outside the allowed window.",
    }
    return {
        "code": code,
        "message": message or messages.get(code, f"Twilio error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeProviders:
    """The fake's state and the test-facing API. Thread-safe: the server thread writes, the test reads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.url = ""
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(ProviderRequestHandler):
            providers = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="fake-providers", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests: list[RecordedRequest] = []
            self.scripts: list[ScriptedResponse] = []
            self.twilio_messages: dict[str, dict[str, Any]] = {}
            self.twilio_calls: dict[str, dict[str, Any]] = {}
            self.twilio_numbers: dict[str, dict[str, Any]] = {}
            self.received_emails: dict[str, dict[str, Any]] = {}
            self.resend_domains: list[dict[str, Any]] = [
                {
                    "id": "d91cd9bd-1176-453e-8fc1-35364d380206",
                    "name": "agents.example.com",
                    "status": "verified",
                    "created_at": "2026-01-01 00:00:00.000000+00",
                    "region": "us-east-1",
                }
            ]
            self.line_tokens: set[str] = {LINE_CHANNEL_ACCESS_TOKEN}
            self.available_numbers: list[str] = [f"+1415555{n:04d}" for n in range(1000, 1010)]

    def base_url(self, service: str) -> str:
        assert service in SERVICES
        return f"{self.url}/{service}"

    # --- reading what was sent -------------------------------------------------------------------------

    def requests_to(self, service: str, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests to `service`, optionally filtered by method and a regex searched in the path."""
        with self.lock:
            found = list(self.requests)
        return [
            r
            for r in found
            if r.service == service and (method is None or r.method == method) and (path is None or re.search(path, r.path))
        ]

    def last(self, service: str, method: str | None = None, path: str | None = None) -> RecordedRequest:
        found = self.requests_to(service, method, path)
        assert found, f"no {method or ''} request to {service} {path or ''} was recorded"
        return found[-1]

    # --- scripting responses ---------------------------------------------------------------------------

    def script(
        self,
        service: str,
        *,
        status: int,
        json_body: Any = None,
        body: bytes = b"",
        content_type: str = "application/json",
        method: str | None = None,
        path: str = "",
        times: int = 1,
        delay: float = 0.0,
        hold: threading.Event | None = None,
    ) -> None:
        """Answer the next `times` matching requests with this response instead of the normal one (after
        `delay` seconds, or once `hold` is set)."""
        payload = json.dumps(json_body).encode() if json_body is not None else body
        with self.lock:
            for _ in range(times):
                self.scripts.append(ScriptedResponse(service, method, path, status, payload, content_type, delay, hold))

    def twilio_error(self, code: int, *, status: int = 400, path: str = r"/Messages\.json$", message: str | None = None) -> None:
        self.script("twilio", status=status, json_body=twilio_error_body(code, status, message), method=None, path=path)

    def add_received_email(self, email_id: str, **fields: Any) -> dict[str, Any]:
        email = {
            "object": "email",
            "id": email_id,
            "to": ["agent-a@agents.example.com"],
            "from": "Alice <alice@example.org>",
            "created_at": "2026-01-01T12:00:00.000Z",
            "subject": "Hello",
            "html": "<p>Hello</p>",
            "text": "Hello",
            "bcc": [],
            "cc": [],
            "reply_to": [],
            "received_for": [],
            "message_id": f"<{email_id}@example.org>",
            "headers": {},
            "attachments": [],
        }
        email.update(fields)
        with self.lock:
            self.received_emails[email_id] = email
        return email

    def take_script(self, service: str, method: str, path: str) -> ScriptedResponse | None:
        with self.lock:
            for index, scripted in enumerate(self.scripts):
                if scripted.service == service and scripted.method in (None, method) and re.search(scripted.path_pattern, path):
                    return self.scripts.pop(index)
        return None

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)


def rfc2822_now() -> str:
    return formatdate(time.time(), usegmt=True).replace("GMT", "+0000")


class ProviderRequestHandler(BaseHTTPRequestHandler):
    providers: FakeProviders
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs (the SDKs pool connections)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass  # quiet: tests assert on recorded requests instead

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_PATCH(self) -> None:
        self.dispatch()

    # --- plumbing -----------------------------------------------------------------------------------------

    def dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        service, _, rest = parts.path.lstrip("/").partition("/")
        path = "/" + rest
        headers = {name.lower(): value for name, value in self.headers.items()}
        content_type = headers.get("content-type", "")
        form_lists: dict[str, list[str]] = {}
        parsed_json: Any = None
        if content_type.startswith("application/x-www-form-urlencoded"):
            form_lists = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        elif content_type.startswith("application/json") and raw:
            parsed_json = json.loads(raw)
        recorded = RecordedRequest(
            service=service,
            method=self.command,
            path=path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=headers,
            body=raw,
            form_lists=form_lists,
            json=parsed_json,
        )
        self.providers.record(recorded)
        scripted = self.providers.take_script(service, self.command, path)
        if scripted is not None:
            if scripted.delay:
                time.sleep(scripted.delay)
            if scripted.hold is not None:
                scripted.hold.wait(timeout=120)
            self.respond(scripted.status, scripted.body, scripted.content_type)
            return
        handler = {
            "twilio": self.twilio,
            "resend": self.resend,
            "line": self.line,
            "elevenlabs": self.elevenlabs,
            "telegram": self.telegram,
        }.get(service)
        if handler is None:
            self.send_json(404, {"error": f"no fake for {service}"})
            return
        handler(recorded)

    def respond(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def send_json(self, status: int, payload: Any) -> None:
        self.respond(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    # --- Twilio -------------------------------------------------------------------------------------------

    def twilio(self, request: RecordedRequest) -> None:
        fake = self.providers
        if m := re.match(r"^/v2/Channels/Senders/(XE[0-9a-f]{32})$", request.path):
            self.twilio_sender(request, m.group(1))
            return
        match = re.match(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})(?:\.json|/(.*))?$", request.path)
        if not match:
            self.send_json(404, twilio_error_body(20404, 404))
            return
        account_sid, rest = match.group(1), match.group(2) or ""
        if request.basic_auth != (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) or account_sid != TWILIO_ACCOUNT_SID:
            self.send_json(401, {**twilio_error_body(20003, 401), "detail": "Your AccountSid or AuthToken was incorrect."})
            return
        base = f"/2010-04-01/Accounts/{account_sid}"
        form = request.form
        if rest == "":
            self.send_json(200, {
                "sid": account_sid,
                "friendly_name": "Fake Twilio account",
                "status": "active",
                "type": "Full",
                "date_created": rfc2822_now(),
                "date_updated": rfc2822_now(),
                "owner_account_sid": account_sid,
                "uri": f"{base}.json",
                "subresource_uris": {},
                "auth_token": "hidden",
            })
            return
        if rest == "Messages.json" and request.method == "POST":
            sid = "SM" + secrets.token_hex(16)
            message = {
                "sid": sid,
                "account_sid": account_sid,
                "api_version": "2010-04-01",
                "body": form.get("Body", ""),
                "date_created": rfc2822_now(),
                "date_updated": rfc2822_now(),
                "date_sent": None,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "to": form.get("To"),
                "messaging_service_sid": None,
                "num_media": str(len(request.form_lists.get("MediaUrl", []))),
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "status": "queued",
                "subresource_uris": {"media": f"{base}/Messages/{sid}/Media.json"},
                "uri": f"{base}/Messages/{sid}.json",
            }
            with fake.lock:
                fake.twilio_messages[sid] = message
            self.send_json(201, message)
            return
        if m := re.match(r"^Messages/(SM[0-9a-f]{32})\.json$", rest):
            found = fake.twilio_messages.get(m.group(1))
            self.send_json(200, found) if found else self.send_json(404, twilio_error_body(20404, 404))
            return
        if rest == "Calls.json" and request.method == "POST":
            sid = "CA" + secrets.token_hex(16)
            call = {
                "sid": sid,
                "account_sid": account_sid,
                "api_version": "2010-04-01",
                "date_created": rfc2822_now(),
                "date_updated": rfc2822_now(),
                "direction": "outbound-api",
                "duration": None,
                "end_time": None,
                "start_time": None,
                "from": form.get("From"),
                "from_formatted": form.get("From"),
                "to": form.get("To"),
                "to_formatted": form.get("To"),
                "parent_call_sid": None,
                "price": None,
                "price_unit": "USD",
                "status": "queued",
                "uri": f"{base}/Calls/{sid}.json",
                "subresource_uris": {},
            }
            with fake.lock:
                fake.twilio_calls[sid] = call
            self.send_json(201, call)
            return
        if m := re.match(r"^Calls/(CA[0-9a-f]{32})\.json$", rest):
            with fake.lock:
                call = fake.twilio_calls.get(m.group(1))
                if call is not None and request.method == "POST":
                    call["status"] = {"completed": "completed", "canceled": "canceled"}.get(
                        form.get("Status", ""), "in-progress"
                    )
                    call["date_updated"] = rfc2822_now()
            if call is None:
                self.send_json(404, twilio_error_body(20404, 404))
            else:
                self.send_json(200, call)
            return
        if m := re.match(r"^AvailablePhoneNumbers/([A-Z]{2})/Local\.json$", rest):
            country = m.group(1)
            limit = int((request.query.get("PageSize") or ["50"])[0])
            with fake.lock:
                numbers = list(fake.available_numbers)
            records = [
                {
                    "friendly_name": n,
                    "phone_number": n,
                    "lata": "722",
                    "locality": "San Francisco",
                    "rate_center": "SNFC CA",
                    "latitude": "37.77",
                    "longitude": "-122.41",
                    "region": "CA",
                    "postal_code": "94105",
                    "iso_country": country,
                    "address_requirements": "none",
                    "beta": False,
                    "capabilities": {"voice": True, "SMS": True, "MMS": True},
                }
                for n in numbers[:limit]
            ]
            self.send_json(200, {"available_phone_numbers": records, "uri": f"{base}/AvailablePhoneNumbers/{country}/Local.json"})
            return
        if rest == "IncomingPhoneNumbers.json" and request.method == "POST":
            number = form.get("PhoneNumber", "")
            with fake.lock:
                available = number in fake.available_numbers
                if available:
                    fake.available_numbers.remove(number)
            if not available:
                self.send_json(400, twilio_error_body(21422, 400, f"PhoneNumber {number} is not available."))
                return
            sid = "PN" + secrets.token_hex(16)
            record = {
                "sid": sid,
                "account_sid": account_sid,
                "phone_number": number,
                "friendly_name": form.get("FriendlyName", number),
                "sms_url": form.get("SmsUrl"),
                "sms_method": form.get("SmsMethod", "POST"),
                "voice_url": form.get("VoiceUrl"),
                "voice_method": form.get("VoiceMethod", "POST"),
                "status_callback": form.get("StatusCallback"),
                "status_callback_method": form.get("StatusCallbackMethod", "POST"),
                "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
                "date_created": rfc2822_now(),
                "date_updated": rfc2822_now(),
                "status": "in-use",
                "uri": f"{base}/IncomingPhoneNumbers/{sid}.json",
            }
            with fake.lock:
                fake.twilio_numbers[sid] = record
            self.send_json(201, record)
            return
        if m := re.match(r"^IncomingPhoneNumbers/(PN[0-9a-f]{32})\.json$", rest):
            with fake.lock:
                record = fake.twilio_numbers.get(m.group(1))
                if record is not None and request.method == "DELETE":
                    del fake.twilio_numbers[m.group(1)]
            if record is None:
                self.send_json(404, twilio_error_body(20404, 404))
            elif request.method == "DELETE":
                self.respond(204, b"")
            else:
                self.send_json(200, record)
            return
        self.send_json(404, twilio_error_body(20404, 404))

    def twilio_sender(self, request: RecordedRequest, sid: str) -> None:
        """Messaging v2 Senders API (JSON bodies, unlike the 2010-04-01 API's forms)."""
        if request.basic_auth != (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN):
            self.send_json(401, {**twilio_error_body(20003, 401), "detail": "Your AccountSid or AuthToken was incorrect."})
            return
        webhook = (request.json or {}).get("webhook") or {}
        self.send_json(200, {
            "sid": sid,
            "status": "ONLINE",
            "sender_id": "whatsapp:+14155550111",
            "configuration": {"waba_id": "1234567890"},
            "webhook": webhook,
            "profile": {"name": "Fake sender"},
            "properties": {"quality_rating": "HIGH", "messaging_limit": "10K"},
            "offline_reasons": None,
            "url": f"https://messaging.twilio.com/v2/Channels/Senders/{sid}",
        })

    # --- Resend -------------------------------------------------------------------------------------------

    def resend(self, request: RecordedRequest) -> None:
        fake = self.providers
        if request.bearer != RESEND_API_KEY:
            self.send_json(401 if request.bearer is None else 403, {
                "statusCode": 401 if request.bearer is None else 403,
                "message": "API key is invalid",
                "name": "validation_error" if request.bearer else "missing_api_key",
            })
            return
        if request.path == "/emails" and request.method == "POST":
            body = request.json or {}
            missing = [name for name in ("from", "to", "subject") if not body.get(name)]
            if missing:
                self.send_json(422, {"statusCode": 422, "message": f"Missing `{missing[0]}` field.", "name": "missing_required_field"})
                return
            self.send_json(200, {"id": str(uuid.uuid4())})
            return
        if m := re.match(r"^/emails/receiving/([^/]+)$", request.path):
            with fake.lock:
                email = fake.received_emails.get(m.group(1))
            if email is None:
                self.send_json(404, {"statusCode": 404, "message": "Email not found", "name": "not_found"})
            else:
                self.send_json(200, email)
            return
        if request.path == "/domains" and request.method == "GET":
            with fake.lock:
                domains = list(fake.resend_domains)
            self.send_json(200, {"object": "list", "has_more": False, "data": domains})
            return
        self.send_json(404, {"statusCode": 404, "message": "Not found", "name": "not_found"})

    # --- LINE ---------------------------------------------------------------------------------------------

    def line(self, request: RecordedRequest) -> None:
        fake = self.providers
        with fake.lock:
            authorized = request.bearer in fake.line_tokens
        if not authorized:
            self.send_json(401, {"message": "Authentication failed. Confirm that the access token in the authorization header is valid."})
            return
        if request.path == "/v2/bot/message/push" and request.method == "POST":
            body = request.json or {}
            to = str(body.get("to") or "")
            if not re.fullmatch(r"[UCR][0-9a-f]{32}", to):
                self.send_json(400, {"message": "The property, 'to', in the request body is invalid (line: -, column: -)"})
                return
            sent = [
                {"id": str(secrets.randbelow(9 * 10**17) + 10**17), "quoteToken": secrets.token_urlsafe(16)}
                for _ in body.get("messages") or []
            ]
            self.send_json(200, {"sentMessages": sent})
            return
        if request.path == "/v2/bot/info" and request.method == "GET":
            self.send_json(200, {
                "userId": "U" + "f" * 32,
                "basicId": "@123fake",
                "displayName": "Fake LINE bot",
                "pictureUrl": "https://profile.line-scdn.net/fake",
                "chatMode": "bot",
                "markAsReadMode": "auto",
            })
            return
        self.send_json(404, {"message": "Not found"})

    # --- Telegram Bot API ---------------------------------------------------------------------------------

    def telegram(self, request: RecordedRequest) -> None:
        token, _, method = request.path.lstrip("/").partition("/")
        if token != f"bot{TELEGRAM_BOT_TOKEN}":
            self.send_json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        if method == "sendMessage" and request.method == "POST":
            body = request.json or {}
            self.send_json(200, {"ok": True, "result": {
                "message_id": len(self.providers.requests_to("telegram")), "date": int(time.time()),
                "chat": {"id": int(body["chat_id"]), "type": "private"}, "text": body.get("text", ""),
            }})
            return
        self.send_json(404, {"ok": False, "error_code": 404, "description": "Not Found"})

    # --- ElevenLabs ---------------------------------------------------------------------------------------

    def elevenlabs(self, request: RecordedRequest) -> None:
        if request.headers.get("xi-api-key") != ELEVENLABS_API_KEY:
            self.send_json(401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
            return
        if re.match(r"^/v1/text-to-speech/[^/]+$", request.path) and request.method == "POST":
            self.respond(200, FAKE_MP3, "audio/mpeg")
            return
        if request.path == "/v1/voices" and request.method == "GET":
            self.send_json(200, {
                "voices": [
                    {"voice_id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel", "category": "premade", "labels": {}},
                    {"voice_id": "pNInz6obpgDQGcFmaJgB", "name": "Adam", "category": "premade", "labels": {}},
                ]
            })
            return
        self.send_json(404, {"detail": {"status": "not_found", "message": "Not found"}})


@pytest.fixture(scope="session")
def fake_provider_server() -> Iterator[FakeProviders]:
    fake = FakeProviders()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_providers(fake_provider_server: FakeProviders) -> FakeProviders:
    """The running fake provider APIs, with recorded requests, scripts and state cleared for this test."""
    fake_provider_server.reset()
    return fake_provider_server


@pytest.fixture
def live_provider_settings(settings: Any, fake_providers: FakeProviders) -> FakeProviders:
    """Live mode with every provider configured and pointed at the fake; returns the fake."""
    settings.DEMO_MODE = False
    settings.TWILIO_ACCOUNT_SID = TWILIO_ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = TWILIO_AUTH_TOKEN
    settings.TWILIO_API_BASE_URL = fake_providers.base_url("twilio")
    settings.RESEND_API_KEY = RESEND_API_KEY
    settings.RESEND_WEBHOOK_SECRET = RESEND_WEBHOOK_SECRET
    settings.RESEND_API_BASE_URL = fake_providers.base_url("resend")
    settings.ELEVENLABS_API_KEY = ELEVENLABS_API_KEY
    settings.ELEVENLABS_API_BASE_URL = fake_providers.base_url("elevenlabs")
    settings.LINE_CHANNEL_ACCESS_TOKEN = LINE_CHANNEL_ACCESS_TOKEN
    settings.LINE_CHANNEL_SECRET = LINE_CHANNEL_SECRET
    settings.LINE_API_BASE_URL = fake_providers.base_url("line")
    return fake_providers
