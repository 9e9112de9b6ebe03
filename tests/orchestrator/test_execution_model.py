"""One execution model in every configuration: blocking work (the ORM, provider SDKs) runs on the worker
pool, and the event loop only reads and writes sockets. Whatever one request waits on, every other session
keeps being served: a provider that answers late, or a database that holds a request's statement (as a
locked SQLite file holds a writer in its busy wait, or a PostgreSQL row lock holds an UPDATE).

Each test holds one request in the blocking place until the others have been served, then releases it:
nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db.backends.signals import connection_created
from mcp_types import LoggingMessageNotificationParams

from channels_app import signatures
from tests.channels_app.webhook_support import TWILIO_TOKEN, fixture
from tests.fake_providers import twilio_error_body
from tests.live_server import LIVE_SERVER_APPS, LiveServer
from tests.ops_helpers import agent_with_numbers
from tests.orchestrator.mcp_clients import bearer, sse_session

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)

WAIT = 30.0  # generous: a loaded 2-core machine is slow, but never this slow
SEND = {"channel": "sms", "to": "+14155550123", "body": "hello"}


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


class Inbox:
    def __init__(self) -> None:
        self.events: list[LoggingMessageNotificationParams] = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.events.append(params)


async def signed_sms_webhook(client: httpx.AsyncClient, agent_id: str) -> httpx.Response:
    path = f"/webhooks/{agent_id}/sms"
    params = fixture("twilio_sms.json")
    signature = signatures.twilio_sign(url="https://comms.example.com" + path, params=params, auth_token=TWILIO_TOKEN)
    return await client.post(path, content=urlencode(params), headers={
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})


async def two_agents(default_org: Any, settings: Any) -> tuple[str, str]:
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.PUBLIC_BASE_URL = "https://comms.example.com"
    _, held = await sync_to_async(agent_with_numbers)("agent-held", default_org, phone="+14155550100")
    _, other = await sync_to_async(agent_with_numbers)("agent-other", default_org, phone="+14155550111")
    return held, other


async def serve_another_session(server: LiveServer, client: httpx.AsyncClient, token: str) -> None:
    """Another agent's session is served in full: its SSE stream opens, a tool call and a REST call
    answer, and an inbound message for it is stored and pushed down its stream."""
    inbox = Inbox()
    async with sse_session(f"{server.url}/sse?token={token}", logging_callback=inbox) as session:
        pong = await asyncio.wait_for(session.call_tool("comms_ping", {}), WAIT)
        assert not pong.is_error
        assert (await client.get("/api/v1/health", headers=bearer(token))).status_code == 200
        assert (await signed_sms_webhook(client, "agent-other")).status_code == 200
        await until(lambda: bool(inbox.events))
    assert inbox.events[0].logger == "comms.inbound"
    assert inbox.events[0].data["agentId"] == "agent-other"


async def test_a_slow_provider_call_leaves_streams_and_other_sessions_responsive(
    asgi_server: LiveServer, default_org: Any, live_provider_settings: Any, settings: Any
) -> None:
    fake = live_provider_settings
    held_token, other_token = await two_agents(default_org, settings)
    release = threading.Event()
    fake.script("twilio", method="POST", path=r"/Messages\.json$", status=400, json_body=twilio_error_body(21211),
                hold=release)

    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=WAIT) as client:
        send = asyncio.create_task(client.post("/api/v1/send-message", json=SEND, headers=bearer(held_token)))
        try:
            await until(lambda: bool(fake.requests_to("twilio", "POST")))  # Twilio has the send, and holds it
            await serve_another_session(asgi_server, client, other_token)
            assert not send.done()  # everything above was served while the provider held the send
        finally:
            release.set()
        answered = await send

    # The provider's refusal, answered once it came (a refusal we cannot map: a provider error).
    assert (answered.status_code, answered.json()["code"]) == (502, "provider_error")


@pytest.fixture
def held_query() -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first SELECT for agent-held's data on a worker thread (whose connections, opened after the reset,
    get the wrapper) waits at the database until released, as a query waits on a locked database. A read
    outside any transaction: on the test database (SQLite shared cache) a waiting write would lock
    tables for everyone, which a real database file or PostgreSQL does not."""
    from orchestrator.workers import reset_worker_threads

    release, reached = threading.Event(), threading.Event()

    def hold(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        on_the_pool = threading.current_thread().name.startswith("worker")  # a request's, not the test's
        if on_the_pool and not reached.is_set() and sql.startswith("SELECT") and "agent-held" in (params or ()):
            reached.set()
            release.wait(WAIT * 2)
        return execute(sql, params, many, context)

    def install(sender: Any, connection: Any, **kwargs: Any) -> None:
        connection.execute_wrappers.append(hold)

    reset_worker_threads()  # the pool's next connections are new ones, which get the wrapper
    connection_created.connect(install)
    try:
        yield release, reached
    finally:
        release.set()
        connection_created.disconnect(install)


async def test_a_request_held_by_the_database_leaves_streams_and_other_sessions_responsive(
    asgi_server: LiveServer, default_org: Any, held_query: tuple[threading.Event, threading.Event], settings: Any
) -> None:
    release, reached = held_query
    settings.DEMO_MODE = True
    held_token, other_token = await two_agents(default_org, settings)

    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=WAIT) as client:
        send = asyncio.create_task(client.post("/api/v1/send-message", json=SEND, headers=bearer(held_token)))
        try:
            await until(reached.is_set)  # one of the send's queries waits at the database
            await serve_another_session(asgi_server, client, other_token)
            assert not send.done()
        finally:
            release.set()
        answered = await send

    assert answered.status_code == 200
