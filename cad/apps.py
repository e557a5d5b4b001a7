from django.apps import AppConfig


class CadConfig(AppConfig):
    name = "cad"
    verbose_name = "CAD"

    def ready(self):
        from cad import (
            checks,  # noqa: F401 - registers the deploy check
            periodic,
        )

        periodic.register("cad.prune_events", task="cad.tasks.prune_events", every=3600)
