"""Schemathesis against /api/v1/openapi.json (issue 14): generated requests for every operation, as an
agent, an organization and the orchestrator. No answer may be a 5xx or one the document does not describe.

Runs in-process over WSGI inside the test's transaction, so whatever the generated requests create
(agents, messages, usage, auth-failure windows) is rolled back and no other test sees it. Bounded:
FUZZ_EXAMPLES examples per operation (default 10) keep the run to a minute or so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from agents.models import Agent, AgentStatus, AgentToken, OrgToken
from tests.ops_helpers import agent_with_numbers

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
def api_schema(db: None) -> Iterator[Any]:
    # As Django's test client does: a request's start and end must not close the test's connection,
    # whose transaction holds everything the run creates (PostgreSQL would lose it mid-test).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(db: None, default_org: Any, make_org: Any, orchestrator_token: str, settings: Any,
           live_provider_settings: Any, tmp_path: Path) -> list[str]:
    """Live mode against the loopback fake providers, so every operation can run to its end."""
    settings.ENV_FILE = tmp_path / ".env"  # POST /admin/api/save writes here, never the suite's file
    settings.AUTH_FAILURE_LIMIT = 10**6  # a revoked token's 401s must not throttle every later case
    _, agent_token = agent_with_numbers("agent-a", default_org, whatsapp="+14155550101", line=True)
    org, org_token = make_org("Acme", "acme")
    agent_with_numbers("agent-b", org, phone="+14155550102")
    return [agent_token, org_token, orchestrator_token]


def restore_the_callers() -> None:
    """Undo what a case may have done to the three callers (regenerate-token, deprovision), so the next
    case is still made with valid tokens."""
    AgentToken.objects.filter(agent_id__in=["agent-a", "agent-b"]).update(revoked_at=None)
    OrgToken.objects.update(revoked_at=None)
    Agent.objects.filter(pk__in=["agent-a", "agent-b"]).update(status=AgentStatus.ACTIVE, blocked_channels=[])


def test_every_generated_request_gets_a_documented_non_5xx_answer(api_schema: Any, tokens: list[str]) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def check(case: Any) -> None:
            if operation.path.endswith("wait-for-message"):
                # A long poll must not hold the run for up to a minute, nor for its 25 s default when the
                # generated case leaves timeoutSeconds out (on PostgreSQL each such case waited it out).
                case.query = {**(case.query or {}), "timeoutSeconds": 0}
            for token in tokens:
                response = case.call(headers={"Authorization": f"Bearer {token}"})
                case.validate_response(response, checks=CHECKS)
            restore_the_callers()

        try:
            check()
        except Exception as error:  # collect every operation's first failure, then report them all
            failures.append(f"{operation.label}: {error}")
    assert not failures, "\n\n".join(failures)
