"""Bearer-token authentication shared by REST, MCP and the admin API (contract §2)."""

from __future__ import annotations

import ipaddress
import time

from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from agents.principals import Principal
from agents.selectors import auth_throttle_retry_after, principal_and_agent_from_token, request_agent_remember
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


# Addresses this process found not throttled, each until a monotonic deadline. Skips the throttle read on
# the success path. A failure counted by this process drops its address at once; failures counted by other
# processes are noticed within NOT_THROTTLED_SECONDS (docs/decisions.md).
NOT_THROTTLED_SECONDS = 1.0
_NOT_THROTTLED_MAX = 10_000
_not_throttled_until: dict[str, float] = {}


def _throttle_retry_after(client_address: str) -> int | None:
    now = time.monotonic()
    if _not_throttled_until.get(client_address, 0.0) > now:
        return None
    retry_after = auth_throttle_retry_after(client_address)
    if retry_after is None:
        if len(_not_throttled_until) >= _NOT_THROTTLED_MAX:
            _not_throttled_until.clear()
        _not_throttled_until[client_address] = now + NOT_THROTTLED_SECONDS
    return retry_after


def authenticate_token(token: str | None, *, client_address: str, for_this_request: bool = False) -> Principal:
    """Turn a presented token into a principal, or raise 401/429 and count the failure.

    `for_this_request`: the principal lives only for the current request (DRF), so the agent read with the
    token may be handed to the request's agent lookup (see request_agent_remember). MCP sessions keep
    their principal across requests and must not.
    """
    retry_after = _throttle_retry_after(client_address)
    if retry_after is not None:
        raise ApiError(
            429, "too_many_auth_failures", "Too many failed authentication attempts.", retry_after=retry_after
        )
    if not token:
        count_auth_failure(client_address)
        raise ApiError(401, "missing_token", "Send Authorization: Bearer <token>.")
    principal, agent = principal_and_agent_from_token(token)
    if principal is None:
        count_auth_failure(client_address)
        raise ApiError(401, "invalid_token", "The token is not valid or has been revoked.")
    if for_this_request and agent is not None:
        request_agent_remember(principal, agent)
    return principal


def count_auth_failure(client_address: str) -> None:
    """Count a failed authentication of any kind (token, admin login) against the address's throttle."""
    metrics.AUTH_FAILURES.inc()
    _not_throttled_until.pop(client_address, None)
    auth_failure_record(client_address=client_address)


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, Principal]:
        meta = request.META
        token = bearer_from_header(meta.get("HTTP_AUTHORIZATION"))
        address = client_address_from(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))
        principal = authenticate_token(token, client_address=address, for_this_request=True)
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
