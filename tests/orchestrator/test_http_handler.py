"""Django behind the pooled ASGI handler: real requests on a real socket (uvicorn), as clients see them."""

from __future__ import annotations

import threading

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db.backends.signals import connection_created

from tests.live_server import LIVE_SERVER_APPS, LiveServer

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


async def test_it_reuses_database_connections_across_requests(asgi_server: LiveServer, make_agent) -> None:
    """Django's own ASGI handler connects afresh for every request (a new thread each); ours keeps one
    connection per worker thread, so a hundred authenticated requests open at most a few."""
    _agent, token = await sync_to_async(make_agent)()
    opened: list[str] = []

    def count(sender: object, connection: object, **kwargs: object) -> None:
        opened.append(threading.current_thread().name)

    connection_created.connect(count)
    try:
        async with httpx.AsyncClient(base_url=asgi_server.url, headers={"Authorization": f"Bearer {token}"}) as client:
            for _ in range(100):
                response = await client.get("/api/v1/health")
                assert response.status_code == 200
                assert response.json()["agentId"] == "agent-a"
    finally:
        connection_created.disconnect(count)

    assert len(opened) <= 3, opened
    assert all(name.startswith("worker") for name in opened)


ADMIN_APPS = [*LIVE_SERVER_APPS, "django.contrib.admin", "django.contrib.sessions", "django.contrib.messages",
              "django.contrib.staticfiles"]


@pytest.mark.django_db(transaction=True, available_apps=ADMIN_APPS)
async def test_it_serves_json_errors_and_the_admin_through_the_pool(asgi_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=asgi_server.url) as client:
        missing = await client.get("/api/v1/no-such-endpoint")
        login = await client.get("/admin/login/")
        posted = await client.post("/admin/login/", data={"username": "nobody", "password": "wrong"})

    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert login.status_code == 200 and "csrftoken" in login.cookies
    # No CSRF token sent: Django's CSRF protection still runs on this path.
    assert posted.status_code == 403


async def test_it_keeps_answering_while_more_agents_long_poll_than_there_are_worker_threads(
    asgi_server: LiveServer, make_agent, settings
) -> None:
    """Long polls hold their thread for their whole wait; they run on threads of their own, so agents
    waiting for messages cannot starve every other request."""
    import asyncio

    from orchestrator.workers import reset_worker_threads

    settings.WORKER_THREADS, settings.LONG_CALL_THREADS = 2, 8
    await asyncio.get_running_loop().run_in_executor(None, reset_worker_threads)
    _agent, token = await sync_to_async(make_agent)()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=headers, timeout=30) as client:
        # The token's first use records last_used_at; done now, not by five requests at once (the test
        # database is SQLite in memory, whose shared cache refuses concurrent writers outright).
        assert (await client.get("/api/v1/health")).status_code == 200
        polls = [
            asyncio.create_task(client.get("/api/v1/wait-for-message", params={"timeoutSeconds": "5"}))
            for _ in range(4)
        ]
        await asyncio.sleep(0.5)  # the polls are waiting now
        health = await client.get("/api/v1/health")
        # Queued behind the polls, the health check could only have been answered after they ended.
        polls_still_waiting = not any(poll.done() for poll in polls)
        results = await asyncio.gather(*polls)

    assert health.status_code == 200
    assert polls_still_waiting, "the health check waited for the long polls to end"
    assert [(r.status_code, r.json()["count"]) for r in results] == [(200, 0)] * 4
