"""Django admin for the operator: organizations, agents, tokens, messages, calls, usage, pools.

Tokens are never shown here (only digests are stored); issue them with `manage.py issue_token`.
Calls and their turns are registered by the voice app (voice/admin.py).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from admin_ui.forms import ALL_CHANNELS, BLOCKABLE_CHANNELS, AgentAdminForm
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
from channels_app.models import Message

admin.site.site_header = "Agent Comms Orchestrator"
admin.site.site_title = "Comms admin"


class ReadOnlyTokenAdmin(admin.ModelAdmin):
    list_display: tuple[str, ...] = ("display_prefix", "label", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("digest", "display_prefix", "created_at", "last_used_at")
    exclude = ("token_encrypted",)

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "max_spend_per_day", "max_spend_per_month", "created_at")
    search_fields = ("id", "name")


class ChannelAddressInline(admin.TabularInline):
    model = ChannelAddress
    extra = 0


class AgentLimitsInline(admin.StackedInline):
    model = AgentLimits
    can_delete = False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentAdminForm
    change_list_template = "admin_ui/agent_change_list.html"
    list_display = ("id", "display_name", "organization", "status", "blocked_channel_toggles", "created_at")
    list_filter = ("status", "organization")
    search_fields = ("id", "display_name")
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
                for value, label in [*BLOCKABLE_CHANNELS, (ALL_CHANNELS, "All")]
            ),
        )
        return format_html(
            '<span class="ops-blocked" data-agent="{}" data-url="{}" data-blocked="{}">{}'
            '<span class="ops-toggle-status" aria-live="polite"></span></span>',
            agent.pk, f"{reverse('admin:index')}api/agents/{quote(agent.pk, safe='')}/blocked-channels",
            json.dumps(blocked), boxes,
        )


@admin.register(AgentToken)
class AgentTokenAdmin(ReadOnlyTokenAdmin):
    list_display = ("display_prefix", "agent", *ReadOnlyTokenAdmin.list_display[1:])
    list_filter = ("revoked_at",)


@admin.register(OrgToken)
class OrgTokenAdmin(ReadOnlyTokenAdmin):
    list_display = ("display_prefix", "organization", *ReadOnlyTokenAdmin.list_display[1:])


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "agent", "direction", "channel", "kind", "to_address", "status", "cost", "created_at")
    list_filter = ("direction", "channel", "status", "provider")
    search_fields = ("id", "external_id", "to_address", "from_address")
    date_hierarchy = "created_at"


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ("agent", "action_type", "channel", "provider_cost", "created_at")
    list_filter = ("action_type", "channel")


admin.site.register(OptOut, list_display=("agent", "channel", "contact", "keyword", "created_at"))
admin.site.register(Consent, list_display=("agent", "channel", "contact", "consent_type", "revoked_at"))
admin.site.register(PhoneNumber, list_display=("number", "country", "agent", "is_sandbox", "acquired_at"))
admin.site.register(WhatsAppSender, list_display=("phone_number", "sender_sid", "agent"))
admin.site.register(StaffMembership)
