"""API tokens of service accounts (devices, peer states): issue / rotate / revoke / list.

    manage.py service_token issue  --user avl-gateway [--ttl-days N]
    manage.py service_token rotate --user avl-gateway [--ttl-days N] [--grace-hours H]
    manage.py service_token revoke --user avl-gateway [--prefix 3f9a1c2b]
    manage.py service_token list   [--user avl-gateway]

`issue` and `rotate` print the new token once, alone on standard output (pipe it where it goes); nothing is
logged and the database keeps only its digest. `list` never shows more than the first characters.
"""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import SERVICE_ROLES, User
from accounts.tokens import default_ttl, issue_token, list_tokens, revoke_tokens, rotate_tokens


def _service_user(username: str, *, active: bool = True) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(
            _(
                "No existe el usuario %(user)s. Créelo en el administrador con rol «Dispositivo» o «Estado "
                "vecino», o vea las cuentas con: manage.py service_token list"
            )
            % {"user": username}
        )
    if not user.is_service_account:
        raise CommandError(
            _(
                "%(user)s es una persona (rol %(role)s): los tokens son sólo para cuentas de servicio "
                "(dispositivos y estados vecinos). Las personas entran a la consola con su contraseña."
            )
            % {"user": username, "role": user.get_role_display()}
        )
    if active and not user.is_active:
        raise CommandError(
            _("La cuenta %(user)s está desactivada; actívela en el administrador primero.")
            % {"user": username}
        )
    return user


def _positive(value: str, *, allow_zero: bool, most: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1
    if not 0 <= number <= most or (number == 0 and not allow_zero):  # also NaN
        raise CommandError(
            _("Valor inválido: %(value)s (se espera un número positivo, hasta %(most)s).")
            % {"value": value, "most": f"{most:g}"}
        )
    return number


class Command(BaseCommand):
    help = _(
        "Tokens de API de las cuentas de servicio (dispositivos, estados vecinos): issue emite uno, rotate "
        "emite uno nuevo y vence los anteriores tras un periodo de gracia, revoke los retira, list los muestra "
        "(sin el secreto)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["issue", "rotate", "revoke", "list"])
        parser.add_argument("--user", dest="username", default="")
        parser.add_argument(
            "--ttl-days",
            default="",
            help=_("Vigencia del token nuevo en días (por omisión CAD_TOKEN_TTL_DAYS)."),
        )
        parser.add_argument(
            "--grace-hours",
            default="24",
            help=_("rotate: horas que los tokens anteriores siguen valiendo (0: vencen de inmediato)."),
        )
        parser.add_argument(
            "--prefix", default="", help=_("revoke: sólo el token que empieza así (ver list).")
        )

    def handle(self, *args, action, username, ttl_days, grace_hours, prefix, **options):
        if action == "list":
            self._list(username)
            return
        if not username:
            raise CommandError(_("Indique la cuenta de servicio con --user NOMBRE."))
        user = _service_user(username, active=action != "revoke")
        ttl = timedelta(days=_positive(ttl_days, allow_zero=False, most=3650)) if ttl_days else default_ttl()
        if action == "issue":
            token = issue_token(user, ttl)
        elif action == "rotate":
            grace = timedelta(hours=_positive(grace_hours, allow_zero=True, most=24 * 365))
            token = rotate_tokens(user, grace=grace, ttl=ttl)
            self.stderr.write(
                _("Los tokens anteriores de %(user)s vencen el %(at)s.")
                % {"user": username, "at": f"{timezone.localtime(timezone.now() + grace):%Y-%m-%d %H:%M}"}
            )
        else:
            count = revoke_tokens(user, prefix=prefix)
            if prefix and not count:
                raise CommandError(
                    _(
                        "%(user)s no tiene un token que empiece con %(prefix)s; vea: manage.py service_token list"
                    )
                    % {"user": username, "prefix": prefix}
                )
            self.stdout.write(
                _("%(count)s token(s) revocado(s) de %(user)s.") % {"count": count, "user": username}
            )
            return
        # The secret alone on stdout (for a pipe); what it is goes to stderr. Shown once: only a digest is kept.
        self.stderr.write(
            _("Token nuevo de %(user)s (se muestra sólo esta vez; configúrelo en el dispositivo):")
            % {"user": username}
        )
        self.stdout.write(token)

    def _list(self, username: str):
        users = User.objects.filter(role__in=SERVICE_ROLES)
        if username:
            users = users.filter(pk=_service_user(username, active=False).pk)
        rows = list_tokens(users)
        if not rows:
            self.stdout.write(_("No hay tokens de cuentas de servicio."))
            return
        user, prefix, issued, expires = _("usuario"), _("prefijo"), _("emitido"), _("vence")
        self.stdout.write(f"{user:<20} {prefix:<10} {issued:<17} {expires:<17}")
        for row in rows:
            expiry = f"{timezone.localtime(row.expiry):%Y-%m-%d %H:%M}" if row.expiry else _("nunca")
            state = _("vencido") if row.expired else ""
            self.stdout.write(
                f"{row.username:<20} {row.prefix:<10} {timezone.localtime(row.created):%Y-%m-%d %H:%M} "
                f"{expiry:<17} {state}".rstrip()
            )
