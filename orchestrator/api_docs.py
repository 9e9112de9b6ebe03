"""The public API documents: `/api/v1/openapi.json` (drf-spectacular, OpenAPI 3.1) and
`/api/v1/integration-guide` (markdown built from PUBLIC_BASE_URL, so every example is copy-paste ready).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

# Imported for its side effect: it registers the extension that renders pydantic input models.
import drf_spectacular.contrib.pydantic  # noqa: F401
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from drf_spectacular.views import SpectacularAPIView
from pydantic import BaseModel, ConfigDict, Field
from rest_framework.permissions import AllowAny

from orchestrator.connect import sse_client_config, sse_url, streamable_http_client_config, streamable_http_url

if TYPE_CHECKING:
    from orchestrator.operations import Operation


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """The one security scheme: `Authorization: Bearer <orchestrator, org or agent token>`."""

    target_class = "agents.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent token (agt_…), an org token (org_…) or the orchestrator token.",
        }


class OptionalBearerTokenScheme(OpenApiAuthenticationExtension):
    """Public endpoints that also accept a token: the same bearerAuth scheme, or none at all."""

    target_class = "agents.authentication.OptionalBearerTokenAuthentication"
    # No component of its own: bearerAuth is defined once, by BearerTokenScheme.
    name: list[str] = []

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return []

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"bearerAuth": []}]  # drf-spectacular adds the anonymous {} for AllowAny views


LimitType = Literal["per_minute", "per_hour", "per_day", "spend_day", "spend_month", "calls_per_number",
                    "org_spend_day", "org_spend_month"]


# Sent as null when the provider gave none (a timeout has no status, some refusals no code).
_NULLABLE_ERROR_FIELDS = frozenset({"providerCode", "providerStatus"})


def _optional_fields_absent(schema: dict[str, Any]) -> None:
    schema["properties"] = {
        name: prop if name in _NULLABLE_ERROR_FIELDS else _without_null(prop)
        for name, prop in schema.get("properties", {}).items()
    }


class Error(BaseModel):
    """Every refusal's JSON body (contract §3): a sentence, a code, and what would make the call pass."""

    # The optional fields are left out of a body when they do not apply; they are never null.
    model_config = ConfigDict(extra="allow", populate_by_name=True, json_schema_extra=_optional_fields_absent)

    error: str = Field(description="A human sentence.")
    code: str = Field(description="snake_case, stable: branch on this.")
    field: str | None = Field(default=None, description="The request field at fault (validation errors).")
    retry_after: int | None = Field(default=None, alias="retryAfter", ge=0,
                                    description="Seconds to wait; also sent as the Retry-After header on 429.")
    hint: str | None = Field(default=None, description="What would make the request pass.")
    limit_type: LimitType | None = Field(default=None, alias="limitType", description="429 rate_limited and "
                                         "spend_limit_reached: which limit.")
    limit: float | None = Field(default=None, description="The limit that was reached (actions, or USD).")
    next_allowed_at: str | None = Field(default=None, alias="nextAllowedAt", json_schema_extra={"format": "date-time"},
                                        description="403 quiet_hours: the first moment a call is allowed.")
    provider: str | None = Field(default=None, description="502 provider_error: the provider that refused.")
    provider_code: str | None = Field(default=None, alias="providerCode",
                                      description="The provider's own error code (Twilio 21211, Resend validation_error…).")
    provider_status: int | None = Field(default=None, alias="providerStatus",
                                        description="The provider's HTTP status; null after a timeout.")
    permanent: bool | None = Field(default=None, description="502: false when retrying may succeed.")


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input, nothing changed: `invalid_request` (with `field`), `invalid_phone`, `invalid_email`, "
         "`missing_agent_id`.",
    401: "`missing_token`, or `invalid_token` (unknown, regenerated or deprovisioned).",
    403: "`forbidden` (beyond the token's scope), `channel_blocked`, `opted_out`, `quiet_hours` (with "
         "`nextAllowedAt`), `consent_required`.",
    404: "`agent_not_found`, `call_not_found`, `not_found` (e.g. an unknown `orgId`).",
    409: "`agent_exists`, `whatsapp_window_closed` (with a `hint` to send a template), "
         "`whatsapp_sender_unavailable`, `number_unavailable`.",
    413: "`payload_too_large`: bodies are limited to 1 MB; media travels by URL.",
    429: "`rate_limited` or `spend_limit_reached` (with `limitType` and `retryAfter`), `too_many_auth_failures`; "
         "the `Retry-After` header carries `retryAfter`.",
    502: "`provider_error`: the provider refused (`provider`, `providerCode`, `providerStatus`, `permanent`).",
    503: "`provider_not_configured` (live mode never falls back to the sandbox), `agent_unavailable`.",
}


def error_statuses(op: Operation) -> list[int]:
    """The refusals an operation can answer, from what its view and service do (contract §3)."""
    statuses = {401, 429}  # a bad token, and the auth-failure throttle, apply to public routes too
    if op.method == "POST" or op.input_model.model_fields:
        statuses.add(400)
    if op.method == "POST":
        statuses.add(413)
    if not op.public:
        statuses |= {403, 404}
    if op.calls_providers:
        statuses |= {502, 503}
    statuses |= set(op.error_statuses)
    return sorted(statuses)


def error_responses(op: Operation) -> dict[int, OpenApiResponse]:
    return {status: OpenApiResponse(response=Error, description=ERROR_DESCRIPTIONS[status])
            for status in error_statuses(op)}


def query_parameters(op: Operation) -> list[OpenApiParameter]:
    """A GET operation's query parameters with the types, enums and bounds its input model enforces."""
    schema = op.input_model.model_json_schema(by_alias=True, mode="validation")
    required = set(schema.get("required", []))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        if name in op.path_params:
            continue
        field_schema = _without_null(field_schema)
        description = field_schema.pop("description", "")
        parameters.append(OpenApiParameter(name=name, location=OpenApiParameter.QUERY, required=name in required,
                                           type=field_schema, description=description))
    return parameters


def _without_null(field_schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None = None` as the wire has it: absent when not applicable, never null."""
    options = field_schema.get("anyOf")
    rest = {key: value for key, value in field_schema.items() if key not in ("anyOf", "title")}
    if rest.get("default", "") is None:
        rest.pop("default")
    if not options or {"type": "null"} not in options:
        return rest if "anyOf" not in field_schema else {**rest, "anyOf": options}
    kept = [option for option in options if option != {"type": "null"}]
    return {**kept[0], **rest} if len(kept) == 1 else {"anyOf": kept, **rest}


class OpenApiView(SpectacularAPIView):
    """GET /api/v1/openapi.json: public, JSON, generated from the same operation registry as the tools."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [OpenApiJsonRenderer]


@require_GET
def integration_guide(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/integration-guide: text/markdown."""
    return HttpResponse(integration_guide_markdown(settings.PUBLIC_BASE_URL), content_type="text/markdown; charset=utf-8")


def integration_guide_markdown(base_url: str) -> str:
    base = base_url.rstrip("/")
    api = f"{base}/api/v1"
    token = "$AGENT_TOKEN"
    demo = "on — nothing leaves this machine, sends are recorded and priced" if settings.DEMO_MODE else "off"
    claude = json.dumps(sse_client_config(base, "<agent token>"), indent=2)
    http_config = json.dumps(streamable_http_client_config(base, "<agent token>"), indent=2)
    return f"""# Connect an agent to {base}

This server gives an AI agent its own phone number, email address, WhatsApp sender and LINE channel,
over MCP and over a REST API. Demo mode is {demo}.

## 1. Get an agent token

An org admin (or the operator, with `ORCHESTRATOR_TOKEN`) provisions an agent; the token is shown once:

```bash
curl -s -X POST {api}/provision \\
  -H "Authorization: Bearer $ORG_TOKEN" -H "Content-Type: application/json" \\
  -d '{{"displayName": "Support bot", "capabilities": ["sms", "voice", "email"]}}'
```

Keep `securityToken` (the agent token, `agt_…`) and `callbackSecret`. Below, `{token}` stands for it:

```bash
export AGENT_TOKEN=agt_...
```

## 2. Connect an MCP client

**Claude Desktop** (`claude_desktop_config.json`; Claude Desktop speaks stdio, `mcp-remote` bridges to SSE):

```json
{claude}
```

**Clients that speak Streamable HTTP** (Claude Code, Cursor, the MCP SDKs):

```json
{http_config}
```

**MCP Inspector**:

```bash
npx @modelcontextprotocol/inspector
# Transport: SSE, URL: {sse_url(base, "<agent token>")}
# or Transport: Streamable HTTP, URL: {streamable_http_url(base)}, header Authorization: Bearer <agent token>
```

**Python MCP SDK** (`pip install mcp`):

```python
import asyncio, os
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

async def main() -> None:
    headers = {{"Authorization": f"Bearer {{os.environ['AGENT_TOKEN']}}"}}
    async with streamablehttp_client("{streamable_http_url(base)}", headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(
                "comms_send_message", {{"to": "+14155550123", "body": "Hello from my agent"}}
            )
            print(result.structuredContent)

asyncio.run(main())
```

In demo mode nothing leaves the machine: the send is recorded with a Twilio-shaped id and a simulated
cost. See it in `comms_get_usage_dashboard` / `GET {api}/usage`, or in the admin at `{base}/admin/`
(Messages).

Tools: `comms_send_message`, `comms_get_waiting_messages`, `comms_wait_for_message`, `comms_make_call`,
`comms_call_on_behalf`, `comms_send_voice_message`, `comms_transfer_call`, `comms_get_call`,
`comms_get_channel_status`, `comms_get_usage_dashboard`, `comms_get_billing_summary`,
`comms_record_consent`, `comms_revoke_consent`, `comms_check_consent`, `comms_ping`; with an org token also
`comms_provision_channels`, `comms_deprovision_channels`, `comms_set_agent_limits`.

## 3. Or use the REST API

Every tool is also `{api}/<operation>` with the same JSON fields
(schema: [{api}/openapi.json]({api}/openapi.json)).

```bash
# Send an SMS (an agent token implies agentId)
curl -s -X POST {api}/send-message \\
  -H "Authorization: Bearer {token}" -H "Content-Type: application/json" \\
  -d '{{"to": "+14155550123", "body": "Your table for 2 is confirmed.", "idempotencyKey": "booking-42"}}'

# Send an email
curl -s -X POST {api}/send-message \\
  -H "Authorization: Bearer {token}" -H "Content-Type: application/json" \\
  -d '{{"channel": "email", "to": "ana@example.com", "subject": "Your booking", "body": "See you at 8."}}'

# Read (and acknowledge) what arrived
curl -s "{api}/waiting-messages?limit=20" -H "Authorization: Bearer {token}"

# Channels, usage and cost
curl -s {api}/channel-status -H "Authorization: Bearer {token}"
curl -s "{api}/usage?period=today" -H "Authorization: Bearer {token}"
curl -s "{api}/billing?period=month" -H "Authorization: Bearer {token}"

# Consent (also tools comms_record_consent / comms_revoke_consent / comms_check_consent)
curl -s -X POST {api}/consent/record -H "Authorization: Bearer {token}" -H "Content-Type: application/json" \\
  -d '{{"contactAddress": "+14155550123", "channel": "sms", "consentType": "express", "source": "web form"}}'
curl -s "{api}/consent/check?contactAddress=%2B14155550123&channel=sms" -H "Authorization: Bearer {token}"
```

## 4. What can refuse a send

Checks run in this order, and a refusal says why (`code`) and what would pass:

| code | status | meaning |
|---|---|---|
| `channel_blocked` | 403 | an admin blocked the channel for this agent |
| `opted_out` | 403 | the contact replied STOP (START re-subscribes) |
| `quiet_hours` | 403 | calls only: outside 08:00–21:00 for the recipient; see `nextAllowedAt` |
| `rate_limited` | 429 | `limitType` per_minute, per_hour, per_day or calls_per_number; see `retryAfter` |
| `spend_limit_reached` | 429 | `limitType` spend_day, spend_month, org_spend_day or org_spend_month |
| `whatsapp_window_closed` | 409 | no WhatsApp message from the contact in 24 h: send a template (`templateId`) |
| `provider_error` | 502 | the provider refused; nothing was charged |

Resending with the same `idempotencyKey` within 24 hours returns the first result and sends nothing.

## 5. Receive

Inbound messages reach a connected MCP session as `notifications/message` (logger `comms.inbound`), else a
POST to the agent's `callbackUrl` signed with `X-Comms-Signature: t=<unix>,v1=<hmac-sha256(callbackSecret,
"<t>.<body>")>`, else they wait for `waiting-messages`. Provider webhooks are
`{base}/webhooks/<agentId>/{{sms,whatsapp,email,line,voice,call-status,message-status}}`.
"""
