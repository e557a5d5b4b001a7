from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

KPI_ROLLUP_EVERY_S = 60


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = _("Tablero de supervisión")

    def ready(self) -> None:
        from cad import periodic

        periodic.register(
            "dashboard.refresh_kpi_rollups",
            task="dashboard.tasks.refresh_kpi_rollups",
            every=KPI_ROLLUP_EVERY_S,
        )
