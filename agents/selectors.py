"""Reads: token → principal, tenant-scoped agent lookups, auth throttling state."""

from __future__ import annotations

import hmac
import threading
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, Q, QuerySet
from django.utils import timezone

from agents.crypto import token_digest
from agents.models import Agent, AgentStatus, AgentToken, AuthFailureWindow, Organization, OrgToken
from agents.principals import Principal, Role
from orchestrator import sql
from orchestrator.errors import ApiError

AGENT_TOKEN_PREFIX = "agt_"
ORG_TOKEN_PREFIX = "org_"



def principal_from_token(raw_token: str) -> Principal | None:
    """Resolve a bearer token to who is calling; None when it is unknown or revoked.

    The one selector behind DRF, MCP and the admin API.
    """
    return principal_and_agent_from_token(raw_token)[0]


def principal_and_agent_from_token(raw_token: str) -> tuple[Principal | None, Agent | None]:
    """principal_from_token, plus the agent of an agent token (with its organization and limits), read by
    the same query — so the request that authenticated can act on it without reading it again."""
    token = raw_token.strip()
    if not token:
        return None, None
    orchestrator_token = settings.ORCHESTRATOR_TOKEN
    if orchestrator_token and hmac.compare_digest(token.encode(), orchestrator_token.encode()):
        return Principal(role=Role.SUPER_ADMIN), None
    digest = token_digest(token)
    if token.startswith(AGENT_TOKEN_PREFIX):
        agent_token = sql.live_agent_token(digest)
        if (
            agent_token is None
            or agent_token.agent.status == AgentStatus.DEPROVISIONED
            or not hmac.compare_digest(agent_token.digest, digest)
        ):
            return None, None
        _touch_last_used(AgentToken, agent_token.pk, agent_token.last_used_at)
        principal = Principal(
            role=Role.AGENT,
            org_id=agent_token.agent.organization_id,
            agent_id=agent_token.agent_id,
            token_id=agent_token.pk,
        )
        return principal, agent_token.agent
    if token.startswith(ORG_TOKEN_PREFIX):
        org_token = sql.live_org_token(digest)
        if org_token is None or not hmac.compare_digest(org_token.digest, digest):
            return None, None
        _touch_last_used(OrgToken, org_token.pk, org_token.last_used_at)
        return Principal(role=Role.ORG_ADMIN, org_id=org_token.organization_id, token_id=org_token.pk), None
    return None, None


# The agent read while authenticating the current request, for that request's own principal object only.
# Per thread (a request runs on one worker thread), matched by identity (a principal pinned to an MCP
# session is another object, so it never sees an agent read for someone else's request), and taken at
# most once, so a second lookup in the same request reads the database again.
_request_agent = threading.local()


def principal_session_valid(principal: Principal, *, agent_id: str | None) -> bool:
    """Whether a live MCP session of `principal` (registered for `agent_id`) may still receive the agent's
    events: its token is not revoked and the agent is active. One query."""
    agent_active = Agent.objects.filter(pk=agent_id, status=AgentStatus.ACTIVE)
    if principal.role is not Role.SUPER_ADMIN and principal.token_id is None:
        return False
    if principal.role is Role.AGENT:
        # After every push to an agent's session: plain SQL (orchestrator.sql), the ORM's query building cost
        # more than the rest of the push's bookkeeping (bench/HISTORY.md, "One CPU and results in batches").
        return sql.agent_token_session_valid(
            token_id=principal.token_id or 0, agent_id=agent_id, active_status=AgentStatus.ACTIVE
        )
    if principal.role is Role.ORG_ADMIN:
        live = OrgToken.objects.filter(pk=principal.token_id or 0, revoked_at__isnull=True)
        if agent_id is None:
            return live.exists()
        return agent_active.filter(organization_id=principal.org_id).filter(Exists(live)).exists()
    return agent_id is None or agent_active.exists()


def request_agent_remember(principal: Principal, agent: Agent) -> None:
    """Hand the agent read during authentication to this request's first agent_get_for_principal."""
    _request_agent.entry = (principal, agent)


def _request_agent_take(principal: Principal, agent_id: str) -> Agent | None:
    entry: tuple[Principal, Agent] | None = getattr(_request_agent, "entry", None)
    if entry is None:
        return None
    _request_agent.entry = None
    if entry[0] is not principal or entry[1].pk != agent_id:
        return None
    return entry[1]


def _touch_last_used(model: type[AgentToken] | type[OrgToken], pk: int, last_used_at: object) -> None:
    """Write last_used_at at most every few minutes, so auth stays a read on the hot path."""
    now = timezone.now()
    threshold = now - timedelta(seconds=settings.TOKEN_LAST_USED_INTERVAL_SECONDS)
    if last_used_at is not None and last_used_at > threshold:  # type: ignore[operator]
        return
    model.objects.filter(pk=pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=threshold)).update(
        last_used_at=now
    )


def agents_visible_to(principal: Principal) -> QuerySet[Agent]:
    """The tenant scope: every query over agents for a caller starts here."""
    agents = Agent.objects.select_related("organization")
    if principal.role is Role.SUPER_ADMIN:
        return agents
    if principal.role is Role.ORG_ADMIN:
        return agents.filter(organization_id=principal.org_id)
    return agents.filter(pk=principal.agent_id)


def _agent_visible_to(principal: Principal, agent_id: str) -> Agent | None:
    if principal.role is Role.ORG_ADMIN:
        return sql.agent_with_limits(agent_id, organization_id=principal.org_id or "")
    if principal.role is Role.AGENT and agent_id != principal.agent_id:
        return None
    return sql.agent_with_limits(agent_id)


def agent_get_for_principal(principal: Principal, agent_id: str, *, allow_deprovisioned: bool = False) -> Agent:
    """The agent, if this caller may act on it; 403 for another agent's token, 404 otherwise."""
    if principal.role is Role.AGENT and agent_id != principal.agent_id:
        raise ApiError(403, "forbidden", "An agent token acts only on its own agent.", field="agentId")
    agent = _request_agent_take(principal, agent_id)
    if agent is None:
        agent = _agent_visible_to(principal, agent_id)
    if agent is None:
        raise ApiError(404, "agent_not_found", f"No agent {agent_id!r} in your organization.", field="agentId")
    if agent.status == AgentStatus.DEPROVISIONED and not allow_deprovisioned:
        raise ApiError(404, "agent_not_found", f"Agent {agent_id!r} has been deprovisioned.", field="agentId")
    return agent


def organization_get_for_principal(principal: Principal, org_id: str) -> Organization:
    if not principal.is_super_admin and principal.org_id != org_id:
        raise ApiError(403, "forbidden", "This token may not act on that organization.", field="orgId")
    org = Organization.objects.filter(pk=org_id).first()
    if org is None:
        raise ApiError(404, "not_found", f"No organization {org_id!r}.", field="orgId")
    return org


def auth_throttle_retry_after(client_address: str) -> int | None:
    """Seconds until this address may try again, or None when it is not throttled."""
    window = AuthFailureWindow.objects.filter(client_address=client_address).first()
    if window is None or window.failures < settings.AUTH_FAILURE_LIMIT:
        return None
    ends = window.window_started_at + timedelta(seconds=settings.AUTH_FAILURE_WINDOW_SECONDS)
    remaining = int((ends - timezone.now()).total_seconds()) + 1
    return remaining if remaining > 0 else None
