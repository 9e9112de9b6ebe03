"""init_secrets: create the first-run secrets (SECRET_KEY, ORCHESTRATOR_TOKEN) in `.env`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from orchestrator.env import Env, ensure_generated_secrets, parse_env_file


class Command(BaseCommand):
    help = (
        "Write a new SECRET_KEY and ORCHESTRATOR_TOKEN into .env (mode 0600) where neither the environment "
        "nor .env has one. Prints the token once. `make run` calls it; existing values are never changed."
    )
    # The checks would need the SECRET_KEY this command is about to create.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        written = ensure_generated_secrets(settings.ENV_FILE, Env(parse_env_file(settings.ENV_FILE)))
        if "ORCHESTRATOR_TOKEN" in written:
            self.stdout.write(
                f"Generated ORCHESTRATOR_TOKEN into {settings.ENV_FILE} (shown once):\n  {written['ORCHESTRATOR_TOKEN']}"
            )
        if "SECRET_KEY" in written:
            self.stdout.write(f"Generated SECRET_KEY into {settings.ENV_FILE}.")
