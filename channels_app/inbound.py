"""Inbound writes: store what a provider webhook reports, once, then hand it to delivery (contract §8).

Each service takes an already verified payload. Its transaction's first write is a row that is unique
per provider event - the inbound Twilio message itself, or a WebhookEvent row for events whose id is not
a message's - so a redelivery fails on it and changes nothing. The inserted row is handed to delivery
after the commit, so the provider gets its 200 without waiting for the agent. The row is built and its
delivery route decided before the transaction starts, so the transaction (on SQLite, the one write
lock) holds only the writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from decimal import Decimal
from email.utils import getaddresses, parseaddr
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction

from agents.consent import opt_out_lift, opt_out_record
from agents.models import Agent, AgentStatus
from agents.usage import usage_cost_adjust
from channels_app.delivery import routing
from channels_app.models import Direction, Message, MessageKind, MessageStatus, WebhookEvent
from channels_app.providers.base import STATUS_RANK, StatusUpdate
from orchestrator import metrics, sql

logger = logging.getLogger(__name__)

# Contract §8; the carriers' CTIA list. Matched on the whole message, trimmed, case-insensitively.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP"})
KEYWORDS = OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS


class ProviderUnavailable(Exception):
    """We could not complete the event now (the provider API we need failed); nothing was stored, so
    answering with a 5xx makes the provider redeliver it later."""


@dataclass(frozen=True)
class InboundOutcome:
    """What the webhook view answers with: the stored message (None for a repeat) and an auto-reply."""

    message_id: str | None = None
    duplicate: bool = False
    reply: str | None = None


def agent_accepts(agent: Agent | None, channel: str) -> bool:
    """Blocked channels and inactive agents get a 200 and nothing is processed (contract §8)."""
    return agent is not None and agent.status == AgentStatus.ACTIVE and not agent.is_channel_blocked(channel)


class _Redelivery(Exception):
    """The provider's event id was recorded before: the transaction it was raised in is rolled back."""


@contextmanager
def _once(provider: str, event_id: str) -> Iterator[None]:
    """A transaction that records the provider's event id first; raises _Redelivery on a repeat.

    The id is the transaction's first write, so a repeat can roll the whole transaction back instead
    of needing a savepoint around the insert (two statements and a nested atomic per webhook). The
    row and whatever the block stores commit together, and a concurrent duplicate waits on the unique
    index until the first one commits (then it is a repeat) or rolls back (then it is the first).
    """
    recorded = False
    try:
        with transaction.atomic():
            if event_id:
                WebhookEvent.objects.create(provider=provider, event_id=event_id[:200])
            recorded = True
            yield
    except IntegrityError as exc:
        if recorded:
            raise  # not the event id: a real error of the block
        raise _Redelivery from exc


def _new_message(
    *, agent: Agent, route: str, direction: str = Direction.INBOUND, status: str = MessageStatus.RECEIVED, **fields: Any
) -> Message:
    """The unsaved row, built before the transaction so that the write transaction (on SQLite, the
    database's one write lock) holds only the inserts."""
    claim = routing.claim_at_birth(route, callback_url=agent.callback_url)
    return Message(agent=agent, direction=direction, status=status, **claim, **fields)


def _insert(message: Message, route: str) -> Message:
    """Insert inside the caller's transaction; delivery starts after the commit, from the instance in hand."""
    # The one write of most webhooks: one plain INSERT (orchestrator.sql) costs a fraction of save().
    sql.insert(message)
    if message.direction == Direction.INBOUND:
        metrics.labelled(metrics.MESSAGES_RECEIVED, channel=message.channel).inc()
    transaction.on_commit(lambda: routing.deliver_stored(message, route))
    return message


def _route(agent: Agent, channel: str) -> str:
    return routing.delivery_route(agent_id=agent.pk, channel=channel, callback_url=agent.callback_url)


def _store(*, agent: Agent, direction: str = Direction.INBOUND, status: str = MessageStatus.RECEIVED, **fields: Any) -> Message:
    route = _route(agent, fields["channel"])
    return _insert(_new_message(agent=agent, route=route, direction=direction, status=status, **fields), route)


# --- Twilio SMS and WhatsApp ----------------------------------------------------------------------


def _strip_whatsapp(address: str) -> str:
    # Twilio writes WhatsApp addresses as "whatsapp:+E164"; we keep the bare number everywhere.
    return address[len("whatsapp:") :] if address.startswith("whatsapp:") else address


def twilio_media_urls(params: Mapping[str, str]) -> list[str]:
    try:
        count = int(params.get("NumMedia") or 0)
    except ValueError:
        count = 0
    return [url for index in range(min(count, 10)) if (url := params.get(f"MediaUrl{index}"))]


def _keyword_reply(agent: Agent, channel: str, contact: str, keyword: str) -> str | None:
    """Apply STOP/START/HELP (`keyword`: the message trimmed and upper-cased); returns the confirmation
    to send back, if any."""
    name = agent.display_name
    if keyword in OPT_OUT_KEYWORDS:
        opt_out_record(agent=agent, channel=channel, contact=contact, keyword=keyword)
        return f"You have been unsubscribed from {name} and will receive no more messages. Reply START to resubscribe."
    if keyword in OPT_IN_KEYWORDS:
        removed = opt_out_lift(agent=agent, channel=channel, contact=contact)
        if removed or keyword != "YES":
            # A bare "YES" is an ordinary answer unless it lifts an opt-out: no confirmation spam.
            return f"You are resubscribed to {name}. Reply STOP to unsubscribe."
        return None
    if keyword in HELP_KEYWORDS:
        return f"{name}: automated messages from an AI agent. Reply STOP to unsubscribe, START to resubscribe."
    return None


def twilio_message_receive(
    *, agent: Agent, channel: str, params: Mapping[str, str], idempotency_token: str = ""
) -> InboundOutcome:
    """Store an inbound SMS or WhatsApp message (Twilio form fields) and apply opt-out keywords.

    A retry carries the same MessageSid (and I-Twilio-Idempotency-Token, used when the sid is absent).
    """
    # Cut to the width of Message.external_id (128): the id is the dedupe key, compared as stored.
    event_id = (params.get("MessageSid") or params.get("SmsSid") or idempotency_token)[:128]
    sender = _strip_whatsapp(params.get("From", ""))
    body = params.get("Body", "")
    route = _route(agent, channel)
    # Storing the inbound WhatsApp message is what opens the 24-hour window for this contact
    # (channels_app.selectors.contact_last_inbound_at).
    message = _new_message(
        agent=agent,
        route=route,
        organization_id=agent.organization_id,
        channel=channel,
        from_address=sender,
        to_address=_strip_whatsapp(params.get("To", "")),
        body=body,
        media_urls=twilio_media_urls(params),
        provider="twilio",
        external_id=event_id,
    )
    keyword = body.strip().upper()
    is_keyword = keyword in KEYWORDS
    try:
        with _write_block(several_writes=is_keyword):
            # The message is its own dedupe key (Message's unique_inbound_twilio_message) and the
            # first write, so a redelivery - also one arriving concurrently, which waits on the
            # unique index - fails before the keywords are applied and rolls everything back.
            _insert(message, route)
            reply = _keyword_reply(agent, channel, sender, keyword) if is_keyword else None
    except IntegrityError:
        if not (event_id and _twilio_message_stored(event_id)):
            raise  # not a repeat: a real error of the transaction
        return InboundOutcome(duplicate=True)
    return InboundOutcome(message_id=message.id, reply=reply)


def _write_block(*, several_writes: bool) -> AbstractContextManager[object]:
    """The transaction around a Twilio message's writes, when it needs one.

    A message that is not a keyword is one INSERT, atomic by itself: run in autocommit it saves the
    BEGIN and COMMIT round trips (PostgreSQL). On SQLite every write still gets its transaction,
    whose BEGIN queues on the process's write lock (orchestrator.sqlite_backend) instead of in
    SQLite's busy handler. Inside a caller's transaction the block is a savepoint, as before, so a
    redelivery's IntegrityError leaves the caller's transaction usable.
    """
    if several_writes or _on_sqlite() or transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return nullcontext()


@cache
def _on_sqlite() -> bool:
    return bool(connections[DEFAULT_DB_ALIAS].vendor == "sqlite")


def _twilio_message_stored(event_id: str) -> bool:
    return Message.objects.filter(
        provider="twilio", direction=Direction.INBOUND, kind=MessageKind.MESSAGE, external_id=event_id
    ).exists()


FAILED_STATUSES = (MessageStatus.FAILED, MessageStatus.UNDELIVERED)


def outbound_status_record(*, agent: Agent, update: StatusUpdate) -> bool:
    """Move an outbound message's status forward (a provider's delivery report, parsed by its adapter);
    a failure becomes a `delivery_failure` event for the agent; a price in the report becomes the
    message's cost (usage and spend move with it).

    Returns whether the status changed. Duplicate and out-of-order reports change nothing (the rank
    of channels_app.providers.base.STATUS_RANK only rises), so no event id bookkeeping is needed here.
    """
    if update.cost is not None and update.external_id:
        _outbound_cost_record(agent=agent, external_id=update.external_id, cost=update.cost)
    new_rank = STATUS_RANK.get(update.status)
    if new_rank is None or not update.external_id:
        return False
    earlier = [status for status, rank in STATUS_RANK.items() if rank < new_rank]
    ours = Message.objects.filter(
        agent=agent, external_id=update.external_id, direction=Direction.OUTBOUND, kind=MessageKind.MESSAGE
    )
    if update.status not in FAILED_STATUSES:
        # Most reports (queued, sent, delivered, read) need nothing of the row: the conditional
        # update alone is the forward-only rule and the once-only guard, with no read before it.
        return bool(ours.filter(status__in=earlier).update(status=update.status))
    error_code = (update.error_code or "")[:40]
    error_message = update.error_message or ""
    with transaction.atomic():
        original = ours.only("pk", "channel", "from_address", "to_address", "organization_id").first()
        if original is None:
            return False
        # The conditional update is the forward-only rule and the once-only guard in one statement.
        if not Message.objects.filter(pk=original.pk, status__in=earlier).update(
            status=update.status, error_code=error_code, error_message=error_message
        ):
            return False
        _store(
            agent=agent,
            organization_id=original.organization_id,
            direction=Direction.OUTBOUND,
            channel=original.channel,
            kind=MessageKind.DELIVERY_FAILURE,
            from_address=original.from_address,
            to_address=original.to_address,
            external_id=update.external_id,
            error_code=error_code,
            error_message=error_message,
            provider=update.provider,
            status=update.status,
        )
    return True


def _outbound_cost_record(*, agent: Agent, external_id: str, cost: Decimal) -> None:
    """The provider priced a message after sending it (Twilio's send answer rarely has the price yet):
    the message, its usage record and the spend counters of the send's day and month take the real cost
    in place of the estimate. A repeated report finds the cost already in place and changes nothing."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(agent=agent, external_id=external_id, direction=Direction.OUTBOUND, kind=MessageKind.MESSAGE)
            .only("pk", "cost", "created_at")
            .first()
        )
        if message is None or message.cost == cost:
            return
        Message.objects.filter(pk=message.pk).update(cost=cost)
        usage_cost_adjust(agent=agent, reference=message.pk, cost=cost, at=message.created_at)


def email_complaint_record(*, agent: Agent, email_id: str) -> bool:
    """The recipient reported the agent's email as spam: record an opt-out, so later emails to them are
    refused (`opted_out`) before Resend's own suppression list bounces them. Returns whether it is new."""
    if not email_id:
        return False
    original = (
        Message.objects.filter(agent=agent, external_id=email_id, direction=Direction.OUTBOUND, channel="email")
        .only("to_address")
        .first()
    )
    if original is None:
        return False
    return opt_out_record(agent=agent, channel="email", contact=original.to_address, keyword="COMPLAINT")


# --- Resend email ---------------------------------------------------------------------------------


def _addresses(values: Any) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Sequence):
        return []
    return [address for _name, address in getaddresses([str(v) for v in values]) if address]


def _fetch_email_body(email_id: str) -> tuple[str | None, str | None]:
    """The received email's text and html from Resend (the webhook carries neither)."""
    from channels_app.providers.base import ProviderError
    from channels_app.providers.registry import email_provider

    try:
        received = email_provider().fetch_received(email_id)
    except ProviderError as exc:
        if exc.permanent:
            # Resend will never have it (deleted, unknown id): keep the metadata rather than lose the event.
            logger.warning("Received email %s has no fetchable body: %s", email_id, exc.message)
            return None, None
        raise ProviderUnavailable(exc.message) from exc
    except Exception as exc:
        raise ProviderUnavailable(str(exc)) from exc
    return received.text, received.html


def email_received(*, agent: Agent, event_id: str, payload: Mapping[str, Any]) -> InboundOutcome:
    """Store a Resend `email.received` event, fetching the body from Resend when it is not inline."""
    data = payload.get("data") or {}
    if not isinstance(data, Mapping):
        data = {}
    if WebhookEvent.objects.filter(provider="resend", event_id=event_id).exists():
        # Cheap early answer for a redelivery: skip the body fetch. The insert below is the real guard.
        return InboundOutcome(duplicate=True)
    email_id = str(data.get("email_id") or data.get("id") or "")
    text, html = data.get("text"), data.get("html")
    if text is None and html is None and email_id:
        # Outside the transaction: never hold a database transaction open across a provider call.
        text, html = _fetch_email_body(email_id)
    recipients = _addresses(data.get("to"))
    own = {address.address.lower() for address in agent.addresses.filter(kind="email", released_at__isnull=True)}
    to_address = next((r for r in recipients if r.lower() in own), recipients[0] if recipients else "")
    route = _route(agent, "email")
    message = _new_message(
        agent=agent,
        route=route,
        organization_id=agent.organization_id,
        channel="email",
        from_address=parseaddr(str(data.get("from") or ""))[1],
        to_address=to_address,
        subject=str(data.get("subject") or "")[:998],
        body=text if text is not None else "",
        html=html,
        media_urls=[],
        provider="resend",
        external_id=email_id,
    )
    try:
        with _once("resend", event_id):
            _insert(message, route)
    except _Redelivery:
        return InboundOutcome(duplicate=True)
    return InboundOutcome(message_id=message.id)


# --- LINE -----------------------------------------------------------------------------------------


def _line_text(message: Mapping[str, Any]) -> tuple[str, list[str]]:
    """A text rendering of a LINE message and any media URL the agent can open without our LINE token."""
    kind = str(message.get("type") or "message")
    if kind == "text":
        return str(message.get("text") or ""), []
    if kind == "sticker":
        keywords = message.get("keywords") or []
        suffix = f" ({', '.join(str(k) for k in keywords[:5])})" if keywords else ""
        return f"[sticker {message.get('packageId')}/{message.get('stickerId')}]{suffix}", []
    if kind == "location":
        return f"[location] {message.get('title') or ''} {message.get('address') or ''} ({message.get('latitude')}, {message.get('longitude')})".strip(), []
    provider = message.get("contentProvider") or {}
    urls = [str(provider["originalContentUrl"])] if provider.get("type") == "external" and provider.get("originalContentUrl") else []
    name = f" {message['fileName']}" if message.get("fileName") else ""
    # Content LINE hosts itself needs our channel token to download, so the agent gets its id instead.
    return f"[{kind}{name}] id={message.get('id')}", urls


def _line_source(event: Mapping[str, Any]) -> str:
    source = event.get("source") or {}
    return str(source.get("userId") or source.get("groupId") or source.get("roomId") or "")


def _line_event_apply(agent: Agent, event: Mapping[str, Any], *, destination: str, event_id: str) -> InboundOutcome:
    kind = event.get("type")
    contact = _line_source(event)
    if kind == "message" and isinstance(event.get("message"), Mapping):
        # mode "standby": another module owns the chat, so we must not reply (and we never use
        # the replyToken); the agent still sees the message.
        body, media = _line_text(event["message"])
        message = _store(
            agent=agent,
            organization_id=agent.organization_id,
            channel="line",
            from_address=contact,
            to_address=destination or agent.id,
            body=body,
            media_urls=media,
            provider="line",
            external_id=str(event["message"].get("id") or event_id),
        )
        return InboundOutcome(message_id=message.id)
    if kind == "unfollow" and contact:
        # The user blocked the account: pushes to them would fail, so treat it as an opt-out.
        opt_out_record(agent=agent, channel="line", contact=contact, keyword="unfollow")
    elif kind == "follow" and contact:
        opt_out_lift(agent=agent, channel="line", contact=contact)
    return InboundOutcome()


def line_events_receive(*, agent: Agent, payload: Mapping[str, Any]) -> list[InboundOutcome]:
    """Store LINE message events and apply follow/unfollow; other event types are acknowledged only."""
    outcomes: list[InboundOutcome] = []
    destination = str(payload.get("destination") or "")
    for event in payload.get("events") or []:
        if not isinstance(event, Mapping):
            continue
        event_id = str(event.get("webhookEventId") or "")
        try:
            with _once("line", event_id):
                outcomes.append(_line_event_apply(agent, event, destination=destination, event_id=event_id))
        except _Redelivery:
            outcomes.append(InboundOutcome(duplicate=True))
    return outcomes


# --- any other channel ----------------------------------------------------------------------------


def message_receive(
    *,
    agent: Agent,
    channel: str,
    provider: str,
    event_id: str,
    from_address: str,
    to_address: str,
    body: str,
    subject: str = "",
    media_urls: Sequence[str] = (),
    external_id: str = "",
) -> InboundOutcome:
    """Store an inbound message of a channel's verified webhook, once per provider event id, and deliver it
    (live session, callback, else it waits). For channels whose webhook view is their own module's."""
    try:
        with _once(provider, event_id):
            message = _store(
                agent=agent,
                organization_id=agent.organization_id,
                channel=channel,
                from_address=from_address,
                to_address=to_address,
                subject=subject[:998],
                body=body,
                media_urls=list(media_urls),
                provider=provider,
                external_id=(external_id or event_id)[:128],
            )
    except _Redelivery:
        return InboundOutcome(duplicate=True)
    return InboundOutcome(message_id=message.id)


# --- voice ----------------------------------------------------------------------------------------


def voicemail_store(*, agent: Agent, call_sid: str, caller: str, callee: str, transcript: str) -> InboundOutcome:
    """Store the answering machine's voicemail for the agent (kind `voicemail`, channel `voice`), once
    per call, and deliver it like any inbound message (live session, callback, else it waits)."""
    try:
        with _once("voicemail", call_sid):
            message = _store(
                agent=agent,
                organization_id=agent.organization_id,
                channel="voice",
                kind=MessageKind.VOICEMAIL,
                from_address=caller,
                to_address=callee,
                body=transcript,
                media_urls=[],
                provider="twilio",
                call_sid=call_sid,
                external_id=call_sid,
            )
    except _Redelivery:
        return InboundOutcome(duplicate=True)
    return InboundOutcome(message_id=message.id)
