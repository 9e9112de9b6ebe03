"""`/admin/api/…` (contract §9)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from admin_ui import api


@csrf_exempt
def not_found(request: HttpRequest, rest: str) -> JsonResponse:
    """Unknown /admin/api/ paths: a JSON 404, not the admin's catch-all login redirect."""
    return JsonResponse({"error": "Not found.", "code": "not_found"}, status=404)


urlpatterns = [
    path("organizations", api.OrganizationsView.as_view(), name="admin-api-organizations"),
    path("whatsapp-senders", api.WhatsAppSendersView.as_view(), name="admin-api-whatsapp-senders"),
    path("status", api.StatusView.as_view(), name="admin-api-status"),
    path("dashboard", api.DashboardView.as_view(), name="admin-api-dashboard"),
    path("test/twilio", api.TwilioTestView.as_view(), name="admin-api-test-twilio"),
    path("test/elevenlabs", api.ElevenLabsTestView.as_view(), name="admin-api-test-elevenlabs"),
    path("test/resend", api.ResendTestView.as_view(), name="admin-api-test-resend"),
    path("test/line", api.LineTestView.as_view(), name="admin-api-test-line"),
    path("test/public-url", api.PublicUrlTestView.as_view(), name="admin-api-test-public-url"),
    path("save", api.SaveView.as_view(), name="admin-api-save"),
    path("deploy", api.DeployView.as_view(), name="admin-api-deploy"),
    path("agents", api.AgentsView.as_view(), name="admin-api-agents"),
    path("agents/<str:agentId>/blocked-channels", api.BlockedChannelsView.as_view(),
         name="admin-api-blocked-channels"),
    path("my-token", api.MyTokenView.as_view(), name="admin-api-my-token"),
    path("regenerate-token", api.RegenerateTokenView.as_view(), name="admin-api-regenerate-token"),
    re_path(r"^(?P<rest>.*)$", not_found),
]
