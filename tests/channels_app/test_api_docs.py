"""The public API documents: openapi.json and the integration guide."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_openapi_json_is_public_openapi_3_1_with_the_bearer_scheme_and_every_operation():
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/")
    schema = response.json()
    assert schema["openapi"] == "3.1.0"
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An agent token (agt_…), an org token (org_…) or the orchestrator token.",
    }
    paths = schema["paths"]
    for path in ("send-message", "waiting-messages", "channel-status", "usage", "billing", "provision",
                 "deprovision", "agent-limits", "agents/{agentId}/regenerate-token", "consent/record",
                 "consent/revoke", "consent/check"):
        assert f"/api/v1/{path}" in paths, path
    send = paths["/api/v1/send-message"]["post"]
    assert send["security"] == [{"bearerAuth": []}]
    body_schema = send["requestBody"]["content"]["application/json"]["schema"]
    ref = body_schema["$ref"].rsplit("/", 1)[-1]
    properties = schema["components"]["schemas"][ref]["properties"]
    assert {"to", "body", "channel", "mediaUrls", "idempotencyKey"} <= set(properties)


def test_the_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_the_integration_guide_is_markdown_built_on_the_public_base_url(settings):
    settings.PUBLIC_BASE_URL = "https://comms.example.net"
    response = Client().get("/api/v1/integration-guide")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert "https://comms.example.net/sse?token=" in text  # Claude Desktop via mcp-remote
    assert "https://comms.example.net/mcp" in text
    assert "curl -s -X POST https://comms.example.net/api/v1/send-message" in text
    assert "modelcontextprotocol/inspector" in text
    assert "from mcp import ClientSession" in text
    assert "localhost" not in text
