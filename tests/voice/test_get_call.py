"""GET /api/v1/calls/<callSid>: the call object, visible to its agent and its organization only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.ops_helpers import Api
from tests.voice.support import AGENT_NUMBER, TO, outbound_call, voice_agent

pytestmark = pytest.mark.django_db

SID = "CA" + "3" * 32


def test_it_answers_the_call_object(orchestrator_token):
    agent, token = voice_agent()
    outbound_call(agent, SID, status="completed", duration_seconds=75, cost=Decimal("0.028"),
                  started_at=datetime(2026, 1, 15, 12, 0, tzinfo=UTC), ended_at=datetime(2026, 1, 15, 12, 1, 20, tzinfo=UTC))
    status, body = Api(token).get(f"calls/{SID}")
    assert status == 200
    assert body == {
        "callSid": SID, "agentId": "agent-a", "direction": "outbound", "status": "completed",
        "from": AGENT_NUMBER, "to": TO, "durationSeconds": 75, "cost": 0.028,
        "startedAt": "2026-01-15T12:00:00Z", "endedAt": "2026-01-15T12:01:20Z",
    }
    assert Api(orchestrator_token).get(f"calls/{SID}") == (200, body)
    assert Api(token).get(f"calls/{SID}", {"agentId": "agent-a"}) == (200, body)


def test_a_call_in_progress_has_no_cost_or_end_yet():
    agent, token = voice_agent()
    outbound_call(agent, SID, status="in-progress")
    body = Api(token).get(f"calls/{SID}")[1]
    assert (body["status"], body["cost"], body["endedAt"], body["durationSeconds"]) == ("in-progress", None, None, None)


def test_another_agents_call_is_not_found(make_org):
    agent_a, _token_a = voice_agent("agent-a")
    _agent_b, token_b = voice_agent("agent-b", phone="+14155550101")
    outbound_call(agent_a, SID)
    status, body = Api(token_b).get(f"calls/{SID}")
    assert (status, body["code"]) == (404, "call_not_found")
    assert Api(token_b).get("calls/CA" + "0" * 32)[1]["code"] == "call_not_found"
    # Naming another agent with an agent token is refused, as everywhere.
    assert Api(token_b).get(f"calls/{SID}", {"agentId": "agent-a"})[0] == 403


def test_an_org_token_reads_its_organizations_calls_only(make_org):
    acme, acme_token = make_org("Acme")
    other, other_token = make_org("Other")
    agent, _ = voice_agent("agent-a", org=acme)
    outbound_call(agent, SID)
    assert Api(acme_token).get(f"calls/{SID}")[0] == 200
    assert Api(acme_token).get(f"calls/{SID}", {"agentId": "agent-a"})[0] == 200
    assert Api(acme_token).get(f"calls/{SID}", {"agentId": "agent-x"})[1]["code"] == "call_not_found"
    status, body = Api(other_token).get(f"calls/{SID}")
    assert (status, body["code"]) == (404, "call_not_found")


def test_it_needs_a_token():
    assert Api().get(f"calls/{SID}")[0] == 401
