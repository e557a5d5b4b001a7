"""089 anonymous tips and their follow-up. Nothing here identifies the tipster: the folio and the short
code are random (secrets), the code is stored only as a keyed hash, and no model has a caller field."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Authority(models.Model):
    """A competent authority 089 tips are routed to (configurable per centre in the admin)."""

    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="tip_authorities")
    code = models.CharField(_("clave"), max_length=16)
    name = models.CharField(_("nombre"), max_length=200)
    contact = models.CharField(_("contacto"), max_length=300, blank=True)
    due_days = models.PositiveSmallIntegerField(_("plazo de atención (días)"), default=15)
    active = models.BooleanField(_("activa"), default=True)

    class Meta:
        verbose_name = _("autoridad competente (089)")
        verbose_name_plural = _("autoridades competentes (089)")
        constraints = [models.UniqueConstraint(fields=["center", "code"], name="uniq_tip_authority_code")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"


class TipStatus(models.TextChoices):
    RECEIVED = "received", _("Recibida")
    ROUTED = "routed", _("Canalizada")
    IN_PROGRESS = "in_progress", _("En atención")
    RESOLVED = "resolved", _("Atendida")
    DISMISSED = "dismissed", _("Improcedente")


TIP_TRANSITIONS = {
    TipStatus.RECEIVED: {TipStatus.ROUTED, TipStatus.DISMISSED},
    TipStatus.ROUTED: {TipStatus.IN_PROGRESS, TipStatus.RESOLVED, TipStatus.DISMISSED},
    TipStatus.IN_PROGRESS: {TipStatus.RESOLVED, TipStatus.DISMISSED},
    TipStatus.RESOLVED: set(),
    TipStatus.DISMISSED: set(),
}


class Tip(models.Model):
    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="tips")
    folio = models.CharField(_("folio de seguimiento"), max_length=20, unique=True)
    code_hash = models.CharField(max_length=64, editable=False)
    call = models.OneToOneField(
        "incidents.Call", on_delete=models.PROTECT, null=True, blank=True, related_name="tip"
    )
    incident_type = models.ForeignKey(
        "incidents.IncidentType", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    narrative = models.TextField(_("contenido de la denuncia"))
    address = models.CharField(_("dirección"), max_length=300, blank=True)
    lat = models.FloatField(null=True, blank=True)
    lon = models.FloatField(null=True, blank=True)
    status = models.CharField(
        _("estado"), max_length=16, choices=TipStatus.choices, default=TipStatus.RECEIVED
    )
    authority = models.ForeignKey(
        Authority, on_delete=models.PROTECT, null=True, blank=True, related_name="tips"
    )
    routed_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(_("fecha compromiso"), null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    created_by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+")

    class Meta:
        verbose_name = _("denuncia 089")
        verbose_name_plural = _("denuncias 089")
        indexes = [models.Index(fields=["center", "status", "due_at"], name="tip_queue")]

    def __str__(self) -> str:
        return self.folio


class TipUpdate(models.Model):
    """Append-only follow-up history of a tip (classification, routing, status changes, notes)."""

    tip = models.ForeignKey(Tip, on_delete=models.PROTECT, related_name="updates")
    at = models.DateTimeField()
    by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=TipStatus.choices)
    text = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]


class TipAccess(models.Model):
    """Audit of every access to tips: reads, lists, writes and call-back status look-ups (failed too)."""

    class Action(models.TextChoices):
        CREATE = "create", _("Registro")
        LIST = "list", _("Consulta de lista")
        READ = "read", _("Lectura")
        UPDATE = "update", _("Actualización")
        LOOKUP = "lookup", _("Consulta de estado por folio y código")
        LOOKUP_FAILED = "lookup_failed", _("Consulta de estado fallida")

    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(db_index=True)
    user = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    tip = models.ForeignKey(Tip, on_delete=models.PROTECT, null=True, blank=True, related_name="accesses")
    folio = models.CharField(max_length=20, blank=True, db_index=True)
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
