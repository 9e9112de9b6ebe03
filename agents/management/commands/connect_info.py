"""connect_info: print how to connect an MCP client to this server."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from orchestrator.connect import connect_instructions


class Command(BaseCommand):
    help = "Print MCP client configs (SSE and Streamable HTTP) and a curl check for this server."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--token", help="Agent token to fill in (default: a <agent token> placeholder)")

    def handle(self, *args: Any, token: str | None, **options: Any) -> None:
        self.stdout.write(connect_instructions(base_url=settings.PUBLIC_BASE_URL, token=token), ending="")
