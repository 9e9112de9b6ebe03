"""Send a correctly signed inbound webhook to a running server, as the provider would (contract §8).

    manage.py simulate_inbound sms --agent my-agent --from +15551234567 --body "Hello"
    manage.py simulate_inbound whatsapp --agent my-agent --from +15551234567 --body "Hi" --media-url https://…
    manage.py simulate_inbound email --agent my-agent --from alice@example.com --subject Hi --body "Hello"
    manage.py simulate_inbound line --agent my-agent --from U4af4980629… --body "こんにちは"

It signs with the secrets the server uses (TWILIO_AUTH_TOKEN, RESEND_WEBHOOK_SECRET, the LINE channel
secret; in DEMO_MODE without them, the demo signing secrets of channels_app.signatures), over
PUBLIC_BASE_URL, and POSTs to --server (default http://127.0.0.1:$PORT).
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.crypto import decrypt
from agents.models import Agent
from channels_app import signatures
from channels_app.channel_registry import BY_NAME, message_channels

# The channels whose provider payload this command can build and sign (a registered channel's webhook
# is its own module's, so it has no builder here).
SIMULATED = {"sms": "_twilio", "whatsapp": "_twilio", "email": "_email", "line": "_line"}


class Command(BaseCommand):
    help = "Send a signed inbound SMS, WhatsApp, email or LINE webhook to a running server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel", choices=[name for name in message_channels() if name in SIMULATED])
        parser.add_argument("--agent", required=True, help="The agent id the message is for.")
        parser.add_argument("--from", dest="sender", required=True, help="E.164 number, email address or LINE user id.")
        parser.add_argument("--body", default="Hello from simulate_inbound")
        parser.add_argument("--to", default="", help="Recipient address (default: the agent's own).")
        parser.add_argument("--subject", default="Simulated email", help="Email subject.")
        parser.add_argument("--media-url", action="append", default=[], help="SMS/WhatsApp media URL (repeatable).")
        parser.add_argument("--server", default="", help="Where the server listens (default http://127.0.0.1:$PORT).")

    def handle(self, *args: Any, **options: Any) -> None:
        agent = Agent.objects.filter(pk=options["agent"]).first()
        if agent is None:
            raise CommandError(f"No agent {options['agent']!r}.")
        channel = options["channel"]
        path = f"/webhooks/{agent.id}/{BY_NAME[channel].webhook_route}"
        builder = getattr(self, SIMULATED[channel])
        body, headers = builder(agent, channel, path, options)
        server = (options["server"] or f"http://127.0.0.1:{settings.PORT}").rstrip("/")
        status, answer = _post(server + path, body, headers)
        self.stdout.write(f"POST {path} → {status}")
        if answer:
            self.stdout.write(answer)
        if status == 403 and channel in ("sms", "whatsapp"):
            # Twilio signs the URL it calls: the server checks against its PUBLIC_BASE_URL, and this command
            # signed against its own settings. A server started with another PORT or URL refuses.
            raise CommandError(
                f"The server answered 403. This command signed for {signatures.public_url(path)}; run it with "
                "the PORT (or PUBLIC_BASE_URL) and TWILIO_AUTH_TOKEN the server runs with."
            )
        if status != 200:
            raise CommandError(f"The server answered {status}.")

    def _twilio(self, agent: Agent, channel: str, path: str, options: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        token = signatures.twilio_auth_token()
        if not token:
            raise CommandError("Set TWILIO_AUTH_TOKEN (or DEMO_MODE=true) so the webhook can be signed.")
        kind = "whatsapp" if channel == "whatsapp" else "phone"
        own = agent.addresses.filter(kind=kind, released_at__isnull=True).values_list("address", flat=True).first()
        prefix = "whatsapp:" if channel == "whatsapp" else ""
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
            "From": prefix + options["sender"],
            "To": prefix + (options["to"] or own or "+15005550006"),
            "Body": options["body"],
            "NumMedia": str(len(options["media_url"])),
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        for index, url in enumerate(options["media_url"]):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = "image/jpeg"
        signature = signatures.twilio_sign(url=signatures.public_url(path), params=params, auth_token=token)
        body = urllib.parse.urlencode(params).encode()
        return body, {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}

    def _email(self, agent: Agent, channel: str, path: str, options: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        secret = signatures.resend_webhook_secret()
        if not secret:
            raise CommandError("Set RESEND_WEBHOOK_SECRET (or DEMO_MODE=true) so the webhook can be signed.")
        own = agent.addresses.filter(kind="email", released_at__isnull=True).values_list("address", flat=True).first()
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        payload = {
            "type": "email.received",
            "created_at": now,
            "data": {
                "email_id": str(uuid.uuid4()),
                "created_at": now,
                "from": options["sender"],
                "to": [options["to"] or own or f"{agent.id}@{settings.EMAIL_DEFAULT_DOMAIN}"],
                "cc": [],
                "bcc": [],
                "message_id": f"<{uuid.uuid4()}@simulate.invalid>",
                "subject": options["subject"],
                "attachments": [],
                # Real Resend events carry no body (the server fetches it); an inline one is accepted too.
                "text": options["body"],
            },
        }
        body = json.dumps(payload)
        msg_id, timestamp = "msg_" + secrets.token_hex(12), int(time.time())
        signature = signatures.svix_sign(msg_id=msg_id, timestamp=timestamp, body=body, secret=secret)
        headers = {
            "Content-Type": "application/json",
            "svix-id": msg_id,
            "svix-timestamp": str(timestamp),
            "svix-signature": signature,
        }
        return body.encode(), headers

    def _line(self, agent: Agent, channel: str, path: str, options: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        secret = signatures.line_channel_secret(decrypt(agent.line_channel_secret_encrypted))
        if not secret:
            raise CommandError("Set LINE_CHANNEL_SECRET (or the agent's own, or DEMO_MODE=true) to sign the webhook.")
        payload = {
            "destination": options["to"] or "U" + "0" * 32,
            "events": [
                {
                    "type": "message",
                    "mode": "active",
                    "timestamp": int(time.time() * 1000),
                    "webhookEventId": "01" + secrets.token_hex(12).upper(),
                    "deliveryContext": {"isRedelivery": False},
                    "replyToken": secrets.token_hex(16),
                    "source": {"type": "user", "userId": options["sender"]},
                    "message": {"type": "text", "id": str(int(time.time() * 1000)), "text": options["body"]},
                }
            ],
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        return body, {"Content-Type": "application/json", "X-Line-Signature": signatures.line_sign(body=body, secret=secret)}


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - operator-given
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", errors="replace")
    except urllib.error.URLError as exc:
        raise CommandError(f"Could not reach the server at {url}: {exc.reason}. Is it running (make run)?") from None
