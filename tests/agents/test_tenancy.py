"""Tenant scoping (contract §2): a token of one org never reads or acts on another org's agent."""

from __future__ import annotations

from typing import Any

import pytest

from agents.principals import Principal, Role, resolve_agent_id
from agents.selectors import (
    agent_get_for_principal,
    agents_visible_to,
    organization_get_for_principal,
    principal_from_token,
)
from agents.services import agent_deactivate
from orchestrator.errors import ApiError

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_orgs(make_org: Any, make_agent: Any) -> dict[str, Principal]:
    acme, acme_token = make_org("Acme", "acme")
    globex, globex_token = make_org("Globex", "globex")
    _a, acme_agent_token = make_agent("acme-bot", org=acme)
    make_agent("globex-bot", org=globex)
    principals = {
        "acme": principal_from_token(acme_token),
        "globex": principal_from_token(globex_token),
        "acme-bot": principal_from_token(acme_agent_token),
    }
    assert all(principals.values())
    return principals  # type: ignore[return-value]


def test_it_shows_an_org_only_its_own_agents(two_orgs: dict[str, Principal]) -> None:
    assert list(agents_visible_to(two_orgs["acme"]).values_list("id", flat=True)) == ["acme-bot"]
    assert list(agents_visible_to(two_orgs["globex"]).values_list("id", flat=True)) == ["globex-bot"]


def test_it_shows_an_agent_token_only_its_own_agent(two_orgs: dict[str, Principal]) -> None:
    assert list(agents_visible_to(two_orgs["acme-bot"]).values_list("id", flat=True)) == ["acme-bot"]


def test_it_shows_the_orchestrator_every_agent(two_orgs: dict[str, Principal]) -> None:
    visible = set(agents_visible_to(Principal(role=Role.SUPER_ADMIN)).values_list("id", flat=True))
    assert {"acme-bot", "globex-bot"} <= visible


def test_it_answers_404_when_an_org_asks_for_another_orgs_agent(two_orgs: dict[str, Principal]) -> None:
    with pytest.raises(ApiError) as refused:
        agent_get_for_principal(two_orgs["acme"], "globex-bot")
    assert (refused.value.status, refused.value.code) == (404, "agent_not_found")
    assert agent_get_for_principal(two_orgs["globex"], "globex-bot").pk == "globex-bot"


def test_it_answers_403_when_an_agent_token_names_another_agent(two_orgs: dict[str, Principal]) -> None:
    with pytest.raises(ApiError) as refused:
        agent_get_for_principal(two_orgs["acme-bot"], "globex-bot")
    assert (refused.value.status, refused.value.code) == (403, "forbidden")


def test_it_lets_the_orchestrator_reach_any_agent(two_orgs: dict[str, Principal]) -> None:
    assert agent_get_for_principal(Principal(role=Role.SUPER_ADMIN), "globex-bot").organization_id == "globex"


def test_it_hides_a_deprovisioned_agent_unless_asked(two_orgs: dict[str, Principal]) -> None:
    agent = agent_get_for_principal(two_orgs["acme"], "acme-bot")
    agent_deactivate(agent=agent)
    with pytest.raises(ApiError) as refused:
        agent_get_for_principal(two_orgs["acme"], "acme-bot")
    assert refused.value.code == "agent_not_found"
    assert agent_get_for_principal(two_orgs["acme"], "acme-bot", allow_deprovisioned=True).pk == "acme-bot"


def test_it_refuses_an_org_token_on_another_organization(two_orgs: dict[str, Principal]) -> None:
    with pytest.raises(ApiError) as refused:
        organization_get_for_principal(two_orgs["acme"], "globex")
    assert refused.value.status == 403
    assert organization_get_for_principal(two_orgs["acme"], "acme").pk == "acme"


def test_it_answers_404_for_an_unknown_organization() -> None:
    with pytest.raises(ApiError) as refused:
        organization_get_for_principal(Principal(role=Role.SUPER_ADMIN), "nope")
    assert (refused.value.status, refused.value.code) == (404, "not_found")


def test_it_takes_the_agent_from_an_agent_token_and_requires_admins_to_name_it(two_orgs: dict[str, Principal]) -> None:
    assert resolve_agent_id(two_orgs["acme-bot"], None) == "acme-bot"
    assert resolve_agent_id(two_orgs["acme-bot"], "acme-bot") == "acme-bot"
    with pytest.raises(ApiError) as mismatch:
        resolve_agent_id(two_orgs["acme-bot"], "globex-bot")
    assert mismatch.value.status == 403
    with pytest.raises(ApiError) as missing:
        resolve_agent_id(two_orgs["acme"], None)
    assert (missing.value.status, missing.value.code) == (400, "missing_agent_id")
