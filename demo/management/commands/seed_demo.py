import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from cad.errors import DomainError
from demo.seed import DEFAULT_DEMO_PASSWORD, PASSWORD_ENV, seed_demo


class Command(BaseCommand):
    help = _(
        "Carga datos de demostración (centro, catálogo CNIE, límites, corporaciones, unidades y un "
        "usuario por rol). Se puede ejecutar varias veces sin duplicar."
    )

    def add_arguments(self, parser):
        parser.add_argument("--center", default="MEX", help=_("Código del centro: MEX o CDMX (MEX)"))
        parser.add_argument(
            "--units",
            type=int,
            default=None,
            help=_("Número de unidades (por omisión: 200 en MEX, 60 en CDMX)"),
        )
        parser.add_argument(
            "--password",
            default=None,
            help=_("Contraseña de los usuarios demo (o variable %(env)s)") % {"env": PASSWORD_ENV},
        )

    def handle(self, *args, center, units, password, **options):
        started = time.monotonic()
        try:
            report = seed_demo(center_code=center, units=units, password=password, progress=self.stdout.write)
        except DomainError as exc:
            raise CommandError(str(exc.message)) from exc
        # Never a token, and a password only when it is the public demo one: this output ends up in logs.
        public = report.password == DEFAULT_DEMO_PASSWORD
        if report.users:
            self.stdout.write("")
            self.stdout.write(_("Usuarios creados (inicio de sesión en la consola):"))
            for username, role in report.users:
                shown = report.password if public else _("(la contraseña indicada)")
                self.stdout.write(f"  {username:<14} {role:<16} {shown}")
        if report.services:
            self.stdout.write(
                _(
                    "Cuentas de servicio creadas (sólo token): %(names)s. Obtenga su token con "
                    "«python manage.py service_token issue --user <usuario>» (no se imprime aquí)."
                )
                % {"names": ", ".join(name for name, _role in report.services)}
            )
        if report.password == DEFAULT_DEMO_PASSWORD:
            self.stdout.write(
                self.style.WARNING(
                    _(
                        "ADVERTENCIA: contraseña de demostración «%(password)s». Son datos de prueba: "
                        "no use estas cuentas ni esta contraseña en producción."
                    )
                    % {"password": report.password}
                )
            )
        self.stdout.write(
            self.style.SUCCESS(
                _("Datos de demostración listos en %(seconds).1f s.")
                % {"seconds": time.monotonic() - started}
            )
        )
