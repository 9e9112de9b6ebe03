"""Edits made outside the services (the Django admin saves models directly) that must end live MCP
sessions: an agent set to suspended or deprovisioned, a token marked revoked."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from agents.models import Agent, AgentStatus, AgentToken, OrgToken
from agents.services import sessions_end_on_commit


def _agent_saved(sender: type[Agent], instance: Agent, created: bool, **kwargs: Any) -> None:
    if instance.status != AgentStatus.ACTIVE:
        sessions_end_on_commit({"agentId": instance.pk})


def _token_saved(sender: type[AgentToken] | type[OrgToken], instance: AgentToken | OrgToken, **kwargs: Any) -> None:
    if instance.revoked_at is not None:
        sessions_end_on_commit({"tokenKind": "agent" if sender is AgentToken else "org", "tokenIds": [instance.pk]})


def connect() -> None:
    post_save.connect(_agent_saved, sender=Agent, dispatch_uid="agents.end_sessions.agent")
    post_save.connect(_token_saved, sender=AgentToken, dispatch_uid="agents.end_sessions.agent_token")
    post_save.connect(_token_saved, sender=OrgToken, dispatch_uid="agents.end_sessions.org_token")
