from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Organizations and agents"

    def ready(self) -> None:
        from agents import signals

        signals.connect()
