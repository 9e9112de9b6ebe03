"""How every API body writes a moment: ISO 8601 in UTC with a `Z` (contract §6.1, §6.3)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None
