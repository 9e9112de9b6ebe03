"""Who calls the admin JSON API (contract §9): an orchestrator or org token, or a staff session with CSRF.

Bearer tokens go through the project's one token selector (agents.authentication), throttle included;
agent tokens are refused (403). Without an Authorization header the Django session is tried: a
superuser acts as super-admin, another staff member as the org-admin of the organization they belong
to (StaffMembership), and unsafe methods need a valid CSRF token. Neither: 401 `missing_token`,
which is not counted as a failed authentication (a dashboard left open after its session expired
would otherwise lock its whole address out).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from admin_ui.tenancy import staff_organization_id
from agents.authentication import BearerTokenAuthentication
from agents.principals import Principal, Role
from orchestrator.errors import ApiError


class AdminBearerAuthentication(BearerTokenAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:  # type: ignore[override]
        if not request.META.get("HTTP_AUTHORIZATION"):
            return None  # let the staff session try
        principal, _ = super().authenticate(request)
        if principal.role is Role.AGENT:
            raise ApiError(403, "forbidden", "The admin API takes an org or orchestrator token, not an agent token.")
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="admin"'


def principal_for_user(user: AbstractBaseUser | AnonymousUser) -> Principal:
    """A superuser is super-admin; another staff member the org-admin of their organization."""
    if not getattr(user, "is_staff", False):
        raise ApiError(403, "forbidden", "Only staff users may use the admin API.")
    org_id = staff_organization_id(user)
    if getattr(user, "is_superuser", False):
        return Principal(role=Role.SUPER_ADMIN, org_id=org_id)
    if org_id is None:
        raise ApiError(403, "forbidden", "Your staff account belongs to no organization; ask a superuser to add "
                                         "you to one (Staff memberships).")
    return Principal(role=Role.ORG_ADMIN, org_id=org_id)


class StaffSessionAuthentication(SessionAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:  # type: ignore[override]
        result = super().authenticate(request)  # None without a logged-in user; checks CSRF otherwise
        if result is None:
            return None
        principal = principal_for_user(result[0])
        return principal, principal

    def enforce_csrf(self, request: Request) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied:
            raise ApiError(403, "forbidden", "CSRF check failed: send the csrftoken cookie's value in an "
                                             "X-CSRFToken header.") from None


class AdminBearerScheme(OpenApiAuthenticationExtension):
    """The REST API's bearerAuth scheme (orchestrator.api_docs.BearerTokenScheme defines it once)."""

    target_class = "admin_ui.authentication.AdminBearerAuthentication"
    name: list[str] = []

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return []

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"bearerAuth": []}]


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "admin_ui.authentication.StaffSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        from django.conf import settings

        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A staff member's admin session; unsafe methods also need the X-CSRFToken header.",
        }
