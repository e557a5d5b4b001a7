"""Sensors that feed the centre without a call-taker: citizen panic buttons (SIA DC-09 or HTTP) and
licence-plate readers (LPR arches) with hotlists. Both are supervised devices with a heartbeat."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class SupervisedDevice(models.Model):
    """Location, heartbeat and online state shared by panic buttons and plate readers."""

    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(_("nombre"), max_length=120)
    lat = models.FloatField()
    lon = models.FloatField()
    address = models.CharField(_("dirección"), max_length=300, blank=True)
    heartbeat_s = models.PositiveIntegerField(
        _("intervalo de supervisión (s)"),
        default=300,
        help_text=_("Se declara sin señal tras 2.5 intervalos."),
    )
    last_seen_at = models.DateTimeField(_("última señal"), null=True, blank=True)
    online = models.BooleanField(_("en línea"), default=True)
    active = models.BooleanField(_("activo"), default=True)
    registered_at = models.DateTimeField(_("alta"), auto_now_add=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class PanicButton(SupervisedDevice):
    """A citizen panic button (botón de enlace ciudadano). `account` is its SIA DC-09 account number;
    IP buttons post with the same account through the HTTP device endpoint."""

    account = models.CharField(
        _("cuenta DC-09"), max_length=16, unique=True, help_text=_("3 a 16 dígitos hexadecimales.")
    )
    aes_key = models.CharField(
        _("clave AES"),
        max_length=32,
        blank=True,
        help_text=_(
            "Vacía: sin cifrado. 16, 24 o 32 caracteres (AES-128/192/256) como los programa el panel."
        ),
    )
    agency = models.ForeignKey(
        "units.Agency",
        verbose_name=_("corporación responsable"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    camera_ref = models.CharField(_("cámara"), max_length=300, blank=True)
    incident_type = models.ForeignKey(
        "incidents.IncidentType",
        verbose_name=_("tipo de incidente (CNIE)"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Vacío: el tipo configurado para todo el centro (CAD_PANIC_INCIDENT_TYPE)."),
    )

    class Meta:
        verbose_name = _("botón de pánico")
        verbose_name_plural = _("botones de pánico")
        indexes = [models.Index(fields=["center", "active", "online"], name="panic_button_supervision")]


class PanicSignal(models.Model):
    """History of a button: presses (with the incident they opened or joined), other alarm codes, and
    the supervision transitions. Plain heartbeats only move `last_seen_at`."""

    class Kind(models.TextChoices):
        PRESS = "press", _("Activación")
        SIGNAL = "signal", _("Otra señal")
        OFFLINE = "offline", _("Sin señal")
        ONLINE = "online", _("Señal restablecida")

    class Transport(models.TextChoices):
        DC09 = "dc09", "SIA DC-09"
        HTTP = "http", "HTTP"
        SUPERVISION = "supervision", _("Supervisión")

    button = models.ForeignKey(PanicButton, on_delete=models.CASCADE, related_name="signals")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    code = models.CharField(_("código SIA"), max_length=8, blank=True)
    transport = models.CharField(max_length=12, choices=Transport.choices)
    received_at = models.DateTimeField()
    device_time = models.DateTimeField(null=True, blank=True)
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    merged = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["button", "-received_at"], name="panic_signal_history")]
        ordering = ["-received_at", "-id"]


class Direction(models.TextChoices):
    NORTH = "N", _("Norte")
    SOUTH = "S", _("Sur")
    EAST = "E", _("Oriente")
    WEST = "W", _("Poniente")
    BOTH = "B", _("Ambos sentidos")


class LprReader(SupervisedDevice):
    """A licence-plate reader (arch). A read batch counts as a heartbeat."""

    code = models.CharField(_("clave"), max_length=32, unique=True)
    direction = models.CharField(_("sentido de circulación"), max_length=1, choices=Direction.choices)
    road = models.CharField(_("vialidad"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("arco lector de placas")
        verbose_name_plural = _("arcos lectores de placas")


class LprRead(models.Model):
    """A raw read, kept for CAD_LPR_RETENTION_DAYS and purged by a periodic task (hits keep a copy).

    High-volume telemetry (tens of thousands of rows a second at peak), written only by
    `sensors.lpr.ingest_reads`, which resolves the reader in the same request. So `reader` has neither a
    database foreign-key constraint nor an index of its own: the deferred FK check (one trigger query per
    row at commit) and the low-cardinality reader index were about two thirds of the database cost of
    storing a batch. Readers are retired with `active=False`; deleting one still removes its reads
    (Django's cascade, a scan of the table: a rare administrative act)."""

    reader = models.ForeignKey(
        LprReader, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    plate = models.CharField(_("placa"), max_length=16)
    plate_key = models.CharField(max_length=16)
    read_at = models.DateTimeField()
    confidence = models.FloatField(null=True, blank=True)
    vehicle = models.JSONField(default=dict, blank=True)
    image_ref = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["read_at"], name="lpr_read_time")]
        constraints = [
            # A re-sent read is stored once (ingest inserts with ON CONFLICT DO NOTHING); the same index
            # serves a plate's track (plate_key = … AND read_at >= …).
            models.UniqueConstraint(fields=["plate_key", "read_at", "reader"], name="uniq_lpr_read")
        ]


class Hotlist(models.Model):
    class Kind(models.TextChoices):
        STOLEN = "stolen", _("Vehículo robado")
        CARGO_THEFT = "cargo_theft", _("Robo de transporte de carga")
        BOLO = "bolo", _("Búsqueda (BOLO)")

    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(_("tipo"), max_length=16, choices=Kind.choices)
    name = models.CharField(_("nombre"), max_length=120)
    source = models.CharField(_("fuente"), max_length=120, help_text=_("p. ej. REPUVE, FGJEM, aseguradora"))
    owner = models.ForeignKey(
        "accounts.User", verbose_name=_("responsable"), on_delete=models.PROTECT, related_name="+"
    )
    shared = models.BooleanField(
        _("compartida con otros estados"),
        default=False,
        help_text=_("Sus placas se publican a los CAD pares."),
    )
    active = models.BooleanField(_("activa"), default=True)
    peer = models.CharField(
        _("centro par"),
        max_length=16,
        blank=True,
        editable=False,
        help_text=_("Vacío: lista propia; clave del centro par que la comparte con nosotros."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("lista de placas de interés")
        verbose_name_plural = _("listas de placas de interés")
        constraints = [
            # A peer's shared entries: one list per peer and kind (sensors.shared).
            models.UniqueConstraint(
                fields=["center", "peer", "kind"], condition=~models.Q(peer=""), name="one_list_per_peer_kind"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"


class HotlistEntry(models.Model):
    # No index of its own: uniq_hotlist_plate (hotlist, plate_key) leads with it (one index less to keep
    # up on a 1,000,000-row import).
    hotlist = models.ForeignKey(Hotlist, on_delete=models.CASCADE, related_name="entries", db_index=False)
    plate = models.CharField(_("placa"), max_length=16)
    plate_key = models.CharField(max_length=16, db_index=True)
    reason = models.CharField(_("motivo"), max_length=300, blank=True)
    source_ref = models.CharField(_("referencia de la fuente"), max_length=120, blank=True)
    owner = models.CharField(_("solicitante"), max_length=120, blank=True)
    valid_from = models.DateTimeField(_("vigente desde"))
    valid_until = models.DateTimeField(_("vigente hasta"), null=True, blank=True)
    vehicle = models.JSONField(default=dict, blank=True)
    # On a peer's list: the alert id the peer published it under (sightings go back with it).
    remote_id = models.CharField(max_length=100, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hotlist", "plate_key"], name="uniq_hotlist_plate")]
        indexes = [
            models.Index(
                fields=["remote_id"], condition=~models.Q(remote_id=""), name="hotlist_entry_remote_id"
            )
        ]


class LprHit(models.Model):
    """A read that matched a hotlist entry. It copies what it needs (the raw read may be purged) and stays
    with the incident it opened."""

    class Status(models.TextChoices):
        NEW = "new", _("Nueva")
        ACKNOWLEDGED = "acknowledged", _("Atendida")
        INCIDENT = "incident", _("Con incidente")
        DISMISSED = "dismissed", _("Descartada")

    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="+")
    read = models.ForeignKey(LprRead, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    entry = models.ForeignKey(
        HotlistEntry, on_delete=models.SET_NULL, null=True, blank=True, related_name="hits"
    )
    reader = models.ForeignKey(LprReader, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    plate = models.CharField(max_length=16)
    read_plate = models.CharField(max_length=16)
    hotlist_kind = models.CharField(max_length=16, choices=Hotlist.Kind.choices)
    reason = models.CharField(max_length=300, blank=True)
    vehicle = models.JSONField(default=dict, blank=True)
    read_at = models.DateTimeField()
    lat = models.FloatField()
    lon = models.FloatField()
    place = models.CharField(max_length=300, blank=True)
    origin = models.CharField(
        _("origen"),
        max_length=16,
        blank=True,
        help_text=_("Vacío: arco propio; clave del estado par si vino de otro."),
    )
    list_owner = models.CharField(
        _("lista de"),
        max_length=16,
        blank=True,
        help_text=_("Vacío: lista propia; clave del centro par dueño de la lista."),
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["center", "status", "-created_at"], name="lpr_hit_queue")]
        ordering = ["-created_at", "-id"]
