from django.apps import AppConfig
from django.conf import settings
from django.utils.translation import gettext_lazy as _

PRUNE_EVERY_S = 3600


def _warm_up_validators() -> None:
    from django.db import connection

    from interstate import validation
    from interstate.models import Peer

    try:
        has_peers = Peer.objects.filter(enabled=True).exists()
    finally:
        connection.close()  # this thread's own connection
    if has_peers:  # a centre without peers never loads the schemas
        validation.warm_up()


class InterstateConfig(AppConfig):
    name = "interstate"
    verbose_name = _("Interconexión entre centros")

    def ready(self) -> None:
        from cad import events, periodic, warmup
        from interstate import checks, listeners  # noqa: F401 - checks registers the system checks

        events.add_listener(listeners.on_event)
        # Outbound EIDOs are validated when built (in the escalating request) and inbound ones on arrival:
        # build the validators at process start, not in the first peer's request (~1 s, more under load).
        warmup.register(_warm_up_validators)
        periodic.register(
            "interstate.sweep_outbox",
            task="interstate.tasks.sweep_outbox",
            every=settings.CAD_INTERSTATE_SWEEP_EVERY_S,
        )
        periodic.register("interstate.prune", task="interstate.tasks.prune", every=PRUNE_EVERY_S)
