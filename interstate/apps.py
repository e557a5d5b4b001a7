from django.apps import AppConfig
from django.conf import settings
from django.utils.translation import gettext_lazy as _

PRUNE_EVERY_S = 3600


class InterstateConfig(AppConfig):
    name = "interstate"
    verbose_name = _("Interconexión entre centros")

    def ready(self) -> None:
        from cad import events, periodic
        from interstate import checks, listeners  # noqa: F401 - checks registers the system checks

        events.add_listener(listeners.on_event)
        periodic.register(
            "interstate.sweep_outbox",
            task="interstate.tasks.sweep_outbox",
            every=settings.CAD_INTERSTATE_SWEEP_EVERY_S,
        )
        periodic.register("interstate.prune", task="interstate.tasks.prune", every=PRUNE_EVERY_S)
