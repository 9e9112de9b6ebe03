"""Tenant scoping in the Django admin (contract §2): a staff member of an organization sees, searches,
exports and edits only that organization's rows; superusers see everything.

Every ModelAdmin of the project derives from `TenantScopedAdmin` (inlines from the `TenantScoped*Inline`
classes). It finds the path from its model to the organization by itself (`organization`, else
`agent__organization`; `pk` for Organization), or takes `tenant_field`. For a staff user who belongs to
an organization (StaffMembership) it scopes:

- the change list, the search, the date hierarchy and every action (delete, CSV export) through
  `get_queryset` and `get_search_results`;
- list filters on foreign keys (they list only the related rows the user can see);
- every foreign-key choice in forms and autocompletes (agents of their organization, their organization);
- object URLs: another organization's object, like a missing one, is 404 (not Django's redirect);
- saves: a row with an `organization` field is saved under theirs.

Staff users with no membership see no rows at all. Models marked `operator_only` (pools, staff
memberships, users) are for superusers. A voice admin applies it the same way:

    @admin.register(Call)
    class CallAdmin(TenantScopedAdmin):
        list_display = (...)
"""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone

from agents.models import Organization, StaffMembership


def staff_organization_id(user: Any) -> str | None:
    """The organization a staff user belongs to, or None (superusers may belong to none)."""
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "comms_staff_org_id", ...)
    if cached is not ...:
        return cached  # type: ignore[no-any-return]
    org_id = StaffMembership.objects.filter(user_id=user.pk).values_list("organization_id", flat=True).first()
    user.comms_staff_org_id = org_id
    return org_id


class _Everything:
    """The scope of a superuser."""


EVERYTHING = _Everything()
NOTHING = ""  # no organization matches an empty id


def request_scope(request: HttpRequest) -> str | _Everything:
    """EVERYTHING for superusers, else the id of the user's organization (NOTHING without one)."""
    user = request.user
    if getattr(user, "is_superuser", False):
        return EVERYTHING
    return staff_organization_id(user) or NOTHING


def tenant_path(model: type[models.Model]) -> str:
    """The lookup from `model` to its organization's id."""
    if issubclass(model, Organization):
        return "pk"
    for path in ("organization", "agent__organization"):
        try:
            field = model._meta.get_field(path.split("__")[0])
        except FieldDoesNotExist:
            continue
        if isinstance(field, models.ForeignKey):
            return path
    raise ImproperlyConfigured(
        f"{model.__name__} has no organization or agent field: set tenant_field on its admin, or make it operator_only."
    )


def scope_queryset(queryset: QuerySet[Any], scope: str | _Everything, path: str) -> QuerySet[Any]:
    if isinstance(scope, _Everything):
        return queryset
    if scope == NOTHING:
        return queryset.none()
    return queryset.filter(**{path: scope})


def object_organization_id(obj: models.Model, path: str) -> Any:
    """Follow `path` on a loaded object (no query when the relations are cached)."""
    if path == "pk":
        return obj.pk
    *relations, last = path.split("__")
    target: Any = obj
    for relation in relations:
        target = getattr(target, relation, None)
        if target is None:
            return None
    return getattr(target, f"{last}_id", None)


def related_scoped_queryset(model: type[models.Model], scope: str | _Everything) -> QuerySet[Any] | None:
    """The rows of a foreign key's target a user may pick, or None when the target is not tenant data."""
    try:
        path = tenant_path(model)
    except ImproperlyConfigured:
        return None
    return scope_queryset(model.objects.all(), scope, path)  # type: ignore[attr-defined]


# Spreadsheets run cells that start with these as formulas; an inbound message body can start with one.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SECRET_FIELD_MARKERS = ("encrypted", "digest", "secret", "token", "password")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class TenantScopedMixin:
    """The scoping itself, shared by model admins and inlines (see the module docstring)."""

    model: type[models.Model]
    tenant_field: str | None = None
    # Pools and accounts that belong to the operator: superusers only.
    operator_only = False
    # Staff of an organization may look but not change (e.g. their organization's caps, set by the operator).
    read_only_for_staff = False

    def tenant_lookup(self) -> str:
        return self.tenant_field or tenant_path(self.model)

    def scope(self, request: HttpRequest) -> str | _Everything:
        return request_scope(request)

    def is_unscoped(self, request: HttpRequest) -> bool:
        return isinstance(self.scope(request), _Everything)

    def in_scope(self, request: HttpRequest, obj: models.Model | None) -> bool:
        scope = self.scope(request)
        if obj is None or isinstance(scope, _Everything):
            return True
        return scope != NOTHING and object_organization_id(obj, self.tenant_lookup()) == scope

    def scoped(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows of `queryset` this user may see."""
        if self.is_unscoped(request):
            return queryset
        if self.operator_only:
            return queryset.none()
        return scope_queryset(queryset, self.scope(request), self.tenant_lookup())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.scoped(request, super().get_queryset(request))  # type: ignore[misc]

    def formfield_for_foreignkey(self, db_field: models.ForeignKey[Any, Any], request: HttpRequest,
                                 **kwargs: Any) -> Any:
        if not self.is_unscoped(request):
            choices = related_scoped_queryset(db_field.remote_field.model, self.scope(request))  # type: ignore[arg-type]
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def _allowed(self, request: HttpRequest, obj: models.Model | None, write: bool) -> bool:
        if self.is_unscoped(request):
            return True
        if self.operator_only or (write and self.read_only_for_staff):
            return False
        return self.in_scope(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj, False) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj, True) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj, True) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class TenantScopedAdmin(TenantScopedMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """The base of every ModelAdmin in the project."""

    actions = ["export_csv"]

    def __init__(self, model: type[models.Model], admin_site: admin.AdminSite) -> None:
        super().__init__(model, admin_site)
        if not self.operator_only:
            self.tenant_lookup()  # fail at start-up, not on the first request, when there is no path

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, None, True) and super().has_add_permission(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        if self.operator_only and not self.is_unscoped(request):
            return False
        return super().has_module_permission(request)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        # Scoped again: autocomplete hands in its own queryset, and a search field may follow a relation.
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return self.scoped(request, results), may_have_duplicates

    def get_list_filter(self, request: HttpRequest) -> Any:
        """Foreign-key filters list only the related rows this user can see (RelatedOnlyFieldListFilter)."""
        filters: list[Any] = []
        for item in super().get_list_filter(request):
            if isinstance(item, str) and "__" not in item:
                try:
                    field = self.model._meta.get_field(item)
                except FieldDoesNotExist:
                    filters.append(item)
                    continue
                if isinstance(field, models.ForeignKey):
                    filters.append((item, admin.RelatedOnlyFieldListFilter))
                    continue
            filters.append(item)
        return filters

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None and not self.is_unscoped(request):
            # Another organization's object reads exactly like a missing one.
            raise Http404("No such object.")
        return obj

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        scope = self.scope(request)
        if not isinstance(scope, _Everything):
            if scope == NOTHING:
                raise Http404("No organization.")
            if self.tenant_lookup() == "organization":
                obj.organization_id = scope
            elif not self.in_scope(request, obj):
                raise Http404("No such object.")
        super().save_model(request, obj, form, change)

    # --- export -----------------------------------------------------------------------------------

    def export_field_names(self) -> list[str]:
        """Concrete fields, secrets and their digests left out."""
        return [
            field.attname
            for field in self.model._meta.concrete_fields
            if not any(marker in field.name for marker in SECRET_FIELD_MARKERS)
        ]

    @admin.action(description="Export selected as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        # `queryset` is the change list's, so already scoped; scoped again in case an action is called directly.
        rows = self.scoped(request, queryset)
        names = self.export_field_names()
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="{self.model._meta.model_name}-{stamp}.csv"'
        writer = csv.writer(response)
        writer.writerow(names)
        for values in rows.order_by("pk").values_list(*names):
            writer.writerow([_csv_cell(value) for value in values])
        return response


class TenantScopedInlineMixin(TenantScopedMixin):
    """Inlines: their rows are scoped like any other; `obj` in their permission checks is the parent,
    which its own admin has already scoped (get_object answers 404 otherwise)."""

    def in_scope(self, request: HttpRequest, obj: models.Model | None) -> bool:
        return self.is_unscoped(request) or self.scope(request) != NOTHING

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj, True) and super().has_add_permission(request, obj)  # type: ignore[misc]


class TenantScopedTabularInline(TenantScopedInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    pass


class TenantScopedStackedInline(TenantScopedInlineMixin, admin.StackedInline):  # type: ignore[type-arg]
    pass
