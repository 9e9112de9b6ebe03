"""revoke_token: revoke one token (by id or by its value) or every token of an agent."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents.models import Agent
from agents.services import agent_tokens_revoke, token_revoke, token_revoke_by_value


class Command(BaseCommand):
    help = "Revoke a token by id (see issue_token's output or the admin), by its value, or all of an agent's tokens."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("token", nargs="?", help="Token id, or the token itself (agt_… / org_…)")
        parser.add_argument("--kind", choices=("agent", "org"), default="agent", help="What a numeric id refers to")
        parser.add_argument("--agent", help="Revoke every token of this agent")

    def handle(self, *args: Any, token: str | None, kind: str, agent: str | None, **options: Any) -> None:
        if bool(token) == bool(agent):
            raise CommandError("Give either a token (id or value) or --agent <agentId>.")
        if agent:
            target = Agent.objects.filter(pk=agent).first()
            if target is None:
                raise CommandError(f"No agent {agent!r}.")
            count = agent_tokens_revoke(agent=target)
            self.stdout.write(f"Revoked {count} token(s) of agent {agent}.")
            return
        assert token is not None
        revoked = token_revoke(token_id=int(token), kind=kind) if token.isdigit() else token_revoke_by_value(token=token)
        if not revoked:
            raise CommandError("No such active token (already revoked, or unknown).")
        self.stdout.write("Revoked 1 token; it now answers 401 invalid_token.")
