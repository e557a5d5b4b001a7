from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from geo.services import SAMPLE_DIR, LocalityImportError, import_localities_file


class Command(BaseCommand):
    help = _(
        "Importa el catálogo de localidades del INEGI (AGEEML, CSV) para el geocodificador sin conexión. "
        "Sin archivo importa la pequeña muestra incluida (solo demostración)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help=_("CSV de localidades del AGEEML"))
        parser.add_argument(
            "--state",
            action="append",
            default=[],
            help=_("Solo esta entidad (clave de 2 dígitos); repetible"),
        )
        parser.add_argument("--source", default="", help=_("Fuente que se registra (atribución)"))

    def handle(self, *args, file, state, source, **options):
        path = file or SAMPLE_DIR / "localidades-muestra.csv"
        try:
            imported, skipped = import_localities_file(
                path=path, source=source or None, states={s.zfill(2) for s in state} or None
            )
        except LocalityImportError as exc:
            raise CommandError(f"{path}: {exc.message}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                _("%(imported)s localidades importadas (%(skipped)s sin coordenadas, omitidas).")
                % {"imported": imported, "skipped": skipped}
            )
        )
