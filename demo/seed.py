"""Demo data: a command centre with its catalogue, boundaries, agencies, stations, units and one user per
role. Idempotent: running it again updates what exists and only adds what is missing.

Demo credentials are for demonstrations only; never seed a production database with them.
"""

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Role, User
from cad.errors import DomainError
from cad.models import Center, EventStream
from geo.services import SAMPLE_DIR, import_geojson_file, import_localities_file, shipped_files
from incidents.catalogue import (
    CAPABILITY_NAMES,
    DEFAULT_EDITION,
    import_catalogue,
    read_catalogue_csv,
)
from units.models import Agency, Capability, Station, Unit, UnitStatus

DEFAULT_DEMO_PASSWORD = "c4-demo-2026"  # noqa: S105 - documented demo password; never for production
PASSWORD_ENV = "CAD_DEMO_PASSWORD"  # noqa: S105 - the variable name, not a secret
RANDOM_SEED = 2026

TOLUCA = (19.2826, -99.6557)
ECATEPEC = (19.6018, -99.0507)
# Ciudad de México: borough centres well inside the city's boundary (≥ 7 km from it), so every demo unit is
# located in CDMX.
CUAUHTEMOC = (19.4326, -99.1332)
COYOACAN = (19.3467, -99.1617)
TLALPAN = (19.2900, -99.1700)

# Station offsets (degrees) around each city.
_AROUND = [(0.0, 0.0), (0.025, 0.03), (-0.03, 0.02), (0.02, -0.035)]


@dataclass(frozen=True)
class AgencySpec:
    code: str
    name: str
    kind: str
    speed_kmh: float
    prefix: str
    first_number: int
    weight: float
    capabilities: tuple[str, ...]
    cities: tuple[tuple[str, tuple[float, float]], ...]


MEX_AGENCIES = (
    AgencySpec(
        "PE",
        "Policía Estatal",
        Agency.Kind.POLICE,
        45.0,
        "PE",
        101,
        0.28,
        ("patrol",),
        (("Toluca", TOLUCA), ("Ecatepec", ECATEPEC)),
    ),
    AgencySpec(
        "PMT",
        "Policía Municipal Toluca",
        Agency.Kind.POLICE,
        45.0,
        "PMT",
        1,
        0.14,
        ("patrol",),
        (("Toluca", TOLUCA),),
    ),
    AgencySpec(
        "PME",
        "Policía Municipal Ecatepec",
        Agency.Kind.POLICE,
        45.0,
        "PME",
        1,
        0.14,
        ("patrol",),
        (("Ecatepec", ECATEPEC),),
    ),
    AgencySpec(
        "ERUM",
        "ERUM / Cruz Roja",
        Agency.Kind.AMBULANCE,
        50.0,
        "AMB",
        1,
        0.16,
        ("ambulance",),
        (("Toluca", TOLUCA), ("Ecatepec", ECATEPEC)),
    ),
    AgencySpec(
        "BOM",
        "Bomberos",
        Agency.Kind.FIRE,
        40.0,
        "BOM",
        1,
        0.09,
        ("fire_engine", "rescue"),
        (("Toluca", TOLUCA), ("Ecatepec", ECATEPEC)),
    ),
    AgencySpec(
        "PC",
        "Protección Civil",
        Agency.Kind.CIVIL_PROTECTION,
        40.0,
        "PC",
        1,
        0.07,
        ("civil_protection", "rescue"),
        (("Toluca", TOLUCA), ("Ecatepec", ECATEPEC)),
    ),
    AgencySpec(
        "GN",
        "Guardia Nacional",
        Agency.Kind.NATIONAL_GUARD,
        60.0,
        "GN",
        1,
        0.12,
        ("patrol",),
        (("Toluca", TOLUCA), ("Ecatepec", ECATEPEC)),
    ),
)

CDMX_CITIES = (("Cuauhtémoc", CUAUHTEMOC), ("Coyoacán", COYOACAN), ("Tlalpan", TLALPAN))
CDMX_AGENCIES = (
    AgencySpec(
        "SSC",
        "Secretaría de Seguridad Ciudadana",
        Agency.Kind.POLICE,
        45.0,
        "SSC",
        101,
        0.45,
        ("patrol",),
        CDMX_CITIES,
    ),
    AgencySpec(
        "ERUM",
        "Escuadrón de Rescate y Urgencias Médicas",
        Agency.Kind.AMBULANCE,
        50.0,
        "ERUM",
        1,
        0.2,
        ("ambulance",),
        CDMX_CITIES,
    ),
    AgencySpec(
        "HCB",
        "Heroico Cuerpo de Bomberos",
        Agency.Kind.FIRE,
        40.0,
        "HCB",
        1,
        0.15,
        ("fire_engine", "rescue"),
        CDMX_CITIES,
    ),
    AgencySpec(
        "PCCDMX",
        "Protección Civil CDMX",
        Agency.Kind.CIVIL_PROTECTION,
        40.0,
        "PCC",
        1,
        0.08,
        ("civil_protection", "rescue"),
        CDMX_CITIES,
    ),
    AgencySpec(
        "CRM",
        "Cruz Roja Mexicana",
        Agency.Kind.AMBULANCE,
        50.0,
        "CRM",
        1,
        0.12,
        ("ambulance",),
        CDMX_CITIES,
    ),
)

HUMAN_USERS = (
    ("operador", Role.CALL_TAKER, "Operadora", "Demo"),
    ("despachador", Role.DISPATCHER, "Despachador", "Demo"),
    ("supervisor", Role.SUPERVISOR, "Supervisora", "Demo"),
    ("admin", Role.ADMINISTRATOR, "Administrador", "Demo"),
)


@dataclass(frozen=True)
class CenterSpec:
    name: str
    cve_ent: str  # INEGI state key: the centre's service area
    agencies: tuple[AgencySpec, ...]
    units: int  # default number of demo units
    service_users: tuple[tuple[str, str], ...]  # token-only accounts: (username, role)
    timezone: str = "America/Mexico_City"


DEMO_CENTERS = {
    "MEX": CenterSpec(
        "Estado de México C5",
        "15",
        MEX_AGENCIES,
        200,
        (("avl-gateway", Role.DEVICE), ("peer-cdmx", Role.PEER)),
    ),
    "CDMX": CenterSpec(
        "Ciudad de México C5",
        "09",
        CDMX_AGENCIES,
        60,
        (("avl-gateway", Role.DEVICE), ("peer-mex", Role.PEER)),
    ),
}


@dataclass
class SeedReport:
    center: Center | None = None
    catalogue_types: int = 0
    jurisdictions: int = 0
    localities: int = 0
    agencies: int = 0
    stations: int = 0
    units_total: int = 0
    units_created: int = 0
    password: str = ""
    users: list[tuple[str, str]] = field(default_factory=list)  # created now: username, role
    services: list[tuple[str, str]] = field(default_factory=list)  # created now (token only): username, role


def demo_password(password: str | None = None) -> str:
    return password or os.environ.get(PASSWORD_ENV) or DEFAULT_DEMO_PASSWORD


def _unit_counts(agencies: tuple[AgencySpec, ...], total: int) -> list[int]:
    """Units per agency (in `agencies` order), proportional to the weights and summing to `total`."""
    weights = [spec.weight for spec in agencies]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: -(weights[i] * scale - counts[i]))
    for i in remainders[: total - sum(counts)]:
        counts[i] += 1
    return counts


def center_spec(code: str) -> CenterSpec:
    spec = DEMO_CENTERS.get(code.upper())
    if spec is None:
        raise DomainError(
            _("No hay datos de demostración para el centro «%(code)s»; use uno de: %(codes)s.")
            % {"code": code, "codes": ", ".join(DEMO_CENTERS)}
        )
    return spec


def ensure_center(*, code: str) -> Center:
    spec = center_spec(code)
    center, _created = Center.objects.update_or_create(
        code=code.upper(), defaults={"name": spec.name, "cve_ent": spec.cve_ent, "timezone": spec.timezone}
    )
    for name in EventStream.Name.values:
        EventStream.objects.get_or_create(center=center, name=name)
    return center


def seed_catalogue() -> int:
    import_catalogue(rows=read_catalogue_csv(), edition=DEFAULT_EDITION)
    from incidents.models import IncidentType

    return IncidentType.objects.filter(active=True).count()


def seed_jurisdictions() -> int:
    """INEGI state boundaries, and the sample's approximate municipal areas (geo/data/muestra/SOURCE.md)."""
    states = sum(import_geojson_file(path=path) for path in shipped_files())
    sample = SAMPLE_DIR / "municipios-15-aproximados.geojson"
    return states + import_geojson_file(
        path=sample, source=_("Muestra de demostración: áreas municipales aproximadas, no límites del INEGI")
    )


def seed_localities() -> int:
    """The sample gazetteer (a few dozen localities in AGEEML format) for the offline geocoder."""
    imported, _skipped = import_localities_file(path=SAMPLE_DIR / "localidades-muestra.csv")
    return imported


@transaction.atomic
def seed_agencies(
    *, center: Center, specs: tuple[AgencySpec, ...]
) -> tuple[dict[str, Agency], dict[str, list[Station]]]:
    for code, name in CAPABILITY_NAMES.items():
        Capability.objects.update_or_create(code=code, defaults={"name": name})
    agencies, stations = {}, {}
    for spec in specs:
        agency, _created = Agency.objects.update_or_create(
            center=center,
            code=spec.code,
            defaults={"name": spec.name, "kind": spec.kind, "speed_kmh": spec.speed_kmh},
        )
        agencies[spec.code] = agency
        stations[spec.code] = []
        for city, (lat, lon) in spec.cities:
            for number, (dlat, dlon) in enumerate(_AROUND, start=1):
                station, _created = Station.objects.get_or_create(
                    agency=agency,
                    name=f"{spec.name} — {city} {number}",
                    defaults={"lat": round(lat + dlat, 6), "lon": round(lon + dlon, 6)},
                )
                stations[spec.code].append(station)
    return agencies, stations


@transaction.atomic
def seed_units(
    *,
    center: Center,
    specs: tuple[AgencySpec, ...],
    agencies: dict[str, Agency],
    stations: dict[str, list[Station]],
    total: int,
) -> tuple[int, int]:
    """Create the missing demo units (bulk); returns (units of the centre, units created). Existing units
    are left as they are (their status and position may be part of a running demo)."""
    now = timezone.now()
    existing = set(Unit.objects.filter(center=center).values_list("callsign", flat=True))
    capabilities = dict(Capability.objects.values_list("code", "id"))
    new_units, wanted_caps = [], {}
    for spec, count in zip(specs, _unit_counts(specs, total), strict=True):
        agency, agency_stations = agencies[spec.code], stations[spec.code]
        for i in range(count):
            callsign = f"{spec.prefix}-{spec.first_number + i}"
            if callsign in existing:
                continue
            station = agency_stations[i % len(agency_stations)]
            rng = random.Random(f"{RANDOM_SEED}:{center.code}:{callsign}")
            new_units.append(
                Unit(
                    center=center,
                    agency=agency,
                    station=station,
                    callsign=callsign,
                    status=UnitStatus.AVAILABLE,
                    status_changed_at=now,
                    lat=round(station.lat + rng.uniform(-0.02, 0.02), 6),
                    lon=round(station.lon + rng.uniform(-0.02, 0.02), 6),
                    position_at=now,
                )
            )
            wanted_caps[callsign] = [capabilities[c] for c in spec.capabilities]
    Unit.objects.bulk_create(new_units, batch_size=1000)
    if new_units:
        ids = {
            callsign: pk
            for pk, callsign in Unit.objects.filter(center=center).values_list("id", "callsign")
            if callsign in wanted_caps
        }
        through = Unit.capabilities.through
        Unit.capabilities.through.objects.bulk_create(
            [
                through(unit_id=ids[callsign], capability_id=capability_id)
                for callsign, capability_ids in wanted_caps.items()
                for capability_id in capability_ids
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )
    return Unit.objects.filter(center=center).count(), len(new_units)


@transaction.atomic
def seed_users(
    *, center: Center, password: str, service_users: tuple[tuple[str, str], ...]
) -> tuple[list, list]:
    """One user per human role and the service accounts (token only), created when missing. An existing
    user is never touched: no password reset, no re-activation, no new role (an operator may have changed
    or disabled a demo account on purpose). Returns (created humans, created service accounts)."""
    users, services = [], []
    for username, role, first_name, last_name in HUMAN_USERS:
        if User.objects.filter(username=username).exists():
            continue
        is_admin = role == Role.ADMINISTRATOR
        User.objects.create_user(
            username=username,
            password=password,
            role=role,
            center=center,
            first_name=first_name,
            last_name=last_name,
            is_staff=is_admin,
            is_superuser=is_admin,
        )
        users.append((username, role))
    for username, role in service_users:
        if User.objects.filter(username=username).exists():
            continue
        # Token only, and no token here: only its digest would be kept, so the operator issues it when
        # configuring the device (manage.py service_token issue), and it never reaches the seed's log.
        User.objects.create_user(username=username, password=None, role=role, center=center)
        services.append((username, role))
    return users, services


def seed_demo(
    *,
    center_code: str = "MEX",
    units: int | None = None,
    password: str | None = None,
    progress: Callable = print,
) -> SeedReport:
    """Seed (or refresh) a demo centre (`DEMO_CENTERS`: MEX or CDMX), each in its own database. `units`
    defaults to the centre's demo size. `progress` receives one line per step."""
    spec = center_spec(center_code)
    units = spec.units if units is None else units
    if units < 0:
        raise DomainError(_("El número de unidades no puede ser negativo."))
    report = SeedReport(password=demo_password(password))
    steps = 6
    report.center = center = ensure_center(code=center_code)
    progress(_("[1/%(n)s] centro %(center)s… listo") % {"n": steps, "center": center})
    report.catalogue_types = seed_catalogue()
    progress(_("[2/%(n)s] catálogo CNIE… %(count)s tipos") % {"n": steps, "count": report.catalogue_types})
    report.jurisdictions = seed_jurisdictions()
    report.localities = seed_localities()
    progress(
        _(
            "[3/%(n)s] límites (INEGI) y muestra del nomenclátor… %(count)s jurisdicciones, %(localities)s localidades"
        )
        % {"n": steps, "count": report.jurisdictions, "localities": report.localities}
    )
    agencies, stations = seed_agencies(center=center, specs=spec.agencies)
    report.agencies = len(agencies)
    report.stations = sum(len(s) for s in stations.values())
    progress(
        _("[4/%(n)s] corporaciones y bases… %(agencies)s corporaciones, %(stations)s bases")
        % {"n": steps, "agencies": report.agencies, "stations": report.stations}
    )
    report.units_total, report.units_created = seed_units(
        center=center, specs=spec.agencies, agencies=agencies, stations=stations, total=units
    )
    progress(
        _("[5/%(n)s] unidades… %(total)s (%(created)s nuevas)")
        % {"n": steps, "total": report.units_total, "created": report.units_created}
    )
    report.users, report.services = seed_users(
        center=center, password=report.password, service_users=spec.service_users
    )
    progress(
        _("[6/%(n)s] usuarios nuevos… %(users)s personas, %(services)s cuentas de servicio")
        % {"n": steps, "users": len(report.users), "services": len(report.services)}
    )
    return report
