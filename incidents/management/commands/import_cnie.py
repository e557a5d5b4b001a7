from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from incidents.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    DEFAULT_EDITION,
    CatalogueError,
    import_catalogue,
    read_catalogue_csv,
)


class Command(BaseCommand):
    help = _(
        "Importa una edición del Catálogo Nacional de Incidentes de Emergencia (CNIE) desde un CSV. "
        "Sin ruta usa el catálogo incluido."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=str(DEFAULT_CATALOGUE_PATH), help=_("Archivo CSV"))
        parser.add_argument("--edition", default=DEFAULT_EDITION, help=_("Nombre de la edición"))

    def handle(self, *args, path, edition, **options):
        path = Path(path)
        self.stdout.write(_("Leyendo %(path)s…") % {"path": path})
        try:
            rows = read_catalogue_csv(path)
            self.stdout.write(
                _("Importando %(count)s filas como edición «%(edition)s»…")
                % {"count": len(rows), "edition": edition}
            )
            report = import_catalogue(rows=rows, edition=edition)
        except CatalogueError as exc:
            raise CommandError(
                _(
                    "%(error)s\nCorrija el archivo (columnas: tipo_code, tipo_name, subtipo_code, "
                    "subtipo_name, incident_code, incident_name, priority, definition) y vuelva a ejecutar."
                )
                % {"error": exc.message}
            ) from exc
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "Catálogo «%(edition)s»: %(total)s tipos — %(created)s nuevos, %(updated)s actualizados "
                    "(%(renamed)s renombrados, %(priority)s con prioridad cambiada, %(reactivated)s "
                    "reactivados), %(retired)s dados de baja, %(unchanged)s sin cambios; "
                    "%(plans)s planes de respuesta creados."
                )
                % {
                    "edition": report.edition,
                    "total": report.total,
                    "created": report.created,
                    "updated": report.updated,
                    "renamed": report.renamed,
                    "priority": report.priority_changed,
                    "reactivated": report.reactivated,
                    "retired": report.retired,
                    "unchanged": report.unchanged,
                    "plans": report.plans_created,
                }
            )
        )
        if report.retired_codes:
            self.stdout.write(
                _("Claves dadas de baja: %(codes)s") % {"codes": ", ".join(report.retired_codes)}
            )
