"""The admin JSON API (contract §9): one thin view per route; the work is in services and selectors."""

from __future__ import annotations

from typing import Annotated, Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from pydantic import BaseModel, Field, StringConstraints
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from admin_ui import selectors, services
from admin_ui.authentication import AdminBearerAuthentication, StaffSessionAuthentication
from agents.authentication import IsAuthenticatedPrincipal
from agents.principals import Principal
from agents.selectors import agent_get_for_principal
from agents.services import organization_create
from orchestrator.api_docs import Error
from orchestrator.errors import ApiError
from orchestrator.op_outputs import Output
from orchestrator.operations import OperationInput, parse_input
from orchestrator.rest import JsonNegotiation

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class AdminApiView(APIView):
    authentication_classes = [AdminBearerAuthentication, StaffSessionAuthentication]
    permission_classes = [IsAuthenticatedPrincipal]
    content_negotiation_class = JsonNegotiation

    def principal(self, request: Request) -> Principal:
        assert isinstance(request.auth, Principal)
        return request.auth

    def body(self, request: Request, model: type[OperationInput]) -> Any:
        data = request.data
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", "The body must be a JSON object.")
        return parse_input(model, dict(data))


ADMIN_ERRORS: dict[int, str] = {
    400: "Invalid input, nothing changed: `invalid_request` (with `field`), `invalid_phone`.",
    401: "`missing_token` (no token and no staff session), or `invalid_token`.",
    403: "`forbidden`: an agent token, an org token or staff member on a super-admin route, a staff session "
         "without a valid CSRF token, or a staff user who belongs to no organization.",
    404: "`agent_not_found` (unknown or another organization's agent), `not_found` (no org token to show).",
    409: "`organization_exists`, `sender_exists`.",
    413: "`payload_too_large`: bodies are limited to 1 MB.",
    429: "`too_many_auth_failures`, with `retryAfter` and the `Retry-After` header.",
}


def schema(summary: str, output: type[BaseModel], request: type[BaseModel] | None = None, *,
           post: bool = True, conflicts: bool = False, **extra: Any) -> Any:
    statuses = [401, 403, 404, 429] + ([400, 413] if post else []) + ([409] if conflicts else [])
    responses: dict[int, Any] = {200: output}
    responses |= {status: OpenApiResponse(response=Error, description=ADMIN_ERRORS[status])
                  for status in sorted(statuses)}
    return extend_schema(summary=summary, request=request, responses=responses, tags=["admin"], **extra)


# --- inputs and outputs (camelCase on the wire) ----------------------------------------------------


class AdminOrganizationInput(OperationInput):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    org_id: str | None = Field(default=None, description="Optional id (letters, digits, - and _); generated otherwise.")


class AdminOrganizationOutput(Output):
    success: bool
    org_id: str
    name: str
    token: str = Field(description="The organization's org token (org_…), shown once.")


class AdminWhatsAppSenderInput(OperationInput):
    phone_number: NonEmpty = Field(description="E.164, e.g. +14155550100")
    sender_sid: str = Field(default="", description="Twilio's sender SID (XE…), if it has one.")


class AdminWhatsAppSenderOutput(Output):
    success: bool
    phone_number: str


class AdminResultOutput(Output):
    success: bool
    message: str


class AdminTwilioCheckInput(OperationInput):
    account_sid: NonEmpty
    auth_token: NonEmpty


class AdminApiKeyInput(OperationInput):
    api_key: NonEmpty


class AdminLineCheckInput(OperationInput):
    channel_access_token: NonEmpty


class AdminPublicUrlCheckInput(OperationInput):
    url: NonEmpty


class AdminSaveInput(OperationInput):
    credentials: dict[str, str | bool] = Field(
        description="Setting name → value, e.g. {\"TWILIO_ACCOUNT_SID\": \"AC…\", \"DEMO_MODE\": false}. Known names: "
                    + ", ".join(services.SAVABLE_SETTINGS) + ". Values may not contain line breaks.")


class AdminSaveOutput(AdminResultOutput):
    saved: list[str]


class AdminAgentEntry(Output):
    agent_id: str
    display_name: str
    org_id: str
    phone_number: str | None
    whatsapp_number: str | None
    email_address: str
    status: str
    channels: list[str]
    blocked_channels: list[str]
    connected: bool = Field(description="Whether the agent has a live MCP session right now.")


class AdminAgentsOutput(Output):
    agents: list[AdminAgentEntry]


class AdminBlockedChannelsInput(OperationInput):
    blocked_channels: list[str] = Field(description="Channel names, as send-message and the consent tools "
                                                    'name them; ["*"] blocks every channel, [] none.')


class AdminBlockedChannelsOutput(Output):
    success: bool
    agent_id: str
    blocked_channels: list[str]


class AdminTokenOutput(Output):
    token: str


class AdminRegenerateInput(OperationInput):
    org_id: str | None = Field(default=None, description="Super-admin only: the organization (default: your own).")


class AdminRegenerateOutput(Output):
    success: bool
    token: str


class AdminProviderStatus(Output):
    configured: bool


class AdminTwilioStatus(AdminProviderStatus):
    account_sid: str | None = Field(description="Masked, e.g. AC…cdef.")


class AdminServerStatus(Output):
    public_base_url: str
    demo_mode: bool
    environment: str
    version: str


class AdminStatusOutput(Output):
    twilio: AdminTwilioStatus
    elevenlabs: AdminProviderStatus
    resend: AdminProviderStatus
    line: AdminProviderStatus
    voice: dict[str, Any]
    server: AdminServerStatus


class AdminDashboardOutput(Output):
    agents: list[dict[str, Any]] = Field(description="Per agent: the agents entry plus spend (today, month, limits, "
                                                     "ratios) and callbacksFailing.")
    organizations: list[dict[str, Any]]
    usage: dict[str, Any] = Field(description="totalMessages, todayActions, totalCost, todayCost, monthCost, …")
    series: list[dict[str, Any]] = Field(description="Per UTC day, the last 14 days: inbound, outbound, failed, "
                                                     "calls, cost.")
    delivery_failures: dict[str, Any]
    opt_outs: dict[str, Any]
    callbacks_failing: int
    services: dict[str, Any] = Field(description="Per provider: configured, mode, readiness, lastError.")
    alerts: list[dict[str, Any]]


# --- views ----------------------------------------------------------------------------------------


class OrganizationsView(AdminApiView):
    @schema("Create an organization and its org token (super-admin)", AdminOrganizationOutput, AdminOrganizationInput, conflicts=True)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        data = self.body(request, AdminOrganizationInput)
        org, issued = organization_create(name=data.name, org_id=data.org_id)
        return Response({"success": True, "orgId": org.pk, "name": org.name, "token": issued.token})


class WhatsAppSendersView(AdminApiView):
    @schema("Add a WhatsApp sender to the pool (super-admin)", AdminWhatsAppSenderOutput, AdminWhatsAppSenderInput,
            conflicts=True)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        data = self.body(request, AdminWhatsAppSenderInput)
        sender = services.whatsapp_sender_add(phone_number=data.phone_number, sender_sid=data.sender_sid)
        return Response({"success": True, "phoneNumber": sender.phone_number})


class StatusView(AdminApiView):
    @schema("Which providers are configured (secrets masked) and the server's settings", AdminStatusOutput, post=False)
    def get(self, request: Request) -> Response:
        return Response(selectors.settings_status())


class DashboardView(AdminApiView):
    @schema("Agents, volume, costs against limits, failures, provider health and alerts", AdminDashboardOutput, post=False)
    def get(self, request: Request) -> Response:
        return Response(selectors.dashboard_for(self.principal(request)))


class TwilioTestView(AdminApiView):
    @schema("Check Twilio credentials against Twilio (super-admin)", AdminResultOutput, AdminTwilioCheckInput)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        data = self.body(request, AdminTwilioCheckInput)
        result = services.twilio_credentials_check(account_sid=data.account_sid, auth_token=data.auth_token)
        return Response({"success": result.success, "message": result.message})


class ElevenLabsTestView(AdminApiView):
    @schema("Check an ElevenLabs API key against ElevenLabs (super-admin)", AdminResultOutput, AdminApiKeyInput)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        result = services.elevenlabs_key_check(api_key=self.body(request, AdminApiKeyInput).api_key)
        return Response({"success": result.success, "message": result.message})


class ResendTestView(AdminApiView):
    @schema("Check a Resend API key against Resend (super-admin)", AdminResultOutput, AdminApiKeyInput)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        result = services.resend_key_check(api_key=self.body(request, AdminApiKeyInput).api_key)
        return Response({"success": result.success, "message": result.message})


class LineTestView(AdminApiView):
    @schema("Check a LINE channel access token against LINE (super-admin)", AdminResultOutput, AdminLineCheckInput)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        data = self.body(request, AdminLineCheckInput)
        result = services.line_token_check(channel_access_token=data.channel_access_token)
        return Response({"success": result.success, "message": result.message})


class PublicUrlTestView(AdminApiView):
    @schema("Check that this server reaches itself at a public base URL: it fetches <url>/health (super-admin)",
            AdminResultOutput, AdminPublicUrlCheckInput)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        result = services.public_url_check(url=self.body(request, AdminPublicUrlCheckInput).url)
        return Response({"success": result.success, "message": result.message})


class SaveView(AdminApiView):
    @schema("Save settings into .env, atomically (super-admin); deploy applies them", AdminSaveOutput, AdminSaveInput)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        data = request.data
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", "The body must be a JSON object.")
        saved = services.settings_save(credentials=data.get("credentials"))
        message = f"Saved {len(saved)} setting(s) to {settings.ENV_FILE.name}; deploy to apply them."
        return Response({"success": True, "message": message, "saved": saved})


class DeployView(AdminApiView):
    @schema("Restart the server with the saved settings (super-admin)", AdminResultOutput)
    def post(self, request: Request) -> Response:
        services.require_super_admin(self.principal(request))
        result = services.server_restart()
        return Response({"success": result.success, "message": result.message})


class AgentsView(AdminApiView):
    @schema("The caller's agents with their addresses, blocked channels and live connection", AdminAgentsOutput, post=False)
    def get(self, request: Request) -> Response:
        return Response({"agents": selectors.agents_for_admin(self.principal(request))})


class BlockedChannelsView(AdminApiView):
    @schema("Block channels of an agent", AdminBlockedChannelsOutput, AdminBlockedChannelsInput)
    def post(self, request: Request, agentId: str) -> Response:  # noqa: N803 - the contract's path parameter
        agent = agent_get_for_principal(self.principal(request), agentId)
        data = self.body(request, AdminBlockedChannelsInput)
        blocked = services.agent_blocked_channels_set(
            agent=agent, blocked_channels=services.blocked_channels_normalize(data.blocked_channels))
        return Response({"success": True, "agentId": agent.pk, "blockedChannels": blocked})


class MyTokenView(AdminApiView):
    @schema("The org token of the caller's organization", AdminTokenOutput, post=False, parameters=[
        OpenApiParameter("orgId", str, required=False, description="Super-admin only: another organization.")])
    def get(self, request: Request) -> Response:
        org_id = services.caller_organization_id(self.principal(request), request.query_params.get("orgId"))
        return Response({"token": services.org_token_current(organization_id=org_id)})


class RegenerateTokenView(AdminApiView):
    @schema("Replace the organization's org token; the previous one stops working at once", AdminRegenerateOutput,
            AdminRegenerateInput)
    def post(self, request: Request) -> Response:
        data = self.body(request, AdminRegenerateInput)
        org_id = services.caller_organization_id(self.principal(request), data.org_id)
        return Response({"success": True, "token": services.org_token_regenerate(organization_id=org_id)})
