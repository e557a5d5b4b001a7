"""Manage peer centres: add / list / enable / disable / rotate-secret / refresh (docs/interstate.md §10).

Secrets are printed once, when they are created or rotated, and read from a file or standard input (never
from the command line, where `ps` would show them).
"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import DomainError
from geo.models import Jurisdiction
from interstate import services
from interstate.delivery import PeerRefused, PeerUnavailable, fetch_peer_document
from interstate.models import Peer
from interstate.selectors import peer_list_for_admin


def _read_secret(source: str) -> str:
    try:
        text = sys.stdin.readline() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(
            _("No se pudo leer el secreto de envío (%(source)s): %(error)s")
            % {"source": source, "error": exc}
        ) from exc
    secret = text.strip()
    if not secret:
        raise CommandError(_("El secreto de envío está vacío (%(source)s).") % {"source": source})
    return secret


def _area(options) -> dict | None:
    if options.get("area_cvegeo"):
        geometry = (
            Jurisdiction.objects.filter(cvegeo=options["area_cvegeo"])
            .values_list("geometry", flat=True)
            .first()
        )
        if geometry is None:
            raise CommandError(
                _(
                    "No hay límites importados para la clave %(cvegeo)s; importe primero: manage.py import_jurisdictions"
                )
                % {"cvegeo": options["area_cvegeo"]}
            )
        return geometry
    if options.get("area_file"):
        try:
            document = json.loads(Path(options["area_file"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(_("No se pudo leer el GeoJSON: %(error)s") % {"error": exc}) from exc
        if document.get("type") == "FeatureCollection" and document.get("features"):
            document = document["features"][0]["geometry"]
        elif document.get("type") == "Feature":
            document = document["geometry"]
        return document
    return None


class Command(BaseCommand):
    help = _(
        "Centros pares (otros CAD): alta, lista, habilitar, deshabilitar, rotar secretos, leer su documento."
    )

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="action", required=True)
        add = commands.add_parser(
            "add", help=_("Registrar un centro par; imprime una vez la clave y el secreto que le emitimos")
        )
        add.add_argument("code")
        add.add_argument("--name", required=True)
        add.add_argument("--base-url", required=True)
        add.add_argument("--kind", choices=Peer.Kind.values, default=Peer.Kind.STATE)
        add.add_argument("--contact", default="", help=_("Mesa de contacto"))
        add.add_argument("--border-km", type=float, default=None)
        add.add_argument("--area-cvegeo", help=_("Área de servicio: límites INEGI importados (p. ej. 09)"))
        add.add_argument("--area-file", help=_("Área de servicio: archivo GeoJSON"))
        add.add_argument("--outbound-key-id", default="", help=_("Clave que el centro par nos emitió"))
        add.add_argument(
            "--outbound-secret-file", help=_("Archivo con el secreto que nos emitió (- = entrada estándar)")
        )
        add.add_argument("--disabled", action="store_true")
        commands.add_parser("list", help=_("Centros pares registrados"))
        for name, text in (
            ("enable", _("Habilitar: se le da acceso y se reanudan sus envíos")),
            ("disable", _("Deshabilitar: se corta su acceso y se pausan sus envíos")),
            ("refresh", _("Leer su documento /.well-known/cad-peer (nombre, área de servicio)")),
        ):
            commands.add_parser(name, help=text).add_argument(
                "code", help=_("Clave del centro par, p. ej. CDMX")
            )
        rotate = commands.add_parser(
            "rotate-secret", help=_("Nuevo secreto de recepción (o de envío con --outbound-*)")
        )
        rotate.add_argument("code")
        rotate.add_argument("--outbound-key-id", default="")
        rotate.add_argument("--outbound-secret-file")

    def handle(self, *args, action, **options):
        try:
            getattr(self, "do_" + action.replace("-", "_"))(**options)
        except DomainError as exc:
            raise CommandError(str(exc.message)) from exc

    def _print_issued(self, code: str, key_id: str, secret: str) -> None:
        self.stdout.write(
            self.style.WARNING(
                _("Entregue al administrador de %(code)s, por un canal seguro (no se volverán a mostrar):")
                % {"code": code}
            )
        )
        self.stdout.write(f"  key id: {key_id}\n  secret: {secret}")

    def do_add(
        self,
        *,
        code,
        name,
        base_url,
        kind,
        contact,
        border_km,
        outbound_key_id,
        outbound_secret_file,
        disabled,
        **options,
    ):
        area = _area(options)
        secret = _read_secret(outbound_secret_file) if outbound_secret_file else ""
        if bool(outbound_key_id) != bool(secret):
            raise CommandError(_("Indique juntos --outbound-key-id y --outbound-secret-file (o ninguno)."))
        self.stdout.write(_("Registrando %(code)s…") % {"code": code.upper()})
        peer, inbound_secret = services.peer_register(
            code=code,
            name=name,
            base_url=base_url,
            kind=kind,
            contact_desk=contact,
            service_area=area,
            border_km=border_km,
            enabled=not disabled,
            outbound_key_id=outbound_key_id,
            outbound_secret=secret,
        )
        self.stdout.write(self.style.SUCCESS(_("%(peer)s registrado.") % {"peer": peer}))
        if not area:
            self.stdout.write(_("Sin área de servicio: no habrá detección hasta `refresh` o --area-*."))
        if not secret:
            self.stdout.write(
                _(
                    "Sin credencial de envío: los mensajes a %(code)s esperarán a `rotate-secret --outbound-*`."
                )
                % {"code": peer.code}
            )
        self._print_issued(peer.code, peer.inbound_key_id, inbound_secret)

    def do_list(self, **options):
        peers = list(peer_list_for_admin())
        if not peers:
            self.stdout.write(_("No hay centros pares registrados."))
        for peer in peers:
            state = _("habilitado") if peer.enabled else _("DESHABILITADO")
            area = _("con área") if peer.service_area else _("sin área")
            down = ""
            if peer.unavailable_since:
                down = "  " + _(
                    "no toma nuestros mensajes desde %(since)s (%(n)s intentos fallidos; se prueba uno por "
                    "intervalo; vea el último error en el administrador)"
                ) % {
                    "since": timezone.localtime(peer.unavailable_since).strftime("%Y-%m-%d %H:%M:%S"),
                    "n": peer.failures,
                }
            self.stdout.write(
                f"{peer.code:8} {peer.kind:9} {state:13} {area:9} {peer.base_url}  "
                + _("%(n)s mensaje(s) pendiente(s)") % {"n": peer.pending}
                + down
            )

    def do_enable(self, *, code, **options):
        peer = services.peer_set_enabled(code=code, enabled=True)
        self.stdout.write(
            self.style.SUCCESS(_("%(code)s habilitado; se reanudan sus envíos.") % {"code": peer.code})
        )

    def do_disable(self, *, code, **options):
        peer = services.peer_set_enabled(code=code, enabled=False)
        self.stdout.write(
            self.style.SUCCESS(
                _("%(code)s deshabilitado: acceso cortado, envíos en pausa.") % {"code": peer.code}
            )
        )

    def do_rotate_secret(self, *, code, outbound_key_id, outbound_secret_file, **options):
        if outbound_key_id or outbound_secret_file:
            if not (outbound_key_id and outbound_secret_file):
                raise CommandError(_("Indique juntos --outbound-key-id y --outbound-secret-file."))
            peer = services.peer_set_outbound_credentials(
                code=code, key_id=outbound_key_id, secret=_read_secret(outbound_secret_file)
            )
            self.stdout.write(
                self.style.SUCCESS(_("Credencial de envío de %(code)s reemplazada.") % {"code": peer.code})
            )
            return
        key_id, secret = services.peer_rotate_inbound_secret(code=code)
        self.stdout.write(
            self.style.SUCCESS(
                _("Secreto de recepción de %(code)s rotado; el anterior ya no sirve.")
                % {"code": code.upper()}
            )
        )
        self._print_issued(code.upper(), key_id, secret)

    def do_refresh(self, *, code, **options):
        peer = Peer.objects.filter(code=code.upper()).first()
        if peer is None:
            raise CommandError(_("No existe el centro par %(code)s.") % {"code": code})
        self.stdout.write(_("Leyendo %(url)s/.well-known/cad-peer…") % {"url": peer.base_url})
        try:
            document = fetch_peer_document(peer)
        except (PeerUnavailable, PeerRefused) as exc:
            raise CommandError(
                _("No se pudo leer el documento de %(code)s: %(error)s") % {"code": peer.code, "error": exc}
            ) from exc
        peer = services.peer_apply_document(code=peer.code, document=document)
        area = _("área de servicio actualizada") if peer.service_area else _("sin área de servicio publicada")
        self.stdout.write(self.style.SUCCESS(_("%(peer)s: %(area)s.") % {"peer": peer, "area": area}))
