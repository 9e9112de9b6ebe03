"""The operator's pages inside the admin (admin_ui.sites): dashboard, setup wizard, API docs, provisioning.

The dashboard and the wizard are HTML shells; their data comes from the admin JSON API (`/admin/api/…`)
fetched by small scripts under static/admin_ui/ with the session cookie and the CSRF token.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_safe
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from admin_ui.forms import ProvisionForm, wizard_initial, wizard_steps
from agents.models import DEFAULT_ORG_ID, Organization, StaffMembership
from agents.provisioning import LineCredentialsInput, ProvisionInput, agent_provision
from orchestrator.connect import connect_instructions, sse_client_config, streamable_http_client_config
from orchestrator.errors import ApiError

logger = logging.getLogger(__name__)

DASHBOARD_REFRESH_SECONDS = 15


FAVICON_PATH = Path(__file__).resolve().parent / "static" / "admin_ui" / "favicon.ico"


@functools.cache
def _favicon_bytes() -> bytes:
    return FAVICON_PATH.read_bytes()


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """GET /favicon.ico: every browser asks for it on each admin page, and the Swagger UI page too; without
    it each page load left a 404 in the console and the access log."""
    response = HttpResponse(_favicon_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def _admin_prefix() -> str:
    return reverse("admin:index")


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), "title": title, **extra}


def _require_superuser(request: HttpRequest) -> None:
    if not getattr(request.user, "is_superuser", False):
        raise PermissionDenied("Only a superuser may do this.")


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """GET /admin/dashboard."""
    return render(request, "admin_ui/dashboard.html", _context(
        request, "Dashboard",
        data_url=f"{_admin_prefix()}api/dashboard",
        refresh_seconds=DASHBOARD_REFRESH_SECONDS,
    ))


@require_GET
def setup(request: HttpRequest) -> HttpResponse:
    """GET /admin/setup: the wizard (superusers only: it changes the server's configuration)."""
    _require_superuser(request)
    initial = wizard_initial()
    prefix = _admin_prefix()
    steps = [(step, step.form_class(initial=initial, prefix=None)) for step in wizard_steps(prefix)]
    return render(request, "admin_ui/setup.html", _context(
        request, "Setup",
        steps=steps,
        status_url=f"{prefix}api/status",
        save_url=f"{prefix}api/save",
        deploy_url=f"{prefix}api/deploy",
    ))


class ApiDocsView(SpectacularSwaggerView):
    """GET /admin/api-docs: Swagger UI over /api/v1/openapi.json, its files from drf-spectacular-sidecar.

    Staff only through admin_view (the admin's session login); the schema itself is public.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    title = "Agent Comms Orchestrator API"
    url_name = "openapi"


def _member_organization(request: HttpRequest) -> Organization | None:
    if not request.user.is_authenticated:
        return None
    membership = StaffMembership.objects.select_related("organization").filter(user=request.user).first()
    return membership.organization if membership else None


@require_http_methods(["GET", "POST"])
def provision(request: HttpRequest) -> HttpResponse:
    """GET/POST /admin/provision: provision an agent (the service behind POST /api/v1/provision); shows its
    token and MCP connect snippets once."""
    fixed = None if request.user.is_superuser else _member_organization(request)
    if not request.user.is_superuser and fixed is None:
        raise PermissionDenied("Only members of an organization (or superusers) provision agents.")
    form = ProvisionForm(request.POST or None, organization=fixed)
    if request.method == "POST" and form.is_valid():
        organization = form.chosen_organization() or Organization.objects.get(pk=DEFAULT_ORG_ID)
        data = form.cleaned_data
        try:
            result = agent_provision(organization=organization, request=ProvisionInput(
                display_name=data["display_name"], capabilities=list(data["capabilities"]),
                agent_id=data["agent_id"] or None, country=data["country"].upper(), greeting=data["greeting"],
                system_prompt=data["system_prompt"], voice=data["voice"], language=data["language"],
                email_domain=data["email_domain"] or None, callback_url=data["callback_url"],
                line=LineCredentialsInput(channel_access_token=data["line_channel_access_token"],
                                          channel_secret=data["line_channel_secret"]),
            ))
        except ApiError as exc:
            form.add_error(_form_field(exc.field), exc.message + (f" {exc.hint}" if exc.hint else ""))
        else:
            return _provisioned(request, result)
    return render(request, "admin_ui/provision.html", _context(request, "Provision an agent", form=form,
                                                               organization=fixed))


_FORM_FIELDS = {"displayName": "display_name", "agentId": "agent_id", "capabilities": "capabilities",
                "country": "country", "emailDomain": "email_domain", "callbackUrl": "callback_url",
                "line": "line_channel_access_token"}


def _form_field(api_field: str | None) -> str | None:
    return _FORM_FIELDS.get(api_field or "")


def _provisioned(request: HttpRequest, result: dict[str, Any]) -> HttpResponse:
    base = settings.PUBLIC_BASE_URL
    token = result["securityToken"]
    response = render(request, "admin_ui/provisioned.html", _context(
        request, f"Agent {result['agentId']} provisioned",
        result=result,
        channels=[(name, channel.get("number") or channel.get("address") or "", channel.get("status", ""))
                  for name, channel in result["channels"].items() if channel],
        sse_config=json.dumps(sse_client_config(base, token), indent=2),
        http_config=json.dumps(streamable_http_client_config(base, token), indent=2),
        instructions=connect_instructions(base_url=base, token=token),
    ))
    # The token is shown this once: no cache may keep the page.
    response["Cache-Control"] = "no-store"
    return response
