"""issue_token: issue a new agent or org token and print it once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents.management.commands._common import service_errors, shown_once
from agents.models import Agent, Organization
from agents.services import IssuedToken, agent_token_issue, org_token_issue


class Command(BaseCommand):
    help = "Issue a new token for an agent (--agent) or an organization (--org) and print it (once)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--agent", help="Agent id")
        target.add_argument("--org", help="Organization id")
        parser.add_argument("--label", default="", help="A note to recognise the token by, e.g. 'laptop'")
        parser.add_argument(
            "--revoke-existing", action="store_true", help="Revoke every earlier token of the agent or org"
        )

    def handle(self, *args: Any, agent: str | None, org: str | None, label: str, **options: Any) -> None:
        revoke = bool(options["revoke_existing"])
        issued: IssuedToken
        with service_errors():
            if agent:
                target = Agent.objects.filter(pk=agent).first()
                if target is None:
                    raise CommandError(f"No agent {agent!r}.")
                issued = agent_token_issue(agent=target, label=label, revoke_existing=revoke)
                name = f"agent {agent}"
            else:
                organization = Organization.objects.filter(pk=org).first()
                if organization is None:
                    raise CommandError(f"No organization {org!r}.")
                issued = org_token_issue(organization=organization, label=label, revoke_existing=revoke)
                name = f"organization {org}"
        self.stdout.write(f"Issued token #{issued.token_id} for {name}; revoked {issued.revoked_count} earlier token(s).")
        shown_once(self.stdout.write, "Token", issued.token)
