"""Consent and opt-outs: the services and selectors behind the consent tools (contract §7) and the
STOP/START keywords, provider refusals and complaints that bar a contact (contract §8).

A consent record documents why we may contact someone; an opt-out is what stops sends. Recording
consent never lifts an opt-out (only the contact can, with START or a LINE re-follow); revoking consent
also records an opt-out, so sends stop at once.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.models import Agent, Consent, ConsentType, OptOut
from orchestrator.errors import ApiError


def consent_object(consent: Consent) -> dict[str, Any]:
    return {
        "consentId": consent.pk,
        "agentId": consent.agent_id,
        "contactAddress": consent.contact,
        "channel": consent.channel,
        "consentType": consent.consent_type,
        "source": consent.source,
        "notes": consent.notes,
        "recordedAt": consent.created_at.isoformat(),
        "revokedAt": consent.revoked_at.isoformat() if consent.revoked_at else None,
    }


@transaction.atomic
def consent_record(
    *, agent: Agent, channel: str, contact: str, consent_type: str, source: str = "", notes: str = ""
) -> Consent:
    """Record a contact's consent. It does not lift an opt-out: only the contact's START does."""
    if consent_type not in ConsentType.values:
        raise ApiError(
            400, "invalid_request", f"consentType must be one of {', '.join(ConsentType.values)}.", field="consentType"
        )
    return Consent.objects.create(
        agent=agent, channel=channel, contact=contact, consent_type=consent_type, source=source, notes=notes
    )


@transaction.atomic
def consent_revoke(*, agent: Agent, channel: str, contact: str) -> int:
    """Withdraw consent; it also records an opt-out (keyword REVOKE, as in contract §8), so sends stop."""
    revoked = Consent.objects.filter(agent=agent, channel=channel, contact=contact, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    opt_out_record(agent=agent, channel=channel, contact=contact, keyword="REVOKE")
    return revoked


def opt_out_record(*, agent: Agent, channel: str, contact: str, keyword: str) -> bool:
    """Bar `contact` on `channel`; the first keyword that barred them is kept. True if newly barred."""
    _, created = OptOut.objects.get_or_create(
        agent=agent, channel=channel, contact=contact, defaults={"keyword": keyword}
    )
    return created


def opt_out_lift(*, agent: Agent, channel: str, contact: str) -> int:
    """Lift the contact's opt-out on `channel` (their START, or a LINE re-follow); the count removed."""
    removed, _ = OptOut.objects.filter(agent=agent, channel=channel, contact=contact).delete()
    return removed


def consent_status(*, agent: Agent, channel: str, contact: str) -> dict[str, Any]:
    """Whether the contact consented (latest unrevoked consent) and whether they opted out."""
    consent = (
        Consent.objects.filter(agent=agent, channel=channel, contact=contact, revoked_at__isnull=True)
        .order_by("-created_at", "-pk")
        .first()
    )
    opted_out = OptOut.objects.filter(agent=agent, channel__in=opt_out_channels(channel), contact=contact).exists()
    return {
        "agentId": agent.pk,
        "contactAddress": contact,
        "channel": channel,
        "hasConsent": consent is not None,
        "consentType": consent.consent_type if consent else None,
        "recordedAt": consent.created_at.isoformat() if consent else None,
        "optedOut": opted_out,
        "canContact": not opted_out,
    }


def opt_out_channels(channel: str) -> tuple[str, ...]:
    """The opt-out records that bar `channel`: a STOP by text also bars calls to the same number."""
    if channel == "voice":
        return ("voice", "sms")
    return (channel,)
