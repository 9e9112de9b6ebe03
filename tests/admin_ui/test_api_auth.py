"""Who may call the admin JSON API (contract §2, §9): tokens of each kind, staff sessions with and
without CSRF; every refusal is a §3 JSON body, never HTML or a login redirect."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.admin_ui.conftest import Tenant, bearer, csrf_headers, session_client

pytestmark = pytest.mark.django_db

READS = ["/admin/api/status", "/admin/api/dashboard", "/admin/api/agents"]
SUPER_ONLY_WRITES = [
    ("/admin/api/organizations", {"name": "Zed"}),
    ("/admin/api/whatsapp-senders", {"phoneNumber": "+14155550999"}),
    ("/admin/api/save", {"credentials": {"VOICE_DEFAULT_LANGUAGE": "en-GB"}}),
    ("/admin/api/deploy", {}),
    ("/admin/api/test/twilio", {"accountSid": "AC" + "0" * 32, "authToken": "x"}),
    ("/admin/api/test/elevenlabs", {"apiKey": "x"}),
    ("/admin/api/test/resend", {"apiKey": "x"}),
    ("/admin/api/test/line", {"channelAccessToken": "x"}),
    ("/admin/api/test/public-url", {"url": "http://127.0.0.1:9"}),
]


def post(client: Client, path: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(path, body, content_type="application/json", **headers)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]


@pytest.mark.parametrize("path", READS + ["/admin/api/my-token"])
def test_it_answers_401_missing_token_without_credentials(client: Client, path: str) -> None:
    assert_error(client.get(path), 401, "missing_token")


@pytest.mark.parametrize("path", ["/admin/api/organizations", "/admin/api/deploy", "/admin/api/regenerate-token"])
def test_it_answers_401_not_a_login_redirect_to_anonymous_posts(path: str) -> None:
    assert_error(post(Client(enforce_csrf_checks=True), path, {}), 401, "missing_token")


def test_it_answers_401_invalid_token_for_a_wrong_or_revoked_token(client: Client, tenants: dict[str, Tenant]) -> None:
    assert_error(client.get("/admin/api/status", **bearer("org_not-a-token")), 401, "invalid_token")
    assert_error(client.get("/admin/api/status", **bearer("Basic abc")), 401, "invalid_token")


@pytest.mark.parametrize("path", READS + ["/admin/api/my-token"])
def test_it_refuses_an_agent_token_with_403(client: Client, tenants: dict[str, Tenant], path: str) -> None:
    assert_error(client.get(path, **bearer(tenants["a"].agent_token)), 403, "forbidden")


def test_it_refuses_an_agent_token_on_writes_too(client: Client, tenants: dict[str, Tenant]) -> None:
    response = post(client, f"/admin/api/agents/{tenants['a'].agent.pk}/blocked-channels",
                    {"blockedChannels": ["sms"]}, **bearer(tenants["a"].agent_token))
    assert_error(response, 403, "forbidden")
    tenants["a"].agent.refresh_from_db()
    assert tenants["a"].agent.blocked_channels == []


@pytest.mark.parametrize("path", READS)
def test_it_serves_reads_to_orchestrator_and_org_tokens(client: Client, tenants: dict[str, Tenant],
                                                       orchestrator_token: str, path: str) -> None:
    for token in (orchestrator_token, tenants["a"].token, tenants["b"].token):
        response = client.get(path, **bearer(token))
        assert response.status_code == 200, (token, response.content)


@pytest.mark.parametrize(("path", "body"), SUPER_ONLY_WRITES)
def test_it_keeps_settings_and_pools_to_the_super_admin(client: Client, tenants: dict[str, Tenant], path: str,
                                                        body: dict[str, Any], staff_a: User) -> None:
    assert_error(post(client, path, body, **bearer(tenants["a"].token)), 403, "forbidden")
    staff = session_client(staff_a)
    assert_error(post(staff, path, body, **csrf_headers(staff)), 403, "forbidden")


def test_it_accepts_a_staff_session_with_csrf_and_refuses_one_without(tenants: dict[str, Tenant],
                                                                     staff_a: User) -> None:
    client = session_client(staff_a)
    path = f"/admin/api/agents/{tenants['a'].agent.pk}/blocked-channels"

    refused = post(client, path, {"blockedChannels": ["sms"]})
    assert_error(refused, 403, "forbidden")
    assert "CSRF" in refused.json()["error"]
    tenants["a"].agent.refresh_from_db()
    assert tenants["a"].agent.blocked_channels == []

    accepted = post(client, path, {"blockedChannels": ["sms"]}, **csrf_headers(client))
    assert accepted.status_code == 200, accepted.content
    assert accepted.json() == {"success": True, "agentId": "agent-a", "blockedChannels": ["sms"]}


def test_a_staff_session_reads_without_a_csrf_token(tenants: dict[str, Tenant], staff_a: User) -> None:
    response = session_client(staff_a).get("/admin/api/agents")
    assert response.status_code == 200
    assert [agent["agentId"] for agent in response.json()["agents"]] == ["agent-a"]


def test_a_superuser_session_is_super_admin(tenants: dict[str, Tenant], superuser: User) -> None:
    client = session_client(superuser)
    response = post(client, "/admin/api/organizations", {"name": "Zed Corp"}, **csrf_headers(client))
    assert response.status_code == 200, response.content
    assert response.json()["token"].startswith("org_")
    agents = client.get("/admin/api/agents").json()["agents"]
    assert {agent["agentId"] for agent in agents} == {"agent-a", "agent-b"}


def test_a_staff_user_without_an_organization_is_refused(db: None) -> None:
    user = User.objects.create_user("nobody", "n@example.com", "pw-nobody-12345", is_staff=True)
    assert_error(session_client(user).get("/admin/api/agents"), 403, "forbidden")


def test_a_logged_in_non_staff_user_is_refused(db: None) -> None:
    user = User.objects.create_user("visitor", "v@example.com", "pw-visitor-1234")
    assert_error(session_client(user).get("/admin/api/status"), 403, "forbidden")


def test_a_bearer_token_wins_over_the_session_and_needs_no_csrf(tenants: dict[str, Tenant], superuser: User) -> None:
    client = session_client(superuser)
    response = post(client, "/admin/api/organizations", {"name": "Zed"}, **bearer(tenants["a"].token))
    assert_error(response, 403, "forbidden")


def test_an_unknown_admin_api_path_is_a_json_404(client: Client, orchestrator_token: str) -> None:
    assert_error(client.get("/admin/api/nope", **bearer(orchestrator_token)), 404, "not_found")
    assert_error(Client().get("/admin/api/nope/deeper"), 404, "not_found")


def test_a_wrong_method_is_a_json_405(client: Client, orchestrator_token: str) -> None:
    assert_error(client.get("/admin/api/deploy", **bearer(orchestrator_token)), 405, "method_not_allowed")


def test_failed_tokens_count_towards_the_auth_throttle(client: Client, settings: Any,
                                                       tenants: dict[str, Tenant]) -> None:
    settings.AUTH_FAILURE_LIMIT = 2
    for _ in range(2):
        assert_error(client.get("/admin/api/status", **bearer("org_wrong")), 401, "invalid_token")
    response = client.get("/admin/api/status", **bearer(tenants["a"].token))
    assert_error(response, 429, "too_many_auth_failures")
    assert int(response["Retry-After"]) > 0
