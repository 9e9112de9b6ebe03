"""The admin site: Django's admin plus the operator's pages (dashboard, setup wizard, API docs, provisioning).

`admin_ui.apps.OrchestratorAdminConfig` makes this the default site, so `admin.site` and every
`@admin.register` in the project land here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, path


class OrchestratorAdminSite(admin.AdminSite):
    site_header = "Agent Comms Orchestrator"
    site_title = "Comms admin"
    index_template = "admin_ui/index.html"

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
