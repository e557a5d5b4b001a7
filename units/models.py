from django.db import models
from django.utils.translation import gettext_lazy as _


class Agency(models.Model):
    class Kind(models.TextChoices):
        POLICE = "police", _("Policía")
        AMBULANCE = "ambulance", _("Servicios médicos")
        FIRE = "fire", _("Bomberos")
        CIVIL_PROTECTION = "civil_protection", _("Protección Civil")
        NATIONAL_GUARD = "national_guard", _("Guardia Nacional")
        OTHER = "other", _("Otra")

    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="agencies")
    code = models.CharField(_("código"), max_length=16)
    name = models.CharField(_("nombre"), max_length=120)
    kind = models.CharField(_("tipo"), max_length=24, choices=Kind.choices)
    speed_kmh = models.FloatField(_("velocidad media (km/h)"), default=40.0)

    class Meta:
        verbose_name = _("corporación")
        verbose_name_plural = _("corporaciones")
        constraints = [models.UniqueConstraint(fields=["center", "code"], name="uniq_agency_code")]

    def __str__(self) -> str:
        return self.name


class Capability(models.Model):
    """What a unit can do (ambulance, patrol, fire engine, rescue…); response plans ask for these."""

    code = models.SlugField(_("código"), max_length=32, unique=True)
    name = models.CharField(_("nombre"), max_length=80)

    class Meta:
        verbose_name = _("capacidad")
        verbose_name_plural = _("capacidades")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Station(models.Model):
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="stations")
    name = models.CharField(_("nombre"), max_length=120)
    lat = models.FloatField()
    lon = models.FloatField()

    class Meta:
        verbose_name = _("base")
        verbose_name_plural = _("bases")

    def __str__(self) -> str:
        return self.name


class UnitStatus(models.TextChoices):
    AVAILABLE = "available", _("Disponible")
    DISPATCHED = "dispatched", _("Despachada")
    EN_ROUTE = "en_route", _("En camino")
    ON_SCENE = "on_scene", _("En el lugar")
    TRANSPORTING = "transporting", _("Trasladando")
    AT_HOSPITAL = "at_hospital", _("En hospital")
    OUT_OF_SERVICE = "out_of_service", _("Fuera de servicio")
    OFF_DUTY = "off_duty", _("Franco / fuera de turno")


# Statuses a unit may move to from each status by a status change. DISPATCHED is reached only by an
# assignment (units.services / incidents.services.assign_unit), never by a bare status change.
UNIT_TRANSITIONS: dict[str, frozenset[str]] = {
    UnitStatus.AVAILABLE: frozenset({UnitStatus.OUT_OF_SERVICE, UnitStatus.OFF_DUTY}),
    UnitStatus.DISPATCHED: frozenset({UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE, UnitStatus.AVAILABLE}),
    UnitStatus.EN_ROUTE: frozenset({UnitStatus.ON_SCENE, UnitStatus.AVAILABLE}),
    UnitStatus.ON_SCENE: frozenset({UnitStatus.TRANSPORTING, UnitStatus.AVAILABLE}),
    UnitStatus.TRANSPORTING: frozenset({UnitStatus.AT_HOSPITAL, UnitStatus.AVAILABLE}),
    UnitStatus.AT_HOSPITAL: frozenset({UnitStatus.AVAILABLE}),
    UnitStatus.OUT_OF_SERVICE: frozenset({UnitStatus.AVAILABLE, UnitStatus.OFF_DUTY}),
    UnitStatus.OFF_DUTY: frozenset({UnitStatus.AVAILABLE, UnitStatus.OUT_OF_SERVICE}),
}
ASSIGNED_STATUSES = frozenset(
    {
        UnitStatus.DISPATCHED,
        UnitStatus.EN_ROUTE,
        UnitStatus.ON_SCENE,
        UnitStatus.TRANSPORTING,
        UnitStatus.AT_HOSPITAL,
    }
)


class Unit(models.Model):
    # No index of its own: (center, callsign) and (center, status, lat, lon) lead with it, and every AVL move
    # of a unit rewrites each index of the row (lat and lon are indexed, so the update cannot be HOT).
    center = models.ForeignKey("cad.Center", on_delete=models.PROTECT, related_name="units", db_index=False)
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="units")
    station = models.ForeignKey(
        Station, on_delete=models.SET_NULL, null=True, blank=True, related_name="units"
    )
    callsign = models.CharField(_("indicativo"), max_length=32)
    capabilities = models.ManyToManyField(Capability, related_name="units", blank=True)
    status = models.CharField(
        _("estado"), max_length=20, choices=UnitStatus.choices, default=UnitStatus.AVAILABLE
    )
    status_changed_at = models.DateTimeField(_("cambio de estado"))
    lat = models.FloatField(null=True, blank=True)
    lon = models.FloatField(null=True, blank=True)
    position_at = models.DateTimeField(_("última posición AVL"), null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        verbose_name = _("unidad")
        verbose_name_plural = _("unidades")
        constraints = [models.UniqueConstraint(fields=["center", "callsign"], name="uniq_unit_callsign")]
        indexes = [models.Index(fields=["center", "status", "lat", "lon"], name="unit_available_geo")]
        ordering = ["callsign"]

    def __str__(self) -> str:
        return self.callsign


class UnitStatusChange(models.Model):
    unit = models.ForeignKey(Unit, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=20, choices=UnitStatus.choices)
    to_status = models.CharField(max_length=20, choices=UnitStatus.choices)
    at = models.DateTimeField()
    by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, null=True, blank=True)
    incident = models.ForeignKey("incidents.Incident", on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["unit", "at"])]


class AvlPosition(models.Model):
    """Track of every AVL fix. Retention is by age (see the prune command)."""

    unit = models.ForeignKey(Unit, on_delete=models.CASCADE, related_name="positions", db_constraint=False)
    recorded_at = models.DateTimeField()
    lat = models.FloatField()
    lon = models.FloatField()
    speed_kmh = models.FloatField(null=True, blank=True)
    heading = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["unit", "recorded_at"], name="avl_unit_time")]
