from django.apps import AppConfig

# A module import, not `from … import AdminConfig`: Django picks an app's default config among the
# AppConfig classes visible in apps.py, and an imported AdminConfig would be one more candidate.
from django.contrib.admin import apps as admin_apps


class AdminUiConfig(AppConfig):
    name = "admin_ui"
    default_auto_field = "django.db.models.BigAutoField"


class OrchestratorAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site (dashboard, setup, API docs, provisioning) as `admin.site`.
    Named in INSTALLED_APPS instead of "django.contrib.admin"."""

    default = False  # not admin_ui's own config: that is AdminUiConfig
    default_site = "admin_ui.sites.OrchestratorAdminSite"
