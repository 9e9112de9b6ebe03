"""Bearer-token authentication shared by REST, MCP and the admin API (contract §2)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from agents.principals import Principal
from agents.selectors import auth_throttle_retry_after, principal_from_token
from agents.services import auth_failure_record
from orchestrator import metrics
from orchestrator.errors import ApiError


def client_address_from(peer: str | None, forwarded_for: str | None) -> str:
    """The socket address, unless the peer is a trusted proxy that tells us the client's."""
    peer = peer or "unknown"
    if forwarded_for and peer in settings.TRUSTED_PROXIES:
        candidate = forwarded_for.split(",")[0].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return peer
    return peer


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def authenticate_token(token: str | None, *, client_address: str) -> Principal:
    """Turn a presented token into a principal, or raise 401/429 and count the failure."""
    retry_after = auth_throttle_retry_after(client_address)
    if retry_after is not None:
        raise ApiError(
            429, "too_many_auth_failures", "Too many failed authentication attempts.", retry_after=retry_after
        )
    if not token:
        _count_failure(client_address)
        raise ApiError(401, "missing_token", "Send Authorization: Bearer <token>.")
    principal = principal_from_token(token)
    if principal is None:
        _count_failure(client_address)
        raise ApiError(401, "invalid_token", "The token is not valid or has been revoked.")
    return principal


def _count_failure(client_address: str) -> None:
    metrics.AUTH_FAILURES.inc()
    auth_failure_record(client_address=client_address)


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, Principal]:
        meta = request.META
        token = bearer_from_header(meta.get("HTTP_AUTHORIZATION"))
        address = client_address_from(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))
        principal = authenticate_token(token, client_address=address)
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class OptionalBearerTokenAuthentication(BearerTokenAuthentication):
    """For public endpoints: no Authorization header is anonymous, but a header that is sent must be valid.

    So `curl -H "Authorization: Bearer …" /api/v1/health` both checks a token and shows who it is.
    """

    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:  # type: ignore[override]
        if not request.META.get("HTTP_AUTHORIZATION"):
            return None
        return super().authenticate(request)


class IsAuthenticatedPrincipal(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, Principal)
