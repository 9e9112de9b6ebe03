"""Tenant scoping in the Django admin (contract §2, issue 13 item 2): for every admin model, a staff member
of organization A lists, searches, opens, deletes, exports and autocompletes only A's rows, and no form
offers B's; another organization's object is 404. Superusers see everything."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, User
from django.db import models
from django.forms import ModelChoiceField
from django.urls import reverse
from django.utils import timezone

from admin_ui.tenancy import TenantScopedMixin
from agents.models import (
    Agent,
    AgentToken,
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
from tests.admin_ui.conftest import Tenant, session_client
from voice.models import Call, CallTurn

pytestmark = pytest.mark.django_db

B_MARKERS = ("org-b", "Bolt", "agent-b", "Agent-B", "+14155550202", "b-secret-contact")


@dataclass
class Pair:
    a: models.Model
    b: models.Model
    search_b: str  # a search term that finds b (as the superuser can check)


def pairs(tenants: dict[str, Tenant]) -> dict[type[models.Model], Pair]:
    made: dict[str, dict[type[models.Model], models.Model]] = {}
    for key, tenant in tenants.items():
        contact = "+14155550111" if key == "a" else "b-secret-contact@example.com"
        number = "+14155550301" if key == "a" else "+14155550302"
        made[key] = {
            Organization: tenant.org,
            Agent: tenant.agent,
            AgentToken: AgentToken.objects.get(agent=tenant.agent),
            OrgToken: OrgToken.objects.get(organization=tenant.org),
            Message: Message.objects.create(agent=tenant.agent, organization=tenant.org, direction="outbound",
                                            channel="sms", from_address="+1", to_address=contact, body="hi",
                                            cost=Decimal("0.0075")),
            Call: Call.objects.create(agent=tenant.agent, organization=tenant.org, direction="outbound",
                                      from_address="+1", to_address=contact[:32], call_sid=f"CA{key * 32}"),
            UsageRecord: UsageRecord.objects.create(agent=tenant.agent, organization=tenant.org, action_type="message",
                                                    channel="sms", provider_cost=Decimal("0.0075"),
                                                    reference=f"ref-{contact}"),
            OptOut: OptOut.objects.create(agent=tenant.agent, channel="sms", contact=contact, keyword="STOP"),
            Consent: Consent.objects.create(agent=tenant.agent, channel="sms", contact=contact),
            PhoneNumber: PhoneNumber.objects.create(number=number, agent=tenant.agent),
            WhatsAppSender: WhatsAppSender.objects.create(phone_number=number, agent=tenant.agent),
        }
        made[key][CallTurn] = CallTurn.objects.create(call=made[key][Call], sequence=1, caller_text=f"said {contact}",
                                                      prompt_at=timezone.now())
    search = {Organization: "Bolt", Agent: "agent-b", AgentToken: "agent-b", OrgToken: "org-b",
              Message: "b-secret-contact", Call: "b-secret-contact", UsageRecord: "b-secret-contact",
              OptOut: "b-secret-contact", Consent: "b-secret-contact", PhoneNumber: "+14155550302",
              WhatsAppSender: "+14155550302", CallTurn: "b-secret-contact"}
    return {model: Pair(made["a"][model], made["b"][model], search[model]) for model in made["a"]}


def url(model: type[models.Model], view: str, *args: Any) -> str:
    # Quoted as the admin's own links are: unquoted, an id such as msg_24… reads as msg$… (`_24` is `$`).
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=[quote(arg) for arg in args])


def listed(response: Any) -> set[Any]:
    assert response.status_code == 200, response.status_code
    return {obj.pk for obj in response.context["cl"].result_list}


def test_every_registered_model_admin_is_tenant_scoped() -> None:
    for model in apps.get_models():
        if admin.site.is_registered(model):
            assert isinstance(admin.site.get_model_admin(model), TenantScopedMixin), model


def test_the_matrix_covers_every_tenant_model_of_the_admin(tenants: dict[str, Tenant]) -> None:
    operator_only = {User, Group, StaffMembership}
    registered = {model for model in apps.get_models() if admin.site.is_registered(model)}
    assert registered - operator_only == set(pairs(tenants))


@pytest.fixture
def matrix(tenants: dict[str, Tenant]) -> dict[type[models.Model], Pair]:
    return pairs(tenants)


MODELS = [Organization, Agent, AgentToken, OrgToken, Message, Call, CallTurn, UsageRecord, OptOut, Consent,
          PhoneNumber, WhatsAppSender]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_staff_of_one_org_list_search_and_open_only_its_rows(model: type[models.Model], matrix: dict[Any, Pair],
                                                             staff_a: User, superuser: User) -> None:
    pair = matrix[model]
    staff, root = session_client(staff_a, csrf=False), session_client(superuser, csrf=False)

    changelist = staff.get(url(model, "changelist"))
    assert listed(changelist) == {pair.a.pk}
    page = changelist.content.decode()
    assert not [marker for marker in B_MARKERS if marker in page], "another org shows in the list or its filters"
    assert listed(root.get(url(model, "changelist"))) >= {pair.a.pk, pair.b.pk}

    assert listed(staff.get(url(model, "changelist"), {"q": pair.search_b})) == set()
    assert pair.b.pk in listed(root.get(url(model, "changelist"), {"q": pair.search_b}))

    assert staff.get(url(model, "change", pair.a.pk)).status_code == 200
    assert staff.get(url(model, "change", pair.b.pk)).status_code == 404
    assert staff.get(url(model, "history", pair.b.pk)).status_code == 404
    assert root.get(url(model, "change", pair.b.pk)).status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_staff_cannot_delete_another_orgs_row_by_url_or_bulk_action(model: type[models.Model], matrix: dict[Any, Pair],
                                                                    staff_a: User) -> None:
    pair = matrix[model]
    staff = session_client(staff_a, csrf=False)

    assert staff.get(url(model, "delete", pair.b.pk)).status_code == 404
    assert staff.post(url(model, "delete", pair.b.pk), {"post": "yes"}).status_code == 404
    staff.post(url(model, "changelist"), {"action": "delete_selected", "_selected_action": [pair.b.pk], "post": "yes"})

    assert model.objects.filter(pk=pair.b.pk).exists()  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_csv_export_holds_only_the_staff_members_rows(model: type[models.Model], matrix: dict[Any, Pair],
                                                      staff_a: User, superuser: User) -> None:
    pair = matrix[model]

    def export(user: User) -> list[list[str]]:
        response = session_client(user, csrf=False).post(
            url(model, "changelist"), {"action": "export_csv", "_selected_action": [pair.a.pk, pair.b.pk]})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        return list(csv.reader(io.StringIO(response.content.decode())))

    rows = export(staff_a)
    header = rows[0]
    assert not [name for name in header if "digest" in name or "encrypted" in name]
    pk_column = header.index(model._meta.pk.attname)
    assert [row[pk_column] for row in rows[1:]] == [str(pair.a.pk)]
    assert len(export(superuser)) == 3


@pytest.mark.parametrize(("source", "field", "target"), [
    (Agent, "organization", Organization),
    (OptOut, "agent", Agent),
    (Message, "agent", Agent),
    (Call, "agent", Agent),
    (PhoneNumber, "agent", Agent),
])
def test_autocomplete_offers_only_the_staff_members_rows(source: type[models.Model], field: str,
                                                         target: type[models.Model], matrix: dict[Any, Pair],
                                                         staff_a: User, superuser: User) -> None:
    def ids(user: User, term: str = "") -> set[str]:
        response = session_client(user, csrf=False).get(reverse("admin:autocomplete"), {
            "app_label": source._meta.app_label, "model_name": source._meta.model_name, "field_name": field,
            "term": term})
        assert response.status_code == 200
        return {result["id"] for result in response.json()["results"]}

    a, b = str(matrix[target].a.pk), str(matrix[target].b.pk)
    assert ids(staff_a) == {a}
    assert ids(staff_a, b) == set()
    assert {a, b} <= ids(superuser)


@pytest.mark.parametrize("model", [Agent, OptOut, Consent], ids=lambda m: m.__name__)
def test_no_form_offers_another_organization_or_its_agents(model: type[models.Model], matrix: dict[Any, Pair],
                                                           staff_a: User) -> None:
    staff = session_client(staff_a, csrf=False)
    for page in (url(model, "add"), url(model, "change", matrix[model].a.pk)):
        response = staff.get(page)
        assert response.status_code == 200
        form = response.context["adminform"].form
        for name, form_field in form.fields.items():
            if isinstance(form_field, ModelChoiceField):
                offered = {obj.pk for obj in form_field.queryset}
                assert matrix[Organization].b.pk not in offered and matrix[Agent].b.pk not in offered, name


def test_staff_can_add_for_their_own_agent_but_not_for_another_orgs(matrix: dict[Any, Pair], staff_a: User) -> None:
    staff = session_client(staff_a, csrf=False)
    form = {"channel": "email", "contact": "new@example.com", "consent_type": "express", "source": "", "notes": ""}

    refused = staff.post(url(Consent, "add"), {**form, "agent": "agent-b"})
    assert refused.status_code == 200  # the form again, with an error
    assert "agent" in refused.context["adminform"].form.errors
    assert not Consent.objects.filter(contact="new@example.com").exists()

    accepted = staff.post(url(Consent, "add"), {**form, "agent": "agent-a"})
    assert accepted.status_code == 302
    assert Consent.objects.get(contact="new@example.com").agent_id == "agent-a"


def test_organization_caps_and_pools_are_read_only_for_staff(matrix: dict[Any, Pair], staff_a: User) -> None:
    staff = session_client(staff_a, csrf=False)
    org = matrix[Organization].a
    response = staff.post(url(Organization, "change", org.pk), {"name": "Hacked", "max_spend_per_day": "99999"})
    assert response.status_code == 403
    org.refresh_from_db()
    assert org.name == "Acme"
    assert staff.get(url(PhoneNumber, "add")).status_code == 403
    assert staff.get(url(Organization, "add")).status_code == 403


@pytest.mark.parametrize("model", [StaffMembership, User, Group], ids=lambda m: m.__name__)
def test_staff_memberships_users_and_groups_are_for_superusers(model: type[models.Model], staff_a: User,
                                                               superuser: User) -> None:
    assert session_client(staff_a, csrf=False).get(url(model, "changelist")).status_code == 403
    assert session_client(superuser, csrf=False).get(url(model, "changelist")).status_code == 200


def test_a_staff_user_without_an_organization_sees_no_rows(matrix: dict[Any, Pair]) -> None:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("drifter", "d@example.com", "pw-drifter-123", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    staff = session_client(user, csrf=False)
    assert listed(staff.get(url(Agent, "changelist"))) == set()
    assert staff.get(url(Agent, "change", "agent-a")).status_code == 404
