from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Consola"

    def ready(self):
        from console import signals  # noqa: F401 - connects the session-end receivers
