from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

SUPERVISION_EVERY_S = 30
LPR_PURGE_EVERY_S = 3600


class SensorsConfig(AppConfig):
    name = "sensors"
    verbose_name = _("Sensores: botones de pánico y arcos lectores de placas")

    def ready(self) -> None:
        from cad import periodic
        from interstate.vehicles import register_receiver
        from sensors.shared import PeerHotlists

        register_receiver(PeerHotlists())  # peers' shared vehicle alerts and sightings of ours

        periodic.register(
            "sensors.check_heartbeats", task="sensors.tasks.check_heartbeats", every=SUPERVISION_EVERY_S
        )
        periodic.register(
            "sensors.purge_lpr_reads", task="sensors.tasks.purge_lpr_reads", every=LPR_PURGE_EVERY_S
        )
