"""The admin site: Django's admin plus the operator's pages (dashboard, setup wizard, API docs, provisioning).

`admin_ui.apps.OrchestratorAdminConfig` makes this the default site, so `admin.site` and every
`@admin.register` in the project land here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path

from agents.authentication import client_address_from, count_auth_failure
from agents.selectors import auth_throttle_retry_after


def login_client_address(request: HttpRequest) -> str:
    return client_address_from(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def throttled_message(retry_after: int) -> str:
    return (f"Too many failed sign-in attempts from your address. Try again in {retry_after} seconds; "
            "until then no password is checked.")


class ThrottledAuthenticationForm(AdminAuthenticationForm):
    """Failed admin logins count against the same per-address throttle as failed tokens (contract §2)."""

    def clean(self) -> dict[str, object]:
        retry_after = getattr(self.request, "login_retry_after", None)
        if retry_after is not None:
            raise ValidationError(throttled_message(retry_after), code="too_many_auth_failures")
        try:
            return super().clean()
        except ValidationError as error:
            if error.code in ("invalid_login", "inactive") and self.request is not None:
                count_auth_failure(login_client_address(self.request))
            raise


class OrchestratorAdminSite(admin.AdminSite):
    site_header = "Agent Comms Orchestrator"
    site_title = "Comms admin"
    index_template = "admin_ui/index.html"
    login_form = ThrottledAuthenticationForm

    def login(self, request: HttpRequest, extra_context: dict[str, object] | None = None) -> HttpResponse:
        """While the address is throttled the page says so and answers 429, and no password is checked."""
        retry_after = auth_throttle_retry_after(login_client_address(request))
        request.login_retry_after = retry_after  # type: ignore[attr-defined]  # read by ThrottledAuthenticationForm
        if retry_after is not None and request.method != "POST":
            messages.error(request, throttled_message(retry_after))
        response = super().login(request, extra_context)
        if retry_after is not None and response.status_code == 200:
            response.status_code = 429
            response["Retry-After"] = str(retry_after)
        return response

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from admin_ui import views_pages

        # admin_view: staff login (redirects to the admin login page), never cached, CSRF-protected.
        # Pages that need a superuser check it themselves and answer 403.
        pages = [
            path("dashboard", self.admin_view(views_pages.dashboard), name="dashboard"),
            path("setup", self.admin_view(views_pages.setup), name="setup"),
            path("api-docs", self.admin_view(views_pages.ApiDocsView.as_view()), name="api-docs"),
            path("provision", self.admin_view(views_pages.provision), name="provision"),
        ]
        return pages + super().get_urls()

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        context["is_superuser"] = bool(getattr(request.user, "is_superuser", False))
        return context
