"""Plumbing models shared by every app: the command centre and its domain-event log."""

import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Center(models.Model):
    """A state command centre (C4/C5). Its `code` prefixes every public identifier it issues."""

    code = models.CharField(
        _("código"), max_length=8, unique=True, help_text=_("Prefijo estatal, p. ej. MEX")
    )
    name = models.CharField(_("nombre"), max_length=120)
    cve_ent = models.CharField(_("clave INEGI de la entidad"), max_length=2, blank=True)
    timezone = models.CharField(_("zona horaria"), max_length=64, default="America/Mexico_City")

    class Meta:
        verbose_name = _("centro de mando")
        verbose_name_plural = _("centros de mando")

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    @property
    def zone(self) -> ZoneInfo:
        """The centre's time zone (folio years, local hours); settings.TIME_ZONE if the name is unknown."""
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(settings.TIME_ZONE)


class EventStream(models.Model):
    """Per-centre, per-stream sequence counter. `record_event` increments it with an UPDATE that holds the
    row lock until commit, so seq order is commit order within a stream (autoincrement ids do not promise
    that)."""

    class Name(models.TextChoices):
        CONSOLE = "console", _("consola")
        AVL = "avl", _("posiciones AVL")

    center = models.ForeignKey(Center, on_delete=models.CASCADE, related_name="streams")
    name = models.CharField(max_length=16, choices=Name.choices)
    last_seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["center", "name"], name="uniq_stream_per_center")]


class Event(models.Model):
    """A domain event, written in the transaction of the change it describes. Append-only."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    center = models.ForeignKey(
        Center, verbose_name=_("centro"), on_delete=models.PROTECT, related_name="events"
    )
    stream = models.CharField(verbose_name=_("flujo"), max_length=16, choices=EventStream.Name.choices)
    seq = models.BigIntegerField(
        verbose_name=_("secuencia"),
    )
    type = models.CharField(verbose_name=_("tipo"), max_length=64)
    payload = models.JSONField(verbose_name=_("contenido"), default=dict)
    created_at = models.DateTimeField(
        verbose_name=_("creado"),
    )

    class Meta:
        verbose_name = _("evento")
        verbose_name_plural = _("eventos")
        constraints = [models.UniqueConstraint(fields=["center", "stream", "seq"], name="uniq_event_seq")]
        indexes = [models.Index(fields=["stream", "created_at"], name="event_retention")]  # prune_events
        ordering = ["center", "stream", "seq"]

    def envelope(self) -> dict:
        return {
            "type": self.type,
            "id": str(self.uid),
            "stream": self.stream,
            "seq": self.seq,
            "time": self.created_at.isoformat(),
            "payload": self.payload,
        }


class IdempotencyRecord(models.Model):
    """The answer to a POST sent with an `Idempotency-Key` header: a retry with the same key (after a cut
    connection) gets this answer again instead of doing the work twice. Written in the transaction of the
    work, so a key is recorded only with what it created."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=100)
    fingerprint = models.CharField(max_length=64)  # sha256 of method, path and body
    status = models.PositiveSmallIntegerField(default=0)
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="uniq_idempotency_key_per_user")]
