"""create_org: create an organization and print its org token once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from agents.management.commands._common import service_errors, shown_once
from agents.services import organization_create


class Command(BaseCommand):
    help = "Create an organization and print its org token (once)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="Display name, e.g. 'Acme Inc'")
        parser.add_argument("--id", dest="org_id", help="Organization id (default: derived from the name)")

    def handle(self, *args: Any, name: str, org_id: str | None, **options: Any) -> None:
        with service_errors():
            org, issued = organization_create(name=name, org_id=org_id)
        self.stdout.write(f"Created organization {org.id} ({org.name}).")
        shown_once(self.stdout.write, f"Org token for {org.id}", issued.token)
