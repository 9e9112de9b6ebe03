"""load_demo_data: create the demo organization and agents once; print their tokens on that run only."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agents.demo import DEMO_DATA_PATH, DemoDataError, DemoLoadResult, demo_data_load
from agents.management.commands._common import service_errors, shown_once
from orchestrator.connect import sse_url


class Command(BaseCommand):
    help = "Load fixtures/demo_data.json (idempotent). Tokens are printed only when they are created."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--path", type=Path, default=DEMO_DATA_PATH, help="Demo data JSON file")

    def handle(self, *args: Any, path: Path, **options: Any) -> None:
        try:
            with service_errors():
                result = demo_data_load(path=path)
        except DemoDataError as exc:
            raise CommandError(str(exc)) from None
        if result.already_loaded:
            self._say_already_loaded(result)
        else:
            self._show_created(result)

    def _say_already_loaded(self, result: DemoLoadResult) -> None:
        agents = ", ".join(result.existing_agent_ids) or "none"
        first = result.existing_agent_ids[0] if result.existing_agent_ids else "<agentId>"
        self.stdout.write(
            f"Demo data already loaded (agents: {agents}). Tokens are shown only when created.\n"
            "For a fresh token (the old ones stop working):\n"
            f"  .venv/bin/python manage.py issue_token --agent {first} --revoke-existing"
        )

    def _show_created(self, result: DemoLoadResult) -> None:
        self.stdout.write(self.style.SUCCESS("Loaded demo data."))
        for org_id, token in result.created_orgs.items():
            shown_once(self.stdout.write, f"Org token for organization {org_id}", token)
        for agent in result.created_agents:
            self.stdout.write(f"\nAgent {agent.agent_id} ({agent.display_name}) in {agent.org_id}")
            self.stdout.write(f"  phone: {agent.phone or '-'}   email: {agent.email or '-'}")
            shown_once(self.stdout.write, "  Agent token", agent.token)
            self.stdout.write(f"  MCP SSE URL: {sse_url(settings.PUBLIC_BASE_URL, agent.token)}")
