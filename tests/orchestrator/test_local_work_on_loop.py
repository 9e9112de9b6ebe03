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
    path("api/v1/waiting-messages", where_it_ran),
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
    assert await ran_on_the_loop(asgi_server, "GET", "/api/v1/waiting-messages")
    # Resend's webhook fetches the email's body from Resend; a send and readiness call providers; a
    # scan of the usage history could hold every connection up.
    assert not await ran_on_the_loop(asgi_server, "POST", "/webhooks/agent-a/email")
    assert not await ran_on_the_loop(asgi_server, "POST", "/api/v1/send-message")
    assert not await ran_on_the_loop(asgi_server, "GET", "/health/ready")
    assert not await ran_on_the_loop(asgi_server, "GET", "/api/v1/usage")


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
    assert not await ran_on_the_loop(asgi_server, "GET", "/api/v1/waiting-messages")


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


def _operation(*, calls_providers: bool, long_running: bool = False, scans_history: bool = False) -> Operation:
    def handler(principal: object, data: OperationInput) -> dict[str, object]:
        return {"thread": threading.get_ident()}

    return Operation(name="where", path="where", method="POST", tool="where", input_model=OperationInput,
                     handler=handler, summary="", description="", calls_providers=calls_providers,
                     long_running=long_running, scans_history=scans_history)


@pytest.mark.parametrize(
    ("demo_mode", "calls_providers", "long_running", "scans_history", "on_the_loop"),
    [
        (False, False, False, False, True),
        (False, True, False, False, False),  # a live send waits on the provider's API
        (True, True, False, False, True),  # the sandbox calls nothing
        (True, False, True, False, False),  # a long poll
        (True, False, False, True, False),  # usage over a long history
    ],
)
async def test_mcp_tool_calls_run_on_the_loop_only_when_they_are_short_and_wait_on_nothing_but_the_database(
    settings, demo_mode: bool, calls_providers: bool, long_running: bool, scans_history: bool, on_the_loop: bool
) -> None:
    settings.LOCAL_WORK_ON_LOOP = True
    settings.DEMO_MODE = demo_mode
    operation = _operation(calls_providers=calls_providers, long_running=long_running, scans_history=scans_history)

    result = await run_operation(operation, principal=None, arguments={})  # type: ignore[arg-type]

    assert (result["thread"] == threading.get_ident()) is on_the_loop


def test_the_operations_that_call_providers_say_so() -> None:
    from orchestrator.operations import load_operation_modules

    load_operation_modules()
    assert {op.path for op in OPERATIONS.values() if op.calls_providers} >= {"send-message", "provision", "deprovision"}
    voice_out = {"make-call", "call-on-behalf", "send-voice-message", "transfer-call"}
    assert {op.path for op in OPERATIONS.values() if op.calls_providers} >= voice_out
    assert not any(op.calls_providers for op in OPERATIONS.values() if op.path in ("calls/<str:callSid>",
                                                                                   "waiting-messages", "usage"))
    assert {op.path for op in OPERATIONS.values() if op.scans_history} == {"usage", "billing"}


async def test_queued_calls_run_one_per_turn_of_the_loop_and_everything_else_runs_between(settings) -> None:
    settings.LOCAL_WORK_ON_LOOP = True
    order: list[str] = []

    def call(name: str) -> str:
        order.append(name)
        return name

    async def other_work() -> None:
        for step in range(3):
            order.append(f"loop {step}")
            await asyncio.sleep(0)

    results = await asyncio.gather(*(workers.run_local(call, f"call {n}") for n in range(3)), other_work())

    assert results[:3] == ["call 0", "call 1", "call 2"]
    # A burst of calls does not hold the loop: other tasks get a turn between any two of them.
    assert order.index("loop 1") < order.index("call 1") < order.index("loop 2") < order.index("call 2")


async def test_a_call_whose_caller_gave_up_while_it_queued_does_not_run(settings) -> None:
    settings.LOCAL_WORK_ON_LOOP = True
    ran: list[str] = []

    first = asyncio.ensure_future(workers.run_local(ran.append, "first"))
    second = asyncio.ensure_future(workers.run_local(ran.append, "second"))
    await asyncio.sleep(0)  # both queued
    second.cancel()
    await first
    await asyncio.sleep(0.01)

    assert ran == ["first"]
    assert second.cancelled()


async def test_an_error_in_a_call_reaches_its_caller_and_the_loop_goes_on(settings) -> None:
    settings.LOCAL_WORK_ON_LOOP = True

    def fails() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await workers.run_local(fails)
    assert await workers.run_local(threading.get_ident) == threading.get_ident()
    assert asyncio.get_running_loop().is_running()


async def test_queued_calls_give_way_to_loop_work_that_must_not_wait_behind_them(settings) -> None:
    settings.LOCAL_WORK_ON_LOOP = True
    order: list[str] = []

    async def push() -> None:
        async with workers.loop_work_first():
            for step in range(3):  # a notification's few turns of the loop to its socket
                order.append(f"push {step}")
                await asyncio.sleep(0)

    async def requests_then_push() -> None:
        await asyncio.gather(*(workers.run_local(order.append, f"call {n}") for n in range(2)), push())

    await requests_then_push()

    # The push started while the calls were queued; none of them ran until it was done.
    assert order == ["push 0", "push 1", "push 2", "call 0", "call 1"]


async def test_a_push_that_never_finishes_cannot_starve_queued_calls(settings) -> None:
    settings.LOCAL_WORK_ON_LOOP = True
    release = asyncio.Event()

    async def stuck_push() -> None:
        async with workers.loop_work_first():
            await release.wait()

    stuck = asyncio.ensure_future(stuck_push())
    await asyncio.sleep(0)
    try:
        assert await asyncio.wait_for(workers.run_local(threading.get_ident), timeout=5) == threading.get_ident()
    finally:
        release.set()
        await stuck
