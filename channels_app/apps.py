from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Readiness (/health/ready) asks every configured provider for a cheap live call.
        from channels_app.providers.checks import register_checks

        register_checks()
