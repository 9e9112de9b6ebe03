"""The admin reads well (issue 13 item 6): human names, filters and search on every list, read-only audit
fields, money as money."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from admin_ui.admin import money
from agents.models import UsageRecord
from channels_app.models import Message
from tests.admin_ui.conftest import Tenant, session_client

pytestmark = pytest.mark.django_db


def registered() -> list[Any]:
    return [model for model in apps.get_models() if admin.site.is_registered(model)]


@pytest.mark.parametrize(("value", "places", "shown"), [
    (Decimal("0.0075"), 4, "$0.0075"),
    (Decimal("0.007500"), 6, "$0.0075"),
    (Decimal("0.00000123"), 6, "$0.000001"),
    (Decimal("50"), 2, "$50.00"),
    (Decimal("1.1"), 4, "$1.10"),
    (Decimal("-0.5"), 4, "-$0.50"),
    (None, 4, "—"),
])
def test_money_is_shown_in_dollars_with_its_precision(value: Decimal | None, places: int, shown: str) -> None:
    assert money(value, places=places) == shown


def test_the_index_names_apps_and_models_in_plain_words(superuser: User) -> None:
    page = session_client(superuser, csrf=False).get("/admin/").content.decode()
    for name in ("Organizations and agents", "Messages", "Voice calls", "WhatsApp senders", "Org tokens",
                 "Agent tokens", "Opt-outs", "Consent records", "Usage records"):
        assert name in page, name
    for ugly in ("Channels_App", "Channels_app", "Whats app", "Opt outs", "Usage recordss"):
        assert ugly not in page, ugly


def test_every_list_has_filters_and_search() -> None:
    for model in registered():
        model_admin = admin.site.get_model_admin(model)
        assert model_admin.search_fields, model
        if model is not Group:  # a group is only its name: nothing to filter on
            assert model_admin.list_filter, model


def test_every_list_page_renders_for_the_superuser(tenants: dict[str, Tenant], superuser: User) -> None:
    client = session_client(superuser, csrf=False)
    for model in registered():
        response = client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
        assert response.status_code == 200, model
        add = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
        assert client.get(add).status_code in (200, 403), model


def test_audit_fields_are_read_only_and_shown(tenants: dict[str, Tenant], superuser: User) -> None:
    client = session_client(superuser, csrf=False)
    response = client.get(reverse("admin:agents_agent_change", args=["agent-a"]))
    form = response.context["adminform"]
    assert {"created_at", "updated_at", "deprovisioned_at"} <= set(form.readonly_fields)
    token_page = client.get(reverse("admin:agents_agenttoken_change", args=[tenants["a"].agent.tokens.get().pk]))
    assert {"digest", "last_used_at", "created_at"} <= set(token_page.context["adminform"].readonly_fields)
    assert "token_encrypted" not in token_page.content.decode()


def test_costs_show_as_money_in_the_lists(tenants: dict[str, Tenant], superuser: User) -> None:
    tenant = tenants["a"]
    Message.objects.create(agent=tenant.agent, organization=tenant.org, direction="outbound", channel="sms",
                           from_address="+1", to_address="+2", body="x", cost=Decimal("0.007500"))
    UsageRecord.objects.create(agent=tenant.agent, organization=tenant.org, action_type="message", channel="sms",
                               provider_cost=Decimal("0.000125"))
    client: Client = session_client(superuser, csrf=False)
    assert "$0.0075" in client.get(reverse("admin:channels_app_message_changelist")).content.decode()
    assert "$0.000125" in client.get(reverse("admin:agents_usagerecord_changelist")).content.decode()
    organizations = client.get(reverse("admin:agents_organization_changelist")).content.decode()
    assert "no cap" in organizations
