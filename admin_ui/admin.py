"""Django admin for the operator: organizations, agents, tokens, messages, calls, usage, opt-outs, consent,
number and sender pools, staff memberships.

Every admin derives from admin_ui.tenancy.TenantScopedAdmin: a staff member of an organization sees and
edits only that organization's rows (docs/admin-api.md). Tokens are never shown (only digests are stored);
records that are an audit trail (messages, calls, usage, tokens) are read-only here. Calls and their
turns are registered by the voice app (voice/admin.py), on the same base.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from admin_ui.forms import ALL_CHANNELS, AgentAdminForm
from admin_ui.tenancy import TenantScopedAdmin, TenantScopedStackedInline, TenantScopedTabularInline
from agents.models import (
    Agent,
    AgentLimits,
    AgentToken,
    ChannelAddress,
    Consent,
    OptOut,
    Organization,
    OrgToken,
    PhoneNumber,
    StaffMembership,
    UsageRecord,
    WhatsAppSender,
)
from channels_app.channel_registry import channels
from channels_app.models import Message


def money(value: Decimal | None, *, places: int = 4) -> str:
    """`$0.0075`, `$50.00`: at least cents, up to `places` decimals, no float rounding; `—` for none."""
    if value is None:
        return "—"
    quantized = value.quantize(Decimal(1).scaleb(-places))
    whole, _, fraction = f"{abs(quantized):f}".partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{'-' if quantized < 0 else ''}${whole}.{fraction}"


def cap(value: Decimal | None) -> str:
    return "no cap" if value is None else money(value, places=2)


class ReadOnlyAdmin(TenantScopedAdmin):
    """Records of what happened: viewable, deletable by whoever may delete them, never edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- organizations and staff ----------------------------------------------------------------------


@admin.register(Organization)
class OrganizationAdmin(TenantScopedAdmin):
    # An organization's caps are the operator's to set; its own staff may look.
    read_only_for_staff = True
    list_display = ("id", "name", "daily_cap", "monthly_cap", "created_at")
    list_filter = ("created_at",)
    search_fields = ("id", "name")
    readonly_fields = ("created_at",)

    @admin.display(description="Daily spend cap", ordering="max_spend_per_day")
    def daily_cap(self, org: Organization) -> str:
        return cap(org.max_spend_per_day)

    @admin.display(description="Monthly spend cap", ordering="max_spend_per_month")
    def monthly_cap(self, org: Organization) -> str:
        return cap(org.max_spend_per_month)


@admin.register(StaffMembership)
class StaffMembershipAdmin(TenantScopedAdmin):
    """Which organization a staff user administers; managed by superusers."""

    operator_only = True
    list_display = ("user", "organization")
    list_filter = ("organization",)
    search_fields = ("user__username", "user__email", "organization__id", "organization__name")
    autocomplete_fields = ("user", "organization")


class OperatorOnlyUserAdmin(TenantScopedAdmin, UserAdmin):  # type: ignore[misc]
    operator_only = True


class OperatorOnlyGroupAdmin(TenantScopedAdmin, GroupAdmin):
    operator_only = True


for _model, _admin in ((User, OperatorOnlyUserAdmin), (Group, OperatorOnlyGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)


# --- agents -----------------------------------------------------------------------------------------


class ChannelAddressInline(TenantScopedTabularInline):
    model = ChannelAddress
    extra = 0
    readonly_fields = ("created_at", "released_at")


class AgentLimitsInline(TenantScopedStackedInline):
    model = AgentLimits
    can_delete = False
    readonly_fields = ("updated_at",)


@admin.register(Agent)
class AgentAdmin(TenantScopedAdmin):
    form = AgentAdminForm
    change_list_template = "admin_ui/agent_change_list.html"
    list_display = ("id", "display_name", "organization", "status", "blocked_channel_toggles", "created_at")
    list_filter = ("status", "organization", "tier", "created_at")
    search_fields = ("id", "display_name", "addresses__address")
    readonly_fields = ("created_at", "updated_at", "deprovisioned_at")
    autocomplete_fields = ("organization",)
    inlines = [ChannelAddressInline, AgentLimitsInline]
    exclude = (
        "callback_secret_encrypted",
        "line_channel_access_token_encrypted",
        "line_channel_secret_encrypted",
    )

    class Media:
        js = ("admin_ui/blocked_channels.js",)
        css = {"all": ("admin_ui/admin_ui.css",)}

    @admin.display(description="Blocked channels")
    def blocked_channel_toggles(self, agent: Agent) -> str:
        """Checkboxes that POST to /admin/api/agents/<id>/blocked-channels (static/admin_ui/blocked_channels.js)."""
        blocked = list(agent.blocked_channels or [])
        everything = ALL_CHANNELS in blocked
        boxes = format_html_join(
            "", '<label><input type="checkbox" value="{}"{}{}> {}</label>',
            (
                (value, " checked" if everything or value in blocked else "",
                 " disabled" if everything and value != ALL_CHANNELS else "", label)
                for value, label in [*((spec.name, spec.label) for spec in channels()), (ALL_CHANNELS, "All")]
            ),
        )
        return format_html(
            '<span class="ops-blocked" data-agent="{}" data-url="{}" data-blocked="{}">{}'
            '<span class="ops-toggle-status" aria-live="polite"></span></span>',
            agent.pk, f"{reverse('admin:index')}api/agents/{quote(agent.pk, safe='')}/blocked-channels",
            json.dumps(blocked), boxes,
        )


TOKEN_COLUMNS = ("label", "created_at", "last_used_at", "revoked_at")
TOKEN_FILTERS = ("revoked_at", "created_at", "last_used_at")
TOKEN_READONLY = ("digest", "display_prefix", "label", "created_at", "last_used_at", "revoked_at")


class TokenAdmin(ReadOnlyAdmin):
    exclude = ("token_encrypted",)


@admin.register(AgentToken)
class AgentTokenAdmin(TokenAdmin):
    list_display = ("display_prefix", "agent", *TOKEN_COLUMNS)
    list_filter = ("agent", *TOKEN_FILTERS)
    search_fields = ("display_prefix", "label", "agent__id", "agent__display_name")
    readonly_fields = ("agent", *TOKEN_READONLY)


@admin.register(OrgToken)
class OrgTokenAdmin(TokenAdmin):
    list_display = ("display_prefix", "organization", *TOKEN_COLUMNS)
    list_filter = ("organization", *TOKEN_FILTERS)
    search_fields = ("display_prefix", "label", "organization__id", "organization__name")
    readonly_fields = ("organization", *TOKEN_READONLY)


# --- traffic, usage and contact policy ------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "agent", "direction", "channel", "kind", "to_address", "status", "price", "created_at")
    list_filter = ("direction", "channel", "kind", "status", "provider", "organization", "created_at")
    search_fields = ("id", "external_id", "to_address", "from_address", "agent__id")
    date_hierarchy = "created_at"
    list_select_related = ("agent",)

    @admin.display(description="Cost", ordering="cost")
    def price(self, message: Message) -> str:
        return money(message.cost)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Message._meta.fields]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ("agent", "action_type", "channel", "cost", "reference", "created_at")
    list_filter = ("action_type", "channel", "organization", "created_at")
    search_fields = ("reference", "agent__id", "agent__display_name")
    date_hierarchy = "created_at"
    list_select_related = ("agent",)

    @admin.display(description="Provider cost", ordering="provider_cost")
    def cost(self, record: UsageRecord) -> str:
        return money(record.provider_cost, places=6)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in UsageRecord._meta.fields]


@admin.register(OptOut)
class OptOutAdmin(TenantScopedAdmin):
    list_display = ("contact", "channel", "agent", "keyword", "created_at")
    list_filter = ("channel", "keyword", "agent", "created_at")
    search_fields = ("contact", "agent__id")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("agent",)


@admin.register(Consent)
class ConsentAdmin(TenantScopedAdmin):
    list_display = ("contact", "channel", "agent", "consent_type", "source", "created_at", "revoked_at")
    list_filter = ("channel", "consent_type", "agent", "created_at", "revoked_at")
    search_fields = ("contact", "source", "agent__id")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("agent",)


# --- the operator's pools -------------------------------------------------------------------------


@admin.register(PhoneNumber)
class PhoneNumberAdmin(TenantScopedAdmin):
    """Numbers the operator owns; an organization's staff see the ones assigned to its agents."""

    read_only_for_staff = True
    list_display = ("number", "country", "agent", "is_sandbox", "acquired_at")
    list_filter = ("country", "is_sandbox", "agent", "acquired_at")
    search_fields = ("number", "provider_sid", "agent__id")
    readonly_fields = ("acquired_at",)
    autocomplete_fields = ("agent",)


@admin.register(WhatsAppSender)
class WhatsAppSenderAdmin(TenantScopedAdmin):
    read_only_for_staff = True
    list_display = ("phone_number", "sender_sid", "agent", "created_at")
    list_filter = ("agent", "created_at")
    search_fields = ("phone_number", "sender_sid", "agent__id")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("agent",)
