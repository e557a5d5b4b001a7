from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from geo.services import INEGI_SOURCE, JurisdictionImportError, import_geojson_file, shipped_files


class Command(BaseCommand):
    help = _(
        "Importa límites de entidades o municipios desde archivos GeoJSON (FeatureCollection). Sin "
        "archivos importa los incluidos del Estado de México y sus vecinos (09, 13, 15, 17, 22, 29)."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", help=_("Archivos GeoJSON"))
        parser.add_argument("--all", action="store_true", help=_("Todos los archivos incluidos"))
        parser.add_argument("--source", default="", help=_("Fuente que se registra (atribución)"))

    def handle(self, *args, files, all, source, **options):
        paths = [Path(f) for f in files] or shipped_files(all_states=all)
        total = 0
        for number, path in enumerate(paths, start=1):
            try:
                count = import_geojson_file(path=path, source=source or None)
            except JurisdictionImportError as exc:
                raise CommandError(
                    _(
                        "%(path)s: %(error)s\nNada de este archivo se importó; los anteriores sí. "
                        "Revise que sea una FeatureCollection en WGS84 con cvegeo/cve_ent y nombre."
                    )
                    % {"path": path, "error": exc.message}
                ) from exc
            total += count
            self.stdout.write(
                _("[%(n)s/%(of)s] %(file)s… %(count)s jurisdicción(es)")
                % {"n": number, "of": len(paths), "file": path.name, "count": count}
            )
        self.stdout.write(self.style.SUCCESS(_("%(total)s jurisdicciones importadas.") % {"total": total}))
        if not source:
            self.stdout.write(INEGI_SOURCE)
