"""The operations answer JSON; what a client says it accepts still decides whether it gets it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json; q=0.9, */*; q=0.1"])
def test_it_answers_json_to_clients_that_accept_it(client, make_agent, accept: str | None) -> None:
    _, token = make_agent("agent-a")
    headers = {"Authorization": f"Bearer {token}"}
    if accept is not None:
        headers["Accept"] = accept

    response = client.get("/api/v1/health", headers=headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["agentId"] == "agent-a"


def test_it_refuses_a_client_that_accepts_only_html(client, make_agent) -> None:
    _, token = make_agent("agent-a")

    response = client.get("/api/v1/health", headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})

    assert response.status_code == 406


def test_an_unknown_format_override_is_not_found(client, make_agent) -> None:
    _, token = make_agent("agent-a")

    response = client.get("/api/v1/health?format=xml", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 404
