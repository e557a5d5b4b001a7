from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    CALL_TAKER = "call_taker", _("Operador de llamadas")
    DISPATCHER = "dispatcher", _("Despachador")
    SUPERVISOR = "supervisor", _("Supervisor")
    ADMINISTRATOR = "administrator", _("Administrador")
    DEVICE = "device", _("Dispositivo (AVL, botón de pánico, LPR)")
    PEER = "peer", _("Estado vecino (CAD par)")
    TIPS_089 = "tips_089", _("Operador 089 (seguimiento de denuncias)")


HUMAN_ROLES = (Role.CALL_TAKER, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMINISTRATOR, Role.TIPS_089)
SERVICE_ROLES = (Role.DEVICE, Role.PEER)


class User(AbstractUser):
    """A person at a console, or a service account (device or peer state) that authenticates by token."""

    role = models.CharField(_("rol"), max_length=20, choices=Role.choices, default=Role.CALL_TAKER)
    center = models.ForeignKey(
        "cad.Center",
        verbose_name=_("centro"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="users",
    )
    language = models.CharField(
        _("idioma"), max_length=8, blank=True, help_text=_("Elegido en el selector; vacío: español (México).")
    )

    @property
    def is_service_account(self) -> bool:
        return self.role in SERVICE_ROLES

    def has_role(self, *roles: str) -> bool:
        return self.is_active and self.role in roles

    @property
    def signature(self) -> str:
        """How a timeline entry names its author: a peer centre's service account by the centre's name (set as
        its first name when the peer is registered), not "peer-cdmx"; a person by their username."""
        if self.role == Role.PEER and self.first_name:
            return self.first_name
        return self.get_username()
