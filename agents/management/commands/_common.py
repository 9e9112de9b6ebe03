"""What the management commands share: service refusals become CommandError (exit status 1, message on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError

from orchestrator.errors import ApiError


@contextmanager
def service_errors() -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        raise CommandError(f"{exc.message} ({exc.code})") from None


def shown_once(write: Callable[[str], None], label: str, token: str) -> None:
    """Print a secret with the warning that it cannot be shown again (only its digest is stored)."""
    write(f"{label} (shown once, save it now):\n  {token}")
