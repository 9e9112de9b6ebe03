"""Organizations, agents, their channel addresses, tokens, limits, usage and contact policy."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from channels_app.channel_registry import address_kind_choices, channel_choices

DEFAULT_ORG_ID = "default"


class Organization(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # Organization caps are unlimited (null) until an operator sets them in the admin.
    max_spend_per_day = models.DecimalField("daily spend cap (USD)", max_digits=12, decimal_places=4, null=True,
                                            blank=True)
    max_spend_per_month = models.DecimalField("monthly spend cap (USD)", max_digits=12, decimal_places=4, null=True,
                                              blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class AgentStatus(models.TextChoices):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEPROVISIONED = "deprovisioned"


class Agent(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="agents")
    display_name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=AgentStatus.choices, default=AgentStatus.ACTIVE)
    # Channel names (channels_app.channel_registry), or ["*"] for all.
    blocked_channels = models.JSONField(default=list, blank=True)
    greeting = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    voice = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=20, blank=True)
    callback_url = models.URLField(max_length=500, blank=True)
    callback_secret_encrypted = models.TextField(blank=True)
    line_channel_access_token_encrypted = models.TextField(blank=True)
    line_channel_secret_encrypted = models.TextField(blank=True)
    markup_percent = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("0"))
    tier = models.CharField(max_length=40, default="standard")
    quiet_hours_start = models.PositiveSmallIntegerField(default=8)
    quiet_hours_end = models.PositiveSmallIntegerField(default=21)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deprovisioned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["organization", "status"])]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.id})"

    def is_channel_blocked(self, channel: str) -> bool:
        blocked = self.blocked_channels or []
        return "*" in blocked or channel in blocked


class AddressKind:
    """The address kinds of the built-in channels, by name. The registry's entries say which kind each
    channel uses (ChannelAddress.kind's choices come from there); a new channel may bring its own."""

    PHONE = "phone"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    LINE = "line"


class ChannelAddress(models.Model):
    """An address an agent sends from and receives on."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="addresses")
    kind = models.CharField(max_length=20, choices=address_kind_choices)
    address = models.CharField(max_length=320)
    status = models.CharField(max_length=20, default="active")
    provider_sid = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "channel addresses"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "address"], condition=Q(released_at__isnull=True), name="unique_live_address"
            )
        ]
        indexes = [models.Index(fields=["agent", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind}:{self.address}"


class TokenBase(models.Model):
    digest = models.CharField(max_length=64, unique=True)
    # The first characters, so an operator can recognise a token without it being usable.
    display_prefix = models.CharField(max_length=16)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class OrgToken(TokenBase):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tokens")
    # Encrypted copy so that `my-token` can show staff their org's token (contract §2).
    token_encrypted = models.TextField()

    class Meta:
        verbose_name = "org token"

    def __str__(self) -> str:
        return f"{self.display_prefix}… ({self.organization_id})"


class AgentToken(TokenBase):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tokens")

    class Meta:
        verbose_name = "agent token"

    def __str__(self) -> str:
        return f"{self.display_prefix}… ({self.agent_id})"


class StaffMembership(models.Model):
    """Staff users who are not superusers belong to one organization and act as its org-admin."""

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="membership")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="staff")

    def __str__(self) -> str:
        return f"{self.user} in {self.organization_id}"


class AgentLimits(models.Model):
    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="limits", primary_key=True)
    max_actions_per_minute = models.PositiveIntegerField(default=60)
    max_actions_per_hour = models.PositiveIntegerField(default=1000)
    max_actions_per_day = models.PositiveIntegerField(default=10000)
    max_spend_per_day = models.DecimalField("daily spend cap (USD)", max_digits=12, decimal_places=4,
                                            default=Decimal("50"))
    max_spend_per_month = models.DecimalField("monthly spend cap (USD)", max_digits=12, decimal_places=4,
                                              default=Decimal("500"))
    max_calls_per_day_same_number = models.PositiveIntegerField(default=3)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "agent limits"
        verbose_name_plural = "agent limits"

    def __str__(self) -> str:
        return f"limits of {self.agent_id}"


class UsageRecord(models.Model):
    """One billable or countable action, kept for usage and billing reports."""

    # No index of their own: the two indexes in Meta start with them, and each index is written on every send.
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="usage", db_index=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage", db_index=False)
    action_type = models.CharField(max_length=40)
    channel = models.CharField(max_length=20)
    provider_cost = models.DecimalField("provider cost (USD)", max_digits=12, decimal_places=6, null=True, blank=True)
    reference = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "usage record"
        indexes = [models.Index(fields=["agent", "created_at"]), models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.action_type} {self.channel} by {self.agent_id}"


class UsageBucket(models.Model):
    """A counter per scope and time window, so limit checks touch one row instead of scanning history."""

    class Scope(models.TextChoices):
        AGENT = "agent"
        ORG = "org"

    class Window(models.TextChoices):
        MINUTE = "minute"
        HOUR = "hour"
        DAY = "day"
        MONTH = "month"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    scope_id = models.CharField(max_length=64)
    window = models.CharField(max_length=8, choices=Window.choices)
    window_start = models.DateTimeField()
    actions = models.PositiveIntegerField(default=0)
    spend = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "scope_id", "window", "window_start"], name="unique_usage_bucket")
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.scope_id} {self.window} from {self.window_start:%Y-%m-%d %H:%M}"


class OptOut(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="opt_outs")
    channel = models.CharField(max_length=20, choices=channel_choices)
    contact = models.CharField(max_length=320)
    keyword = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "opt-out"
        constraints = [models.UniqueConstraint(fields=["agent", "channel", "contact"], name="unique_opt_out")]

    def __str__(self) -> str:
        return f"{self.contact} opted out of {self.channel} from {self.agent_id}"


class ConsentType(models.TextChoices):
    EXPRESS = "express"
    IMPLIED = "implied"
    TRANSACTIONAL = "transactional"


class Consent(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=20, choices=channel_choices)
    contact = models.CharField(max_length=320)
    consent_type = models.CharField(max_length=20, choices=ConsentType.choices, default=ConsentType.EXPRESS)
    source = models.CharField(max_length=200, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "consent record"
        indexes = [models.Index(fields=["agent", "channel", "contact"])]

    def __str__(self) -> str:
        return f"{self.contact} {self.consent_type} consent on {self.channel} for {self.agent_id}"


class PhoneNumber(models.Model):
    """The number pool: numbers we own, free or assigned to an agent."""

    number = models.CharField(max_length=20, unique=True)
    country = models.CharField(max_length=2, default="US")
    provider_sid = models.CharField(max_length=64, blank=True)
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="phone_numbers")
    is_sandbox = models.BooleanField(default=False)
    acquired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "pool phone number"

    def __str__(self) -> str:
        return self.number


class WhatsAppSender(models.Model):
    phone_number = models.CharField(max_length=20, unique=True)
    sender_sid = models.CharField(max_length=64, blank=True)
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="whatsapp_senders")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "WhatsApp sender"

    def __str__(self) -> str:
        return self.phone_number


class AuthFailureWindow(models.Model):
    """Failed-auth counter per client address, in the database so every process sees it."""

    client_address = models.CharField(max_length=64, unique=True)
    window_started_at = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.client_address}: {self.failures} failures"
