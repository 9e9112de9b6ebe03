"""The admin JSON API in /api/v1/openapi.json, with its request and response shapes."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

ROUTES = {
    ("/admin/api/organizations", "post"): "AdminOrganizationInput",
    ("/admin/api/whatsapp-senders", "post"): "AdminWhatsAppSenderInput",
    ("/admin/api/status", "get"): None,
    ("/admin/api/dashboard", "get"): None,
    ("/admin/api/test/twilio", "post"): "AdminTwilioCheckInput",
    ("/admin/api/test/elevenlabs", "post"): "AdminApiKeyInput",
    ("/admin/api/test/resend", "post"): "AdminApiKeyInput",
    ("/admin/api/save", "post"): "AdminSaveInput",
    ("/admin/api/deploy", "post"): None,
    ("/admin/api/agents", "get"): None,
    ("/admin/api/agents/{agentId}/blocked-channels", "post"): "AdminBlockedChannelsInput",
    ("/admin/api/my-token", "get"): None,
    ("/admin/api/regenerate-token", "post"): "AdminRegenerateInput",
}


def test_every_admin_route_is_documented_with_its_shapes_and_both_ways_to_authenticate() -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["cookieAuth"]["in"] == "cookie"
    for (path, method), request_model in ROUTES.items():
        operation = schema["paths"][path][method]
        assert operation["security"] == [{"bearerAuth": []}, {"cookieAuth": []}], path
        response = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert components[response]["properties"], path
        if request_model:
            body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert body.endswith("/" + request_model), path
    assert set(components["AdminAgentsOutput"]["properties"]) == {"agents"}
    assert {"agentId", "displayName", "phoneNumber", "emailAddress", "status", "blockedChannels", "connected"} <= set(
        components["AdminAgentEntry"]["properties"])
    assert {"credentials"} == set(components["AdminSaveInput"]["properties"])
