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


def test_every_operation_documents_its_response_and_the_bodies_match(settings, orchestrator_token):
    from orchestrator.operations import OPERATIONS, load_operation_modules
    from tests.ops_helpers import Api

    settings.DEMO_MODE = True
    load_operation_modules()
    schema = Client().get("/api/v1/openapi.json").json()
    for name in ("send_message", "get_waiting_messages", "get_channel_status", "get_usage_dashboard",
                 "get_billing_summary", "provision_channels", "deprovision_channels", "set_agent_limits",
                 "regenerate_agent_token", "record_consent", "revoke_consent", "check_consent"):
        op = OPERATIONS[name]
        assert op.output_model is not None, name
        path = "/api/v1/" + op.path.replace("<str:agentId>", "{agentId}")
        response = schema["paths"][path][op.method.lower()]["responses"]["200"]
        assert response["content"]["application/json"]["schema"]["$ref"].endswith(op.output_model.__name__)

    orch = Api(orchestrator_token)
    _, provisioned = orch.post("provision", {"agentId": "doc", "displayName": "Doc", "capabilities": ["sms", "email"]})
    agent = Api(provisioned["securityToken"])
    bodies = {
        "provision_channels": provisioned,
        "send_message": agent.post("send-message", {"to": "+14155550123", "body": "x"})[1],
        "get_waiting_messages": agent.get("waiting-messages")[1],
        "get_channel_status": agent.get("channel-status")[1],
        "get_usage_dashboard": agent.get("usage")[1],
        "get_billing_summary": agent.get("billing")[1],
        "record_consent": agent.post("consent/record", {"contactAddress": "+14155550123", "channel": "sms"})[1],
        "check_consent": agent.get("consent/check", {"contactAddress": "+14155550123", "channel": "sms"})[1],
        "revoke_consent": agent.post("consent/revoke", {"contactAddress": "+14155550123", "channel": "sms"})[1],
        "set_agent_limits": orch.post("agent-limits", {"agentId": "doc", "limits": {"maxActionsPerDay": 9}})[1],
        "regenerate_agent_token": orch.post("agents/doc/regenerate-token")[1],
        "deprovision_channels": orch.post("deprovision", {"agentId": "doc"})[1],
    }
    for name, body in bodies.items():
        model = OPERATIONS[name].output_model
        assert model is not None
        model.model_validate(body)
        assert set(body) <= set(model.model_json_schema(by_alias=True)["properties"]), name


# --- errors, enums and bounds: the document says what the server does -------------------------------


def _schema() -> dict:
    return Client().get("/api/v1/openapi.json").json()


def _error_validator(schema: dict):
    """A validator of the documented §3 error body, resolving $refs inside the document."""
    import jsonschema

    document = {**schema["components"]["schemas"]["Error"], "components": schema["components"]}
    return jsonschema.Draft202012Validator(document)


def test_every_rest_operation_documents_its_refusals_with_the_error_body():
    schema = _schema()
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "code"]
    assert {"field", "retryAfter", "hint", "limitType", "nextAllowedAt"} <= set(error["properties"])
    # Absent when they do not apply, never null.
    assert error["properties"]["retryAfter"] == {"type": "integer", "minimum": 0,
                                                 "description": error["properties"]["retryAfter"]["description"]}
    operations = [(path, method, operation) for path, methods in schema["paths"].items()
                  for method, operation in methods.items() if path.startswith("/api/v1/")]
    assert len(operations) >= 14
    for path, method, operation in operations:
        responses = operation["responses"]
        assert {"401", "429"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status != "200":
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
                assert response["description"]
        if method == "post":
            assert {"400", "413"} <= set(responses), path
        if operation.get("security") != [{"bearerAuth": []}, {}]:  # not the public ones
            assert {"403", "404"} <= set(responses), path
    send = schema["paths"]["/api/v1/send-message"]["post"]["responses"]
    provision = schema["paths"]["/api/v1/provision"]["post"]["responses"]
    assert {"409", "502", "503"} <= set(send) and {"409", "502", "503"} <= set(provision)
    assert "409" not in schema["paths"]["/api/v1/usage"]["get"]["responses"]


def test_query_parameters_carry_the_enums_and_bounds_the_server_enforces():
    paths = _schema()["paths"]

    def params(path: str) -> dict:
        return {p["name"]: p["schema"] for p in paths[path]["get"]["parameters"]}

    assert params("/api/v1/usage")["period"] == {"type": "string", "enum": ["today", "week", "month", "all"],
                                                 "default": "today"}
    assert params("/api/v1/billing")["period"]["enum"] == ["today", "week", "month", "all"]
    waiting = params("/api/v1/waiting-messages")
    assert waiting["limit"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert waiting["channel"] == {"type": "string", "enum": ["sms", "email", "whatsapp", "line", "voice"]}
    wait = params("/api/v1/wait-for-message")
    assert wait["timeoutSeconds"]["maximum"] == 60 and wait["timeoutSeconds"]["minimum"] == 0
    assert wait["limit"]["maximum"] == 100
    body = _schema()["components"]["schemas"]
    send_ref = paths["/api/v1/send-message"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body[send_ref.rsplit("/", 1)[-1]]["properties"]["channel"]["enum"] == ["sms", "email", "whatsapp", "line"]


def test_the_servers_refusals_match_the_documented_statuses_and_body(make_agent, settings):
    settings.DEMO_MODE = True
    schema = _schema()
    validator = _error_validator(schema)
    _agent, token = make_agent("doc-errors")
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    refusals = [
        ("get", "/api/v1/usage", client.get("/api/v1/usage", {"period": "year"}, **auth)),
        ("get", "/api/v1/waiting-messages", client.get("/api/v1/waiting-messages", {"limit": "501"}, **auth)),
        ("get", "/api/v1/wait-for-message", client.get("/api/v1/wait-for-message", {"timeoutSeconds": "61"}, **auth)),
        ("get", "/api/v1/channel-status", client.get("/api/v1/channel-status")),
        ("get", "/api/v1/channel-status", client.get("/api/v1/channel-status", HTTP_AUTHORIZATION="Bearer agt_nope")),
        ("get", "/api/v1/channel-status", client.get("/api/v1/channel-status", {"agentId": "someone-else"}, **auth)),
        ("post", "/api/v1/send-message", client.post("/api/v1/send-message", data={"to": "+14155550123", "body": "x",
                                                     "channel": "fax"}, content_type="application/json", **auth)),
        ("post", "/api/v1/send-message", client.post("/api/v1/send-message", data=b"{" + b" " * (1024 * 1024 + 1) + b"}",
                                                     content_type="application/json", **auth)),
        ("post", "/api/v1/provision", client.post("/api/v1/provision", data={"displayName": "x", "capabilities": ["sms"]},
                                                  content_type="application/json", **auth)),
    ]
    seen = set()
    for method, path, response in refusals:
        documented = schema["paths"][path][method]["responses"]
        assert str(response.status_code) in documented, (path, response.status_code)
        body = response.json()
        assert not list(validator.iter_errors(body)), (path, body)
        seen.add(response.status_code)
    assert seen == {400, 401, 403, 413}


def test_provision_documents_the_identifier_country_and_name_rules_its_service_enforces(settings, orchestrator_token):
    import re

    settings.DEMO_MODE = True
    properties = _schema()["components"]["schemas"]["ProvisionInput"]["properties"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {orchestrator_token}"}

    def provision(**fields):
        body = {"displayName": "Doc", "capabilities": ["email"], **fields}
        return Client().post("/api/v1/provision", body, content_type="application/json", **auth)

    for field, bad, good in (("agentId", "no spaces", "ok-id_1"), ("country", "ÄÖ", "gb"), ("displayName", "   ", "Bot")):
        pattern = properties[field]["pattern"]
        assert not re.search(pattern, bad) and re.search(pattern, good), field
        refused = provision(**{field: bad})
        assert (refused.status_code, refused.json()["field"]) == (400, field), refused.json()
        assert provision(**{field: good}).status_code == 200, field
    assert re.search(properties["agentId"]["pattern"], "")  # empty: generated
