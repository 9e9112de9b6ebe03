"""Call an agent without a phone: `manage.py simulate_call --agent ID --say "…" [--say "…"]`.

Drives a whole inbound call against a running server as Twilio would (voice.simulator) and prints
the greeting and every answer, from the agent or from the answering machine.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.models import AddressKind, Agent
from voice.simulator import SimulationError, call_simulate


class Command(BaseCommand):
    help = "Place a simulated inbound call to an agent (signed like Twilio) and print what it answers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", required=True, help="The agent to call.")
        parser.add_argument("--say", action="append", default=[], help="What the caller says (repeatable, in order).")
        parser.add_argument("--from", dest="caller", default="+15555550123", help="The caller's number (E.164).")
        parser.add_argument("--server", default="", help="Where the server listens (default http://127.0.0.1:$PORT).")
        parser.add_argument("--timeout", type=float, default=0, help="Seconds to wait for each answer "
                            "(default VOICE_TURN_TIMEOUT_SECONDS + 5).")

    def handle(self, *args: Any, **options: Any) -> None:
        agent = Agent.objects.filter(pk=options["agent"]).first()
        if agent is None:
            raise CommandError(f"No agent {options['agent']!r}.")
        number = agent.addresses.filter(kind=AddressKind.PHONE, released_at__isnull=True).values_list("address", flat=True).first()
        server = (options["server"] or f"http://127.0.0.1:{settings.PORT}").rstrip("/")
        try:
            for line in call_simulate(
                server=server,
                agent_id=agent.id,
                caller=options["caller"],
                callee=number or "+15005550006",
                utterances=options["say"] or ["Hello?"],
                reply_timeout=options["timeout"] or settings.VOICE_TURN_TIMEOUT_SECONDS + 5,
            ):
                self.stdout.write(f"{line.speaker:>8}: {line.text}")
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
