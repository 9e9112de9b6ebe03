"""The send path's shortcuts around authentication: the agent read with the token, and the throttle check
skipped for a second after an address was found not throttled. Neither may hide a change."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from agents import authentication
from agents.authentication import authenticate_token
from agents.models import Agent, AgentStatus, AuthFailureWindow
from agents.selectors import agent_get_for_principal
from agents.services import auth_failure_record
from orchestrator.errors import ApiError

pytestmark = pytest.mark.django_db

ADDRESS = "198.51.100.20"


def test_it_hands_the_agent_read_with_the_token_to_the_same_requests_lookup(
    make_agent: Any, django_assert_num_queries: Any
) -> None:
    _agent, token = make_agent("agent-a")
    principal = authenticate_token(token, client_address=ADDRESS, for_this_request=True)
    with django_assert_num_queries(0):
        agent = agent_get_for_principal(principal, "agent-a")
    assert agent.pk == "agent-a"
    assert agent.limits.max_actions_per_minute > 0  # loaded by the same query


def test_it_reads_the_agent_again_on_a_second_lookup(make_agent: Any) -> None:
    _agent, token = make_agent("agent-a")
    principal = authenticate_token(token, client_address=ADDRESS, for_this_request=True)
    agent_get_for_principal(principal, "agent-a")
    Agent.objects.filter(pk="agent-a").update(status=AgentStatus.SUSPENDED)
    assert agent_get_for_principal(principal, "agent-a").status == AgentStatus.SUSPENDED


def test_it_never_hands_a_remembered_agent_to_another_principal(make_agent: Any) -> None:
    # An MCP session keeps the principal it opened with; it must not pick up an agent read for a request.
    _agent, token = make_agent("agent-a")
    session_principal = authenticate_token(token, client_address=ADDRESS)
    authenticate_token(token, client_address=ADDRESS, for_this_request=True)
    Agent.objects.filter(pk="agent-a").update(status=AgentStatus.SUSPENDED)
    assert agent_get_for_principal(session_principal, "agent-a").status == AgentStatus.SUSPENDED


def test_it_sees_a_suspension_on_the_very_next_send(client: Client, make_agent: Any, settings: Any) -> None:
    settings.DEMO_MODE = True
    _agent, token = make_agent("agent-a")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    body = {"to": "agent-b@example.com", "body": "hi", "channel": "email", "subject": "s"}
    assert client.post("/api/v1/send-message", body, content_type="application/json", **headers).status_code == 200
    Agent.objects.filter(pk="agent-a").update(status=AgentStatus.SUSPENDED)
    response = client.post("/api/v1/send-message", body, content_type="application/json", **headers)
    assert (response.status_code, response.json()["code"]) == (403, "agent_inactive")


def test_it_checks_the_throttle_again_right_after_a_failure_in_this_process(make_agent: Any, settings: Any) -> None:
    settings.AUTH_FAILURE_LIMIT = 1
    _agent, token = make_agent("agent-a")
    authenticate_token(token, client_address=ADDRESS)  # not throttled: remembered for a second
    with pytest.raises(ApiError):
        authenticate_token("agt_wrong", client_address=ADDRESS)
    with pytest.raises(ApiError) as throttled:
        authenticate_token(token, client_address=ADDRESS)
    assert throttled.value.code == "too_many_auth_failures"


def test_it_notices_failures_counted_by_another_process_within_a_second(
    make_agent: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.AUTH_FAILURE_LIMIT = 1
    _agent, token = make_agent("agent-a")
    monkeypatch.setattr(authentication, "_not_throttled_until", {})
    monkeypatch.setattr(authentication, "NOT_THROTTLED_SECONDS", 0.05)
    authenticate_token(token, client_address=ADDRESS)
    auth_failure_record(client_address=ADDRESS)  # as another process would: straight into the database
    assert AuthFailureWindow.objects.get(client_address=ADDRESS).failures == 1
    time.sleep(0.06)
    with pytest.raises(ApiError) as throttled:
        authenticate_token(token, client_address=ADDRESS)
    assert throttled.value.code == "too_many_auth_failures"
