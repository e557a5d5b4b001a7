"""Import a hotlist CSV (up to millions of rows) with progress:

manage.py import_hotlist robados.csv --hotlist 3
manage.py import_hotlist robados.csv --kind stolen --name "REPUVE robados" --source REPUVE --owner supervisor
"""

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cad.errors import DomainError
from cad.models import Center
from sensors.hotlists import CSV_COLUMNS, import_csv
from sensors.models import Hotlist


class Command(BaseCommand):
    help = (
        f"Importa un CSV de placas a una lista (columnas: {', '.join(CSV_COLUMNS)}; sólo plate obligatoria)."
    )

    def add_arguments(self, parser):
        parser.add_argument("csv", help="archivo CSV (UTF-8) o - para la entrada estándar")
        parser.add_argument("--hotlist", type=int, help="id de una lista existente")
        parser.add_argument("--kind", choices=Hotlist.Kind.values, help="crear la lista: tipo")
        parser.add_argument("--name", help="crear la lista: nombre")
        parser.add_argument("--source", default="", help="crear la lista: fuente (REPUVE, FGJEM…)")
        parser.add_argument("--owner", help="crear la lista: usuario responsable")
        parser.add_argument("--center", help="código del centro (por omisión, el único o CAD_CENTER_CODE)")
        parser.add_argument(
            "--shared", action="store_true", help="crear la lista compartida con estados pares"
        )
        parser.add_argument("--chunk", type=int, default=5000)

    def handle(self, *args, **opts):
        hotlist = self._hotlist(opts)
        stream = sys.stdin if opts["csv"] == "-" else open(opts["csv"], encoding="utf-8-sig", newline="")  # noqa: SIM115
        try:
            stored, errors = import_csv(
                hotlist=hotlist,
                lines=stream,
                chunk=opts["chunk"],
                progress=lambda n, e: self.stdout.write(
                    f"  {n:,} placas guardadas, {e:,} filas con error", ending="\r"
                ),
            )
        except DomainError as exc:
            raise CommandError(str(exc.message)) from exc
        finally:
            if stream is not sys.stdin:
                stream.close()
        self.stdout.write("")
        for error in errors[:20]:
            self.stderr.write(error)
        self.stdout.write(
            self.style.SUCCESS(
                f"Lista {hotlist.id} «{hotlist.name}»: {stored:,} placas importadas, {len(errors):,} rechazadas"
            )
        )

    def _hotlist(self, opts) -> Hotlist:
        if opts["hotlist"]:
            hotlist = Hotlist.objects.filter(pk=opts["hotlist"]).first()
            if hotlist is None:
                raise CommandError(f"No existe la lista {opts['hotlist']}")
            return hotlist
        if not (opts["kind"] and opts["name"] and opts["owner"]):
            raise CommandError("Indique --hotlist, o --kind, --name y --owner para crear una lista")
        owner = get_user_model().objects.filter(username=opts["owner"]).first()
        if owner is None:
            raise CommandError(f"No existe el usuario {opts['owner']}")
        center = Center.objects.filter(code=opts["center"]).first() if opts["center"] else owner.center
        if center is None:
            raise CommandError("Indique --center")
        return Hotlist.objects.create(
            center=center,
            kind=opts["kind"],
            name=opts["name"],
            source=opts["source"],
            owner=owner,
            shared=opts["shared"],
        )
