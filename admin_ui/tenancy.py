"""Tenant scoping in the admin: which organization a staff user belongs to."""

from __future__ import annotations

from typing import Any

from agents.models import StaffMembership


def staff_organization_id(user: Any) -> str | None:
    """The organization a staff user belongs to, or None (superusers may belong to none)."""
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "comms_staff_org_id", ...)
    if cached is not ...:
        return cached  # type: ignore[no-any-return]
    org_id = StaffMembership.objects.filter(user_id=user.pk).values_list("organization_id", flat=True).first()
    user.comms_staff_org_id = org_id
    return org_id
