from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import AsyncIterator

import pytest
from django.conf import settings

from agents.models import Organization
from agents.services import AgentAddresses, agent_create, organization_create


@pytest.fixture
def orchestrator_token() -> str:
    return settings.ORCHESTRATOR_TOKEN


@pytest.fixture
def default_org(db: None) -> Organization:
    # get_or_create: transactional tests (the live server ones) flush the migration's row.
    return Organization.objects.get_or_create(pk="default", defaults={"name": "Default organization"})[0]


@pytest.fixture
def make_org(db: None):
    def make(name: str = "Acme", org_id: str | None = None) -> tuple[Organization, str]:
        org, issued = organization_create(name=name, org_id=org_id)
        return org, issued.token

    return make


@pytest.fixture
def make_agent(db: None, default_org: Organization):
    def make(agent_id: str = "agent-a", org: Organization | None = None, **kwargs):
        agent, issued, _secret = agent_create(
            organization=org or default_org,
            display_name=kwargs.pop("display_name", agent_id.title()),
            agent_id=agent_id,
            addresses=kwargs.pop("addresses", AgentAddresses(phone=None, email=f"{agent_id}@agents.example.com")),
            **kwargs,
        )
        return agent, issued.token

    return make


# Real-socket server fixtures (uvicorn in the test's loop; a second process for the Redis tests) and the
# loopback fake of the provider HTTP APIs (tests/fake_providers.py).
from tests.fake_providers import fake_provider_server, fake_providers, live_provider_settings  # noqa: E402, F401
from tests.live_server import _second_server, asgi_server, second_asgi_server  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _bounded_task_teardown(request: pytest.FixtureRequest) -> None:
    """Async tests end with cancel_leftover_tasks, torn down after every other fixture of the test."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        request.getfixturevalue("cancel_leftover_tasks")


@pytest.fixture
async def cancel_leftover_tasks() -> AsyncIterator[None]:
    """Closing a test's event loop waits for every task to finish cancelling, and a task that survives
    its cancellation would hang the whole run until CI's time limit. So before the loop closes, the tasks
    a test left behind are cancelled here, again every 0.5 s for at most 10 s (a cancellation a task
    swallowed is not repeated by asyncio); any still running are reported with where they wait, so a
    hang becomes a visible warning instead of a silent stall.

    Seen about once in ten runs of the Redis tests: the registry's listener inside channels_redis's
    receive(), in a new BZPOPMIN read after its cancellation was lost (receive_single loops on empty
    reads); where exactly redis-py / asyncio lose it is not pinned down yet."""
    yield
    current = asyncio.current_task()
    stuck = {task for task in asyncio.all_tasks() if task is not current}
    for _ in range(20):
        if not stuck:
            return
        for task in stuck:
            task.cancel()
        _, stuck = await asyncio.wait(stuck, timeout=0.5)
    for task in stuck:
        warnings.warn(f"a test left a task that ignored cancellation: {task!r} awaiting "
                      f"{' <- '.join(reversed(_await_chain(task.get_coro())))}", stacklevel=1)


def _await_chain(coro: object) -> list[str]:
    """Where a suspended coroutine is really waiting: its frame, then each coroutine it awaits."""
    chain = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain
