"""Calls and their turns in the operator admin, scoped to the staff member's organization
(admin_ui.tenancy.TenantScopedAdmin, docs/admin-api.md)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from admin_ui.admin import ReadOnlyAdmin, money
from admin_ui.tenancy import TenantScopedTabularInline
from voice.models import Call, CallTurn


class CallTurnInline(TenantScopedTabularInline):
    model = CallTurn
    tenant_field = "call__organization"
    extra = 0
    can_delete = False
    fields = ("sequence", "caller_text", "reply_text", "answered_by", "first_reply_ms", "interrupted", "heard_text")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="first reply (ms)")
    def first_reply_ms(self, turn: CallTurn) -> int | None:
        return turn.first_reply_ms


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = ("call_sid", "agent", "direction", "status", "from_address", "to_address", "duration_seconds",
                    "price", "created_at")
    list_filter = ("direction", "status", "purpose", "organization", "created_at")
    search_fields = ("call_sid", "session_id", "from_address", "to_address", "agent__id")
    date_hierarchy = "created_at"
    list_select_related = ("agent",)
    inlines = [CallTurnInline]

    @admin.display(description="Cost", ordering="cost")
    def price(self, call: Call) -> str:
        return money(call.cost)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Call._meta.fields]


@admin.register(CallTurn)
class CallTurnAdmin(ReadOnlyAdmin):
    tenant_field = "call__organization"
    list_display = ("call", "sequence", "answered_by", "interrupted", "prompt_at", "first_reply_at")
    list_filter = ("answered_by", "interrupted", "prompt_at")
    search_fields = ("call__call_sid", "caller_text", "reply_text")
    list_select_related = ("call",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in CallTurn._meta.fields]
