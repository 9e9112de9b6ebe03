"""Management commands: thin wrappers that print a token once, and demo data that loads once."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent, AgentToken, ChannelAddress, Organization, OrgToken, PhoneNumber
from agents.principals import Role
from agents.selectors import principal_from_token

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"\b(?:agt|org)_[A-Za-z0-9_\-]{20,}")


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def tokens_in(output: str) -> list[str]:
    return TOKEN.findall(output)


def test_it_creates_an_organization_and_prints_its_token_once() -> None:
    output = run("create_org", "Acme Inc", "--id", "acme")

    [token] = tokens_in(output)
    principal = principal_from_token(token)
    assert principal is not None
    assert (principal.role, principal.org_id) == (Role.ORG_ADMIN, "acme")
    assert output.count(token) == 1
    assert OrgToken.objects.filter(organization_id="acme").count() == 1


def test_it_refuses_a_second_organization_with_the_same_id() -> None:
    run("create_org", "Acme Inc", "--id", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_org", "Acme again", "--id", "acme")


def test_it_creates_an_agent_with_its_channels_and_prints_its_token_once() -> None:
    output = run(
        "create_agent", "--id", "bob", "--name", "Bob", "--phone", "+14155550150",
        "--email", "bob@agents.example.com", "--whatsapp", "+14155550151", "--line",
    )

    [token] = tokens_in(output)
    principal = principal_from_token(token)
    assert principal is not None
    assert (principal.role, principal.org_id, principal.agent_id) == (Role.AGENT, "default", "bob")
    addresses = dict(ChannelAddress.objects.filter(agent_id="bob").values_list("kind", "address"))
    assert addresses == {
        "phone": "+14155550150",
        "email": "bob@agents.example.com",
        "whatsapp": "+14155550151",
        "line": "bob",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "X", "--phone", "4155550150"], "E.164"),
        (["--name", "X", "--email", "not-an-email"], "not a valid email"),
        (["--name", "X", "--org", "nope"], "No organization 'nope'"),
        (["--name", "X", "--id", "bad id!"], "agentId may use letters"),
    ],
)
def test_it_refuses_bad_agent_input_with_a_clear_message(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("create_agent", *args)
    assert not Agent.objects.filter(display_name="X").exists()


def test_it_issues_a_fresh_agent_token_and_revokes_the_old_ones_when_asked() -> None:
    [old] = tokens_in(run("create_agent", "--id", "bob", "--name", "Bob"))

    output = run("issue_token", "--agent", "bob", "--label", "laptop", "--revoke-existing")

    [new] = tokens_in(output)
    assert "revoked 1 earlier token" in output
    assert principal_from_token(old) is None
    assert principal_from_token(new) is not None
    assert AgentToken.objects.get(agent_id="bob", revoked_at__isnull=True).label == "laptop"


def test_it_issues_an_extra_org_token_without_revoking_by_default() -> None:
    [first] = tokens_in(run("create_org", "Acme", "--id", "acme"))
    [second] = tokens_in(run("issue_token", "--org", "acme"))
    assert principal_from_token(first) is not None and principal_from_token(second) is not None


def test_it_refuses_to_issue_for_an_unknown_agent() -> None:
    with pytest.raises(CommandError, match="No agent 'ghost'"):
        run("issue_token", "--agent", "ghost")


def test_it_revokes_a_token_by_id_by_value_and_all_of_an_agent() -> None:
    [first] = tokens_in(run("create_agent", "--id", "bob", "--name", "Bob"))
    [second] = tokens_in(run("issue_token", "--agent", "bob"))
    [third] = tokens_in(run("issue_token", "--agent", "bob"))
    first_id = AgentToken.objects.filter(agent_id="bob").order_by("pk").first().pk  # type: ignore[union-attr]

    run("revoke_token", str(first_id))
    assert principal_from_token(first) is None and principal_from_token(second) is not None

    run("revoke_token", second)
    assert principal_from_token(second) is None and principal_from_token(third) is not None

    assert "Revoked 1 token(s) of agent bob" in run("revoke_token", "--agent", "bob")
    assert principal_from_token(third) is None


def test_it_says_so_when_there_is_nothing_to_revoke() -> None:
    with pytest.raises(CommandError, match="No such active token"):
        run("revoke_token", "agt_never_issued_0123456789abcdef")
    with pytest.raises(CommandError, match="either a token"):
        run("revoke_token")


def test_it_loads_the_demo_data_and_prints_each_token_once(settings: Any) -> None:
    output = run("load_demo_data")

    agent_tokens = [t for t in tokens_in(output) if t.startswith("agt_")]
    assert len(set(agent_tokens)) == 2
    principals = [principal_from_token(t) for t in set(agent_tokens)]
    assert sorted(p.agent_id for p in principals if p) == ["demo-sales", "demo-support"]
    assert {p.org_id for p in principals if p} == {"demo"}
    assert f"{settings.PUBLIC_BASE_URL}/sse?token=" in output
    demo = Agent.objects.filter(organization__name="Demo Co")
    assert demo.count() == 2
    for agent in demo:
        assert agent.addresses.get(kind="email").address == f"{agent.id}@agents.example.com"


def test_it_puts_the_demo_numbers_in_the_pool_as_sandbox_numbers() -> None:
    run("load_demo_data")

    pool = {n.number: (n.agent_id, n.is_sandbox) for n in PhoneNumber.objects.all()}
    assert pool == {"+14155550101": ("demo-sales", True), "+14155550102": ("demo-support", True)}
    for number in pool:
        # The fictional 555-0100..0199 range: nothing real is ever dialled.
        assert re.fullmatch(r"\+1\d{3}55501\d\d", number)


def test_it_never_reprints_or_rotates_tokens_when_the_demo_data_is_already_loaded() -> None:
    first = run("load_demo_data")
    tokens_before = list(AgentToken.objects.values_list("pk", "digest", "revoked_at"))

    second = run("load_demo_data")

    assert tokens_in(second) == []
    assert "already loaded" in second
    assert "issue_token --agent demo-sales --revoke-existing" in second
    assert list(AgentToken.objects.values_list("pk", "digest", "revoked_at")) == tokens_before
    for token in tokens_in(first):
        assert principal_from_token(token) is not None


def test_it_creates_only_the_missing_demo_agent(tmp_path: Path) -> None:
    run("load_demo_data")
    Agent.objects.filter(pk="demo-support").delete()
    PhoneNumber.objects.filter(number="+14155550102").delete()

    output = run("load_demo_data")

    assert [t for t in tokens_in(output) if t.startswith("agt_")] and "demo-support" in output
    assert "demo-sales" not in output
    assert not [t for t in tokens_in(output) if t.startswith("org_")]


@pytest.mark.parametrize(
    "content",
    [
        {"orgs": []},
        {"organizations": [{"id": "x", "name": "X", "agents": [{"id": "no-display-name"}]}]},
    ],
)
def test_it_refuses_a_malformed_demo_data_file_and_leaves_nothing_behind(tmp_path: Path, content: object) -> None:
    broken = tmp_path / "demo.json"
    broken.write_text(json.dumps(content))
    with pytest.raises(CommandError, match="not valid demo data"):
        run("load_demo_data", "--path", str(broken))
    assert not Organization.objects.filter(pk="x").exists()


def test_it_prints_how_to_connect_with_a_placeholder_token(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://comms.example.com"
    output = run("connect_info")

    assert "https://comms.example.com/sse?token=<agent token>" in output
    assert '"url": "https://comms.example.com/mcp"' in output
    assert '"Authorization": "Bearer <agent token>"' in output
    assert 'curl -H "Authorization: Bearer <agent token>" https://comms.example.com/api/v1/health' in output
    assert "issue_token" in output


def test_it_prints_how_to_connect_with_a_given_token(settings: Any) -> None:
    output = run("connect_info", "--token", "agt_example")
    assert f"{settings.PUBLIC_BASE_URL}/sse?token=agt_example" in output
    assert "<agent token>" not in output


def test_it_prints_client_configs_that_paste_as_valid_json() -> None:
    output = run("connect_info", "--token", "agt_example")
    blocks = re.findall(r"^  \{\n.*?^  \}$", output, re.MULTILINE | re.DOTALL)

    configs = [json.loads(block) for block in blocks]

    assert len(configs) == 2
    sse, http = (config["mcpServers"]["comms"] for config in configs)
    assert sse["args"][-1].endswith("/sse?token=agt_example")
    assert (http["type"], http["headers"]) == ("http", {"Authorization": "Bearer agt_example"})
