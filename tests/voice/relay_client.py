"""A ConversationRelay client for tests: Twilio's side of the voice socket over a real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import OperationalError
from websockets.asyncio.client import ClientConnection, connect

from voice import socket_auth
from voice.models import Call

CALLER = "+12125550123"
AGENT_NUMBER = "+14155550100"


def make_call(agent_id: str, *, direction: str = "inbound", call_sid: str = "CAtest0000000000000000000000000001", **fields: Any) -> Call:
    from agents.models import Agent

    agent = Agent.objects.get(pk=agent_id)
    caller, callee = (CALLER, AGENT_NUMBER) if direction == "inbound" else (AGENT_NUMBER, CALLER)
    fields.setdefault("status", "ringing")
    return Call.objects.create(
        agent=agent, organization_id=agent.organization_id, direction=direction,
        from_address=caller, to_address=callee, call_sid=call_sid, **fields,
    )


async def amake_call(agent_id: str, **kwargs: Any) -> Call:
    return await sync_to_async(make_call)(agent_id, **kwargs)


def socket_url(server_url: str, agent_id: str, session_id: str, *, query: str | None = None) -> str:
    """The socket URL of the TwiML, on the test server's real address."""
    base = server_url.replace("http://", "ws://", 1)
    if query is None:
        query = socket_auth.socket_query(agent_id=agent_id, session_id=session_id)
    return f"{base}/webhooks/{agent_id}/voice-ws?{query}"


class Relay:
    """One side of a call: send ConversationRelay frames, read what the server sends back."""

    def __init__(self, socket: ClientConnection, call: Call) -> None:
        self.socket = socket
        self.call = call

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def setup(self, **custom: str) -> None:
        await self.send(
            {
                "type": "setup",
                "sessionId": "VX00000000000000000000000000000000",
                "accountSid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "callSid": self.call.call_sid,
                "from": self.call.from_address,
                "to": self.call.to_address,
                "direction": self.call.direction,
                "callStatus": "RINGING",
                "customParameters": {"sessionId": self.call.session_id, **custom},
            }
        )

    async def say(self, text: str) -> None:
        await self.send({"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True})

    async def frame(self, timeout: float = 10) -> dict[str, Any]:
        return dict(json.loads(await asyncio.wait_for(self.socket.recv(), timeout=timeout)))

    async def reply(self, timeout: float = 10) -> str:
        """The text frames of one answer, joined, up to the one with `last: true`."""
        parts = []
        while True:
            frame = await self.frame(timeout)
            assert frame["type"] == "text", frame
            parts.append(frame["token"])
            if frame["last"]:
                return "".join(parts)


@contextlib.asynccontextmanager
async def relay(url: str, call: Call, *, headers: dict[str, str] | None = None) -> AsyncIterator[Relay]:
    async with connect(url, additional_headers=headers, proxy=None, open_timeout=10) as socket:
        yield Relay(socket, call)


async def eventually(read: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10.0) -> None:
    """Wait until `read()` returns `expected` (a condition, never a fixed sleep).

    The suite's in-memory SQLite refuses a read while the server's thread writes the same table
    ("database table is locked"): that is a retry, not a failure (as in tests.voice.support.wait_until).
    """
    deadline = time.monotonic() + timeout
    value: Any = None
    while True:
        try:
            value = await read()
        except OperationalError as exc:
            value = exc
        else:
            if value == expected:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r}, expected {expected!r}")
        await asyncio.sleep(0.02)
