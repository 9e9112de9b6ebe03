"""A whole phone call without a phone: Twilio's side of an inbound call, against a running server.

It does what Twilio does: POSTs the signed `/voice` webhook, reads the ConversationRelay URL and the
greeting from the TwiML, opens that socket with an `X-Twilio-Signature` of its URL, sends `setup`,
then one `prompt` per utterance, and collects the text frames of each answer. When the call is over
it POSTs the signed final `call-status` (`completed`, `CallDuration`), as Twilio does to the number's
StatusCallback, so the call is recorded as ended and its `call_outcome` is produced. Used by
`manage.py simulate_call`; signs with the secrets the server uses (TWILIO_AUTH_TOKEN, or in DEMO_MODE
the demo signing secret), over PUBLIC_BASE_URL.
"""

from __future__ import annotations

import json
import math
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from channels_app import signatures

# How long the caller stays on the line after their last utterance was answered.
HANG_UP_AFTER_SECONDS = 1.0


class SimulationError(Exception):
    """The server refused or the call could not go on; the message says why."""


@dataclass(frozen=True)
class Line:
    """One thing heard on the call: who said it and what."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Relay:
    url: str
    greeting: str
    parameters: dict[str, str]


def _post_webhook(*, server: str, agent_id: str, route: str, params: dict[str, str], token: str) -> bytes:
    path = f"/webhooks/{agent_id}/{route}"
    signature = signatures.twilio_sign(url=signatures.public_url(path), params=params, auth_token=token)
    request = urllib.request.Request(  # noqa: S310 - the operator's own server (--server)
        server + path,
        data=urllib.parse.urlencode(params).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        hint = (
            f" It was signed for {signatures.public_url(path)}: run this with the PORT (or PUBLIC_BASE_URL) and "
            "TWILIO_AUTH_TOKEN the server runs with." if exc.code == 403 else ""
        )
        raise SimulationError(f"POST {path} answered {exc.code}.{hint}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SimulationError(f"Could not reach the server at {server}: {exc}") from exc


def _relay_of(twiml: bytes) -> Relay:
    try:
        root = ET.fromstring(twiml)  # noqa: S314 - the operator's own server's TwiML
    except ET.ParseError as exc:
        raise SimulationError("The /voice webhook did not answer TwiML.") from exc
    element = root.find("Connect/ConversationRelay")
    if element is None:
        raise SimulationError(
            "The server answered an empty <Response/>: the agent is unknown or inactive, or its voice channel is blocked."
        )
    parameters = {p.get("name", ""): p.get("value", "") for p in element.findall("Parameter")}
    return Relay(url=element.get("url", ""), greeting=element.get("welcomeGreeting", ""), parameters=parameters)


def _on_server(url: str, server: str) -> str:
    """The socket URL of the TwiML, opened at --server (PUBLIC_BASE_URL may be a tunnel or proxy)."""
    parts = urllib.parse.urlsplit(url)
    target = urllib.parse.urlsplit(server)
    scheme = "wss" if target.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, target.netloc, parts.path, parts.query, ""))


def call_simulate(
    *, server: str, agent_id: str, caller: str, callee: str, utterances: list[str], reply_timeout: float
) -> Iterator[Line]:
    """Drive one inbound call and yield what is heard, line by line, as it happens."""
    token = signatures.twilio_auth_token()
    if not token:
        raise SimulationError("Set TWILIO_AUTH_TOKEN (or DEMO_MODE=true) so the call can be signed like Twilio's.")
    call_sid = "CA" + secrets.token_hex(16)
    params = {
        "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": caller,
        "To": callee,
        "Caller": caller,
        "Called": callee,
    }
    relay = _relay_of(_post_webhook(server=server, agent_id=agent_id, route="voice", params=params, token=token))
    yield Line("call", f"{call_sid} from {caller} to {callee} (session {relay.parameters.get('sessionId', '?')})")
    yield Line("greeting", relay.greeting)
    # Twilio signs the socket URL as given in the TwiML, with no body.
    signature = signatures.twilio_sign(url=relay.url, params={}, auth_token=token)
    answered_at: float | None = None
    try:
        with connect(
            _on_server(relay.url, server), additional_headers={"X-Twilio-Signature": signature}, proxy=None, open_timeout=10
        ) as socket:
            answered_at = time.monotonic()
            socket.send(json.dumps({
                "type": "setup", "sessionId": "VX" + secrets.token_hex(16), "accountSid": params["AccountSid"],
                "callSid": call_sid, "from": caller, "to": callee, "direction": "inbound", "callStatus": "RINGING",
                "customParameters": relay.parameters,
            }))
            yield from _converse(socket, utterances, reply_timeout)
    except InvalidStatus as exc:
        raise SimulationError(f"The voice socket was refused ({exc.response.status_code}).") from exc
    except ConnectionClosed:
        yield Line("call", "the server closed the call")
    if answered_at is None:
        return
    # Without this final report a simulated call would stay in progress forever: the socket closing
    # is not the call ending (Twilio may go on with the <Connect action> TwiML).
    duration = max(1, math.ceil(time.monotonic() - answered_at))
    final = {**params, "CallStatus": "completed", "CallDuration": str(duration)}
    _post_webhook(server=server, agent_id=agent_id, route="call-status", params=final, token=token)
    yield Line("call", f"hung up after {duration} s (call-status: completed)")


def _converse(socket: ClientConnection, utterances: list[str], reply_timeout: float) -> Generator[Line, None, None]:
    """The caller's utterances one by one, each followed by its answer, until the caller or the server ends."""
    for utterance in utterances:
        yield Line("caller", utterance)
        socket.send(json.dumps({"type": "prompt", "voicePrompt": utterance, "lang": "en-US", "last": True}))
        if (yield from _answer(socket, reply_timeout)):
            return
    # Before hanging up, show whatever the server still sends (an `end` after a goodbye).
    yield from _answer(socket, HANG_UP_AFTER_SECONDS, quiet=True)


def _answer(socket: ClientConnection, timeout: float, *, quiet: bool = False) -> Generator[Line, None, bool]:
    """The text frames of one answer, up to the one marked `last`; True when the server ended the call."""
    parts: list[str] = []
    while True:
        try:
            frame = json.loads(socket.recv(timeout=timeout))
        except TimeoutError:
            if not quiet:
                yield Line("call", f"no answer within {timeout:g} s")
            return False
        if frame.get("type") == "text":
            parts.append(str(frame.get("token", "")))
            if frame.get("last"):
                yield Line("agent", "".join(parts))
                return False
        elif frame.get("type") == "end":
            if parts:
                yield Line("agent", "".join(parts))
            yield Line("call", f"ended by the server {frame.get('handoffData', '')}")
            return True
        else:
            yield Line("server", json.dumps(frame))
