"""create_agent: create an agent with its channel addresses and print its token once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents.management.commands._common import service_errors, shown_once
from agents.models import DEFAULT_ORG_ID, Organization
from agents.services import AgentAddresses, agent_create


class Command(BaseCommand):
    help = "Create an agent with channel addresses and print its agent token (once)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--org", default=DEFAULT_ORG_ID, help="Organization id (default: default)")
        parser.add_argument("--id", dest="agent_id", help="Agent id (default: generated)")
        parser.add_argument("--name", required=True, help="Display name")
        parser.add_argument("--phone", help="E.164 number for SMS and voice, e.g. +14155550123")
        parser.add_argument("--email", help="Email address the agent sends from and receives on")
        parser.add_argument("--whatsapp", help="E.164 WhatsApp sender number")
        parser.add_argument("--line", action="store_true", help="Give the agent a LINE channel")

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(pk=options["org"]).first()
        if org is None:
            raise CommandError(f"No organization {options['org']!r}; create it with create_org.")
        addresses = AgentAddresses(
            phone=options["phone"], email=options["email"], whatsapp=options["whatsapp"], line=options["line"]
        )
        with service_errors():
            agent, issued, _callback_secret = agent_create(
                organization=org, display_name=options["name"], agent_id=options["agent_id"], addresses=addresses
            )
        self.stdout.write(f"Created agent {agent.id} ({agent.display_name}) in organization {org.id}.")
        for address in agent.addresses.order_by("kind"):
            self.stdout.write(f"  {address.kind}: {address.address}")
        shown_once(self.stdout.write, f"Agent token for {agent.id}", issued.token)
