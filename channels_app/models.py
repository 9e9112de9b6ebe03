"""Messages in and out, and the provider events we have already seen."""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


class Direction(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageKind(models.TextChoices):
    MESSAGE = "message"
    VOICEMAIL = "voicemail"
    VOICE_PROMPT = "voice_prompt"
    CALL_OUTCOME = "call_outcome"
    DELIVERY_FAILURE = "delivery_failure"


class MessageStatus(models.TextChoices):
    # Outbound lifecycle (forward-only, see STATUS_ORDER).
    PENDING = "pending"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    # Inbound lifecycle.
    RECEIVED = "received"


class Message(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_message_id)
    # Every index is written on every insert. These two columns have none of their own: the indexes in Meta
    # start with them (and declared there, PostgreSQL gets no extra `_like` index for LIKE queries we never run).
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="messages", db_index=False)
    organization = models.ForeignKey(
        "agents.Organization", on_delete=models.CASCADE, related_name="messages", db_index=False)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    channel = models.CharField(max_length=20)
    kind = models.CharField(max_length=20, choices=MessageKind.choices, default=MessageKind.MESSAGE)
    from_address = models.CharField(max_length=320)
    to_address = models.CharField(max_length=320)
    subject = models.CharField(max_length=998, blank=True)
    # Null once erased by the retention policy; metadata stays for usage and audit.
    # null (erased) is distinct from "" (sent empty), hence null=True on text fields.
    body = models.TextField(null=True, blank=True)  # noqa: DJ001
    html = models.TextField(null=True, blank=True)  # noqa: DJ001
    media_urls = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=20, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    provider = models.CharField(max_length=20, blank=True)
    external_id = models.CharField(max_length=128, blank=True)  # indexed in Meta
    call_sid = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    # Inbound delivery to the agent (contract §6.3): delivered once, by exactly one path.
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivered_via = models.CharField(max_length=20, blank=True)
    callback_attempts = models.PositiveSmallIntegerField(default=0)
    next_callback_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["agent", "direction", "delivered_at"]),
            models.Index(fields=["agent", "created_at"]),
            models.Index(fields=["organization", "created_at"], name="message_org_created"),
            models.Index(fields=["external_id"], name="message_external_id"),
            # The callback sweep every server process runs each second reads only rows with a due time
            # (channels_app.callbacks.callbacks_due): leases in flight and scheduled retries, a handful.
            models.Index(
                fields=["next_callback_at"],
                condition=Q(delivered_at__isnull=True, next_callback_at__isnull=False),
                name="message_callback_due",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="unique_idempotency_key_per_agent",
            ),
            # A Twilio MessageSid (or idempotency token) names one inbound message, so the row is its
            # own redelivery guard: one insert per webhook instead of a WebhookEvent row and the message
            # (channels_app.inbound.twilio_message_receive). Other providers keep WebhookEvent: their
            # event ids are not the message's (Svix, LINE), and not every event stores a message.
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=Q(direction=Direction.INBOUND, kind=MessageKind.MESSAGE, provider="twilio")
                & ~Q(external_id=""),
                name="unique_inbound_twilio_message",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.direction} {self.channel}"


class WebhookEvent(models.Model):
    """Provider event ids already processed, so a redelivery is acknowledged and processed once.

    Inbound Twilio messages need no row here: the message itself is unique (unique_inbound_twilio_message).
    """

    provider = models.CharField(max_length=20)
    event_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="unique_webhook_event")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id}"
