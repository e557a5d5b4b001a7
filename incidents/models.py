import uuid

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Priority(models.TextChoices):
    ALTA = "ALTA", _("Alta")
    MEDIA = "MEDIA", _("Media")
    BAJA = "BAJA", _("Baja")


PRIORITY_RANK = {Priority.ALTA: 1, Priority.MEDIA: 2, Priority.BAJA: 3}
IMPROCEDENTE_TIPO = "7"


class SubtypeResponsePlan(models.Model):
    """Default response plan of a CNIE subtipo: which unit capabilities it needs, e.g. {"ambulance": 1}."""

    subtipo_code = models.CharField(_("subtipo"), max_length=3, unique=True)
    plan = models.JSONField(_("plan de respuesta"), default=dict)

    class Meta:
        verbose_name = _("plan de respuesta por subtipo")
        verbose_name_plural = _("planes de respuesta por subtipo")

    def __str__(self) -> str:
        return f"{self.subtipo_code}: {self.plan}"


class IncidentType(models.Model):
    """One entry of the Catálogo Nacional de Incidentes de Emergencia (CNIE, SESNSP)."""

    code = models.CharField(_("clave"), max_length=5, unique=True)
    name = models.CharField(_("incidente"), max_length=200)
    tipo_code = models.CharField(_("tipo"), max_length=1)
    tipo_name = models.CharField(_("nombre del tipo"), max_length=80)
    subtipo_code = models.CharField(_("subtipo"), max_length=3, db_index=True)
    subtipo_name = models.CharField(_("nombre del subtipo"), max_length=120)
    priority = models.CharField(_("prioridad"), max_length=5, choices=Priority.choices)
    definition = models.TextField(_("definición"), blank=True)
    response_plan = models.JSONField(
        _("plan de respuesta propio"), null=True, blank=True, help_text=_("Vacío: usa el plan del subtipo")
    )
    active = models.BooleanField(_("vigente"), default=True)
    catalogue_edition = models.CharField(_("edición del catálogo"), max_length=40, blank=True)

    class Meta:
        verbose_name = _("tipo de incidente (CNIE)")
        verbose_name_plural = _("catálogo de incidentes (CNIE)")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def is_improcedente(self) -> bool:
        return self.tipo_code == IMPROCEDENTE_TIPO


class FolioCounter(models.Model):
    center = models.ForeignKey("cad.Center", on_delete=models.CASCADE)
    year = models.PositiveSmallIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["center", "year"], name="uniq_folio_counter")]


class Line(models.TextChoices):
    EMERGENCY = "911", "9-1-1"
    ANONYMOUS = "089", "089"


class IncidentStatus(models.TextChoices):
    """The incident lifecycle's statuses; the allowed transitions and timers are in incidents.lifecycle."""

    PENDING = "pending", _("Pendiente")
    DISPATCHED = "dispatched", _("Despachado")
    EN_ROUTE = "en_route", _("En camino")
    ON_SCENE = "on_scene", _("En el lugar")
    ATTENDED = "attended", _("Atendido, por cerrar")
    CLOSED = "closed", _("Cerrado")


class LocationSource(models.TextChoices):
    CALLER = "caller", _("Dicho por quien llama")
    DEVICE = "device", _("Ubicación del dispositivo (AML)")
    MAP = "map", _("Marcado en el mapa")
    CARRIER = "carrier", _("Operador telefónico")
    SENSOR = "sensor", _("Sensor")
    GEOCODER = "geocoder", _("Dirección o lugar buscado")


# Where the tipster's own handset is: never for 089 (it would locate an anonymous caller).
CALLER_DEVICE_SOURCES = frozenset({LocationSource.DEVICE, LocationSource.CARRIER})


class IncidentQuerySet(models.QuerySet):
    def with_places(self):
        """Joined with its state and municipality for their names; their boundaries (GeoJSON of up to tens of
        kB, parsed on every load) are left out — geo.locator keeps its own prepared copy."""
        return self.select_related("state", "municipality").defer("state__geometry", "municipality__geometry")


class Incident(models.Model):
    folio = models.CharField(_("folio"), max_length=32, unique=True)
    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="incidents")
    incident_type = models.ForeignKey(IncidentType, on_delete=models.PROTECT, related_name="incidents")
    # What the incident was created with: later catalogue editions never rewrite these.
    type_code = models.CharField(_("clave CNIE"), max_length=5)
    type_name = models.CharField(_("incidente"), max_length=200)
    priority = models.CharField(_("prioridad"), max_length=5, choices=Priority.choices)
    priority_rank = models.PositiveSmallIntegerField()
    status = models.CharField(
        _("estado"), max_length=16, choices=IncidentStatus.choices, default=IncidentStatus.PENDING
    )
    lat = models.FloatField(null=True, blank=True)
    lon = models.FloatField(null=True, blank=True)
    address = models.CharField(_("dirección"), max_length=300, blank=True)
    location_source = models.CharField(
        _("origen de la ubicación"), max_length=16, choices=LocationSource.choices, blank=True
    )
    outside_service_area = models.BooleanField(
        _("fuera del área de servicio"),
        default=False,
        help_text=_("La ubicación cae fuera del área del centro y se confirmó así."),
    )
    state = models.ForeignKey(
        "geo.Jurisdiction", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    municipality = models.ForeignKey(
        "geo.Jurisdiction", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    narrative = models.TextField(_("narrativa"), blank=True)
    # The line of the call that opened it ("" when no call did, e.g. escalated by another state): KPIs group
    # by it without looking for each incident's first call.
    line = models.CharField(_("línea"), max_length=3, choices=Line.choices, blank=True, default="")
    # CAD intervals (UTC).
    call_arrived_at = models.DateTimeField(null=True, blank=True)
    call_answered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField()
    first_dispatched_at = models.DateTimeField(null=True, blank=True)
    first_en_route_at = models.DateTimeField(null=True, blank=True)
    first_on_scene_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    reopened_at = models.DateTimeField(null=True, blank=True)
    disposition = models.CharField(_("cierre"), max_length=200, blank=True)
    created_by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+")
    # Set when the incident was opened on behalf of another command centre (e.g. a neighbouring state's
    # request for service): that centre's code and its own folio for the incident.
    origin_center = models.CharField(_("centro de origen"), max_length=16, blank=True)
    origin_folio = models.CharField(_("folio de origen"), max_length=64, blank=True)
    # Set while another command centre has taken charge of the incident (it accepted our request for service):
    # that centre's code. Its dispatch clock is not ours to run, so no delay alarm and no overdue KPI here.
    handled_by_center = models.CharField(_("atendido por el centro"), max_length=16, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        verbose_name = _("incidente")
        verbose_name_plural = _("incidentes")
        indexes = [
            models.Index(fields=["center", "status", "priority_rank", "opened_at"], name="incident_queue"),
            models.Index(fields=["opened_at"], name="incident_opened"),
            # KPIs count the open incidents still waiting for a first unit (dashboard.kpis._count_overdue):
            # few rows at any time, so a partial index keeps that look-up off a scan of the month.
            models.Index(
                fields=["center", "opened_at"],
                name="incident_undispatched_open",
                condition=models.Q(first_dispatched_at__isnull=True) & ~models.Q(status="closed"),
            ),
        ]

    def __str__(self) -> str:
        return self.folio


class Channel(models.TextChoices):
    VOICE = "voice", _("Voz")
    SMS = "sms", _("SMS")
    PANIC_BUTTON = "panic_button", _("Botón de pánico")
    LPR_HIT = "lpr_hit", _("Alerta de arco lector de placas")
    INTERSTATE = "interstate", _("Otro estado")
    APP = "app", _("Aplicación")


class CallDisposition(models.TextChoices):
    NEW_INCIDENT = "new_incident", _("Nuevo incidente")
    LINKED = "linked", _("Vinculada a incidente existente")
    IMPROCEDENTE = "improcedente", _("Improcedente")
    INFORMATIONAL = "informational", _("Informativa")
    TRANSFERRED = "transferred", _("Transferida")


class Call(models.Model):
    """A 9-1-1 call or an 089 anonymous tip. For 089 the caller's identity cannot be stored: the
    database refuses it (check constraint), as do the serializer, the admin and the logs."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="calls")
    line = models.CharField(_("línea"), max_length=3, choices=Line.choices)
    channel = models.CharField(_("canal"), max_length=16, choices=Channel.choices, default=Channel.VOICE)
    arrived_at = models.DateTimeField(_("llegada"))
    answered_at = models.DateTimeField(_("contestada"), null=True, blank=True)
    released_at = models.DateTimeField(_("liberada"), null=True, blank=True)
    caller_name = models.CharField(_("nombre de quien llama"), max_length=160, null=True, blank=True)
    callback_number = models.CharField(_("número de devolución"), max_length=20, null=True, blank=True)
    lat = models.FloatField(null=True, blank=True)
    lon = models.FloatField(null=True, blank=True)
    address = models.CharField(_("dirección"), max_length=300, blank=True)
    location_source = models.CharField(max_length=16, choices=LocationSource.choices, blank=True)
    location_accuracy_m = models.FloatField(null=True, blank=True)
    narrative = models.TextField(_("narrativa"), blank=True)
    incident_type = models.ForeignKey(
        IncidentType, on_delete=models.PROTECT, null=True, blank=True, related_name="calls"
    )
    disposition = models.CharField(_("resolución"), max_length=16, choices=CallDisposition.choices)
    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, null=True, blank=True, related_name="calls"
    )
    call_taker = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("llamada")
        verbose_name_plural = _("llamadas")
        constraints = [
            models.CheckConstraint(
                condition=~Q(line=Line.ANONYMOUS)
                | (Q(caller_name__isnull=True) & Q(callback_number__isnull=True)),
                name="anonymous_089_has_no_caller_identity",
            ),
        ]
        indexes = [models.Index(fields=["arrived_at"], name="call_arrived")]

    def __str__(self) -> str:
        return f"{self.line} {self.uid}"


class AssignmentStatus(models.TextChoices):
    DISPATCHED = "dispatched", _("Despachada")
    EN_ROUTE = "en_route", _("En camino")
    ON_SCENE = "on_scene", _("En el lugar")
    TRANSPORTING = "transporting", _("Trasladando")
    AT_HOSPITAL = "at_hospital", _("En hospital")
    CLEARED = "cleared", _("Liberada")


class Assignment(models.Model):
    """A unit working an incident. A unit holds at most one active assignment (unique partial index)."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="assignments")
    unit = models.ForeignKey("units.Unit", on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(
        max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.DISPATCHED
    )
    active = models.BooleanField(default=True)
    dispatched_at = models.DateTimeField()
    en_route_at = models.DateTimeField(null=True, blank=True)
    on_scene_at = models.DateTimeField(null=True, blank=True)
    transporting_at = models.DateTimeField(null=True, blank=True)
    at_hospital_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    assigned_by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["unit"], condition=Q(active=True), name="one_active_assignment_per_unit"
            )
        ]
        ordering = ["dispatched_at", "id"]


class TimelineEntry(models.Model):
    """Append-only incident timeline: who, when, what. Notes are entries of kind NOTE."""

    class Kind(models.TextChoices):
        CREATED = "created", _("Creación")
        CALL_LINKED = "call_linked", _("Llamada vinculada")
        NOTE = "note", _("Nota")
        ASSIGNED = "assigned", _("Unidad asignada")
        UNIT_STATUS = "unit_status", _("Estado de unidad")
        UPDATED = "updated", _("Actualización")
        LOCATED = "located", _("Ubicación")
        STATUS = "status", _("Cambio de estado")
        CLOSED = "closed", _("Cierre")
        REOPENED = "reopened", _("Reapertura")

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="timeline")
    at = models.DateTimeField()
    by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Timeline entries are append-only")
        super().save(*args, **kwargs)
