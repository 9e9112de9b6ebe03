"""Token issue, verify and revoke (contract §2): prefixes, digest-only storage, refusal after revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from agents.crypto import decrypt, token_digest
from agents.models import AgentToken, OrgToken
from agents.principals import Role
from agents.selectors import principal_from_token
from agents.services import agent_deactivate, agent_token_issue, org_token_issue, token_revoke, token_revoke_by_value

pytestmark = pytest.mark.django_db


def columns_containing(needle: str) -> list[str]:
    """Every table.column whose text form contains `needle`, over the whole database."""
    hits: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                sql = (
                    f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)} "
                    f"WHERE CAST({connection.ops.quote_name(column.name)} AS TEXT) LIKE %s"
                )
                cursor.execute(sql, [f"%{needle}%"])
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{column.name}")
    return hits


def health_as(client: Client, token: str, address: str = "192.0.2.10") -> Any:
    return client.get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=address)


def test_it_issues_agent_tokens_with_a_prefix_and_stores_only_the_digest(make_agent: Any) -> None:
    agent, token = make_agent("agent-a")

    assert token.startswith("agt_") and len(token) > 40
    row = AgentToken.objects.get(agent=agent)
    assert row.digest == token_digest(token)
    assert row.display_prefix == token[:10]
    assert columns_containing(token) == []
    assert columns_containing(token[10:30]) == []


def test_it_stores_org_tokens_as_a_digest_and_an_encrypted_copy(make_org: Any) -> None:
    org, token = make_org("Acme", "acme")

    assert token.startswith("org_")
    row = OrgToken.objects.get(organization=org)
    assert row.digest == token_digest(token)
    assert decrypt(row.token_encrypted) == token
    assert columns_containing(token) == []


def test_it_resolves_each_kind_of_token_to_its_principal(make_org: Any, make_agent: Any, orchestrator_token: str) -> None:
    org, org_token = make_org("Acme", "acme")
    _agent, agent_token = make_agent("agent-a", org=org)

    assert principal_from_token(orchestrator_token).role is Role.SUPER_ADMIN  # type: ignore[union-attr]
    org_principal = principal_from_token(org_token)
    assert org_principal is not None
    assert (org_principal.role, org_principal.org_id) == (Role.ORG_ADMIN, "acme")
    agent_principal = principal_from_token(agent_token)
    assert agent_principal is not None
    assert (agent_principal.role, agent_principal.org_id, agent_principal.agent_id) == (Role.AGENT, "acme", "agent-a")


@pytest.mark.parametrize("token", ["", "agt_", "agt_unknown", "org_unknown", "orch_guess", "Bearer x"])
def test_it_resolves_unknown_tokens_to_nobody(token: str, make_agent: Any) -> None:
    make_agent("agent-a")
    assert principal_from_token(token) is None


def test_it_refuses_a_token_after_it_is_regenerated(client: Client, make_agent: Any) -> None:
    agent, old_token = make_agent("agent-a")
    assert health_as(client, old_token).json()["identity"] == {"role": "agent", "orgId": "default", "agentId": "agent-a"}

    issued = agent_token_issue(agent=agent, revoke_existing=True)

    assert issued.revoked_count == 1
    response = health_as(client, old_token)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert health_as(client, issued.token).status_code == 200


def test_it_refuses_a_token_revoked_by_id_or_by_value(client: Client, make_agent: Any, make_org: Any) -> None:
    agent, agent_token = make_agent("agent-a")
    org, org_token = make_org("Acme", "acme")

    assert token_revoke(token_id=AgentToken.objects.get(agent=agent).pk, kind="agent") is True
    assert token_revoke_by_value(token=org_token) is True
    assert token_revoke_by_value(token=org_token) is False  # already revoked

    for token in (agent_token, org_token):
        response = health_as(client, token)
        assert (response.status_code, response.json()["code"]) == (401, "invalid_token")


def test_it_refuses_the_tokens_of_a_deprovisioned_agent(client: Client, make_agent: Any) -> None:
    agent, token = make_agent("agent-a")
    agent_deactivate(agent=agent)
    assert health_as(client, token).json()["code"] == "invalid_token"


def test_it_keeps_other_org_tokens_working_when_one_org_regenerates(make_org: Any) -> None:
    acme, acme_token = make_org("Acme", "acme")
    _globex, globex_token = make_org("Globex", "globex")

    org_token_issue(organization=acme, revoke_existing=True)

    assert principal_from_token(acme_token) is None
    assert principal_from_token(globex_token) is not None


def test_it_writes_last_used_at_at_most_every_few_minutes(make_agent: Any, settings: Any) -> None:
    agent, token = make_agent("agent-a")
    row = AgentToken.objects.get(agent=agent)
    assert row.last_used_at is None

    principal_from_token(token)
    first = AgentToken.objects.get(pk=row.pk).last_used_at
    assert first is not None

    principal_from_token(token)
    assert AgentToken.objects.get(pk=row.pk).last_used_at == first

    stale = timezone.now() - timedelta(seconds=settings.TOKEN_LAST_USED_INTERVAL_SECONDS + 5)
    AgentToken.objects.filter(pk=row.pk).update(last_used_at=stale)
    principal_from_token(token)
    assert AgentToken.objects.get(pk=row.pk).last_used_at > stale  # type: ignore[operator]


def test_it_answers_an_anonymous_caller_of_the_public_health_endpoint(client: Client) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["identity"] is None

