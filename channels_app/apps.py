from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Messages"

    def ready(self) -> None:
        # Readiness (/health/ready) asks every configured provider for a cheap live call.
        from channels_app.providers.checks import register_checks

        register_checks()

        # Push messages that waited for an agent as soon as its MCP session is initialized.
        from channels_app.delivery.live_push import register_connect_listener

        register_connect_listener()

        # Every server process retries due callbacks (started with the server, or by the first callback).
        from channels_app.callbacks import ensure_sweeper
        from orchestrator.lifespan import on_startup

        on_startup(ensure_sweeper)
