"""Calls and their turns in the operator admin."""

from __future__ import annotations

from django.contrib import admin

from voice.models import Call, CallTurn


class CallTurnInline(admin.TabularInline):
    model = CallTurn
    extra = 0
    can_delete = False
    fields = ("sequence", "caller_text", "reply_text", "answered_by", "first_reply_ms", "interrupted", "heard_text")
    readonly_fields = fields

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False

    @admin.display(description="first reply (ms)")
    def first_reply_ms(self, turn: CallTurn) -> int | None:
        return turn.first_reply_ms


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ("call_sid", "agent", "direction", "status", "from_address", "to_address", "duration_seconds", "cost", "created_at")
    list_filter = ("direction", "status")
    search_fields = ("call_sid", "session_id", "from_address", "to_address")
    date_hierarchy = "created_at"
    inlines = [CallTurnInline]


@admin.register(CallTurn)
class CallTurnAdmin(admin.ModelAdmin):
    list_display = ("call", "sequence", "answered_by", "interrupted", "prompt_at", "first_reply_at")
    list_filter = ("answered_by", "interrupted")
    search_fields = ("call__call_sid", "caller_text", "reply_text")
