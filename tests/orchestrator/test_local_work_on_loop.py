"""LOCAL_WORK_ON_LOOP: work that waits on nothing but the database runs on the event loop's own thread;
anything that may wait on a provider's API stays on the worker pool (real sockets, the real handler)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from orchestrator import workers
from orchestrator.mcp_server import run_operation
from orchestrator.operations import OPERATIONS, Operation, OperationInput
from orchestrator.urls import urlpatterns as project_urlpatterns
from tests.live_server import LIVE_SERVER_APPS, LiveServer

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


@csrf_exempt
def where_it_ran(request: HttpRequest, **_path_params: str) -> JsonResponse:
    from agents.models import Agent

    # The ORM works wherever the request runs (Django refuses it where a loop is running).
    return JsonResponse({"thread": threading.get_ident(), "agents": Agent.objects.count()})


# This module is the URLconf of the tests: the real paths, answered by a view that says where it ran.
urlpatterns = [
    path("api/v1/send-message", where_it_ran),
    path("api/v1/usage", where_it_ran),
    path("api/v1/wait-for-message", where_it_ran),
    path("health/ready", where_it_ran),
    path("webhooks/<str:agent_id>/<str:kind>", where_it_ran),
    *project_urlpatterns,
]


@pytest.fixture
def recording_views(settings) -> None:
    settings.ROOT_URLCONF = __name__
    settings.LOCAL_WORK_ON_LOOP = True


async def ran_on_the_loop(server: LiveServer, method: str, url: str) -> bool:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.request(method, url)
    assert response.status_code == 200, response.text
    # The test's server runs on this test's event loop, in this thread.
    return bool(response.json()["thread"] == threading.get_ident())


async def test_in_live_mode_webhooks_that_call_no_provider_run_on_the_loop(
    asgi_server: LiveServer, recording_views: None, settings
) -> None:
    settings.DEMO_MODE = False

    assert await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/sms")
    assert await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/whatsapp")
    assert await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/message-status")
    assert await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/line")
    assert await ran_on_the_loop(asgi_server, "GET", "/api/v1/usage")
    # Resend's webhook fetches the email's body from Resend; a send and readiness call providers.
    assert not await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/email")
    assert not await ran_on_the_loop(asgi_server, "POST", "/api/v1/send-message")
    assert not await ran_on_the_loop(asgi_server, "GET", "/health/ready")


async def test_in_demo_mode_sends_and_email_webhooks_run_on_the_loop_too(
    asgi_server: LiveServer, recording_views: None, settings
) -> None:
    settings.DEMO_MODE = True

    assert await ran_on_the_loop(asgi_server, "POST", "/api/v1/send-message")
    assert await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/email")
    # Long polls hold their thread for seconds, readiness checks may ask a configured provider.
    assert not await ran_on_the_loop(asgi_server, "GET", "/api/v1/wait-for-message")
    assert not await ran_on_the_loop(asgi_server, "GET", "/health/ready")


async def test_with_the_setting_off_everything_runs_on_the_pool(
    asgi_server: LiveServer, recording_views: None, settings
) -> None:
    settings.LOCAL_WORK_ON_LOOP = False

    assert not await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/sms")
    assert not await ran_on_the_loop(asgi_server, "GET", "/api/v1/usage")


def _connection_id() -> int:
    connection.ensure_connection()
    return id(connection.connection)


async def test_the_loops_thread_keeps_one_connection_and_async_code_still_may_not_use_the_orm(settings) -> None:
    from agents.models import Agent

    settings.LOCAL_WORK_ON_LOOP = True
    first = await workers.run_local(_connection_id)
    second = await workers.run_local(_connection_id)
    counted = await workers.run_local(Agent.objects.count)

    assert first == second
    assert counted == 0
    # Only the call itself looks like a worker: the loop is running again afterwards.
    assert asyncio.get_running_loop() is not None
    with pytest.raises(SynchronousOnlyOperation):
        Agent.objects.count()


async def test_run_local_hands_the_call_to_the_pool_when_the_setting_is_off(settings) -> None:
    settings.LOCAL_WORK_ON_LOOP = False

    assert await workers.run_local(threading.get_ident) != threading.get_ident()


def _operation(*, calls_providers: bool, long_running: bool = False) -> Operation:
    def handler(principal: object, data: OperationInput) -> dict[str, object]:
        return {"thread": threading.get_ident()}

    return Operation(name="where", path="where", method="POST", tool="where", input_model=OperationInput,
                     handler=handler, summary="", description="", calls_providers=calls_providers,
                     long_running=long_running)


@pytest.mark.parametrize(
    ("demo_mode", "calls_providers", "long_running", "on_the_loop"),
    [
        (False, False, False, True),
        (False, True, False, False),  # a live send waits on the provider's API
        (True, True, False, True),  # the sandbox calls nothing
        (True, False, True, False),  # a long poll
    ],
)
async def test_mcp_tool_calls_run_on_the_loop_only_when_they_wait_on_nothing_but_the_database(
    settings, demo_mode: bool, calls_providers: bool, long_running: bool, on_the_loop: bool
) -> None:
    settings.LOCAL_WORK_ON_LOOP = True
    settings.DEMO_MODE = demo_mode
    operation = _operation(calls_providers=calls_providers, long_running=long_running)

    result = await run_operation(operation, principal=None, arguments={})  # type: ignore[arg-type]

    assert (result["thread"] == threading.get_ident()) is on_the_loop


def test_the_operations_that_call_providers_say_so() -> None:
    from orchestrator.operations import load_operation_modules

    load_operation_modules()
    assert {op.path for op in OPERATIONS.values() if op.calls_providers} == {"send-message", "provision", "deprovision"}
