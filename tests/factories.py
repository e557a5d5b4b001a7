import factory
from django.utils import timezone

from accounts.models import Role, User
from cad.models import Center, EventStream
from incidents.models import IncidentType, Priority, SubtypeResponsePlan
from units.models import Agency, Capability, Unit, UnitStatus


class CenterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Center
        django_get_or_create = ("code",)
        skip_postgeneration_save = True

    code = "MEX"
    name = "Estado de México C5"
    cve_ent = "15"

    @factory.post_generation
    def streams(obj, create, extracted, **kwargs):
        for name in EventStream.Name.values:
            EventStream.objects.get_or_create(center=obj, name=name)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.DISPATCHER
    center = factory.SubFactory(CenterFactory)
    password = factory.django.Password("test-pass-1234")


class IncidentTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IncidentType
        django_get_or_create = ("code",)

    code = "10104"
    name = "Accidente de vehículo automotor con lesionados"
    tipo_code = factory.LazyAttribute(lambda o: o.code[:1])
    tipo_name = "Médico"
    subtipo_code = factory.LazyAttribute(lambda o: o.code[:3])
    subtipo_name = "Accidentes"
    priority = Priority.ALTA


class SubtypeResponsePlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubtypeResponsePlan
        django_get_or_create = ("subtipo_code",)

    subtipo_code = "101"
    plan = factory.LazyFunction(lambda: {"ambulance": 1, "patrol": 1})


class CapabilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Capability
        django_get_or_create = ("code",)

    code = "patrol"
    name = factory.LazyAttribute(lambda o: o.code)


class AgencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agency
        django_get_or_create = ("center", "code")

    center = factory.SubFactory(CenterFactory)
    code = "PE"
    name = "Policía Estatal"
    kind = Agency.Kind.POLICE
    speed_kmh = 45.0


class UnitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Unit
        skip_postgeneration_save = True

    center = factory.SubFactory(CenterFactory)
    agency = factory.SubFactory(AgencyFactory, center=factory.SelfAttribute("..center"))
    callsign = factory.Sequence(lambda n: f"U-{n:03d}")
    status = UnitStatus.AVAILABLE
    status_changed_at = factory.LazyFunction(timezone.now)
    lat = 19.2826
    lon = -99.6557
    position_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def capabilities(obj, create, extracted, **kwargs):
        for code in extracted or ["patrol"]:
            obj.capabilities.add(CapabilityFactory(code=code))


def new_incident_call(**overrides) -> dict:
    """API body of a 9-1-1 call that opens an accident incident (CNIE 10104) near Toluca."""
    return {
        "line": "911",
        "disposition": "new_incident",
        "incident_type_code": "10104",
        "lat": 19.3,
        "lon": -99.6,
        **overrides,
    }


def open_incident(*, center, by, incident_type, lat=19.3, lon=-99.6):
    """Open an incident the way a call-taker does (a 9-1-1 call with disposition new_incident)."""
    from incidents import services
    from incidents.models import CallDisposition, Line

    return services.take_call(
        center=center,
        by=by,
        line=Line.EMERGENCY,
        disposition=CallDisposition.NEW_INCIDENT,
        incident_type=incident_type,
        lat=lat,
        lon=lon,
    ).incident


def jurisdiction(cvegeo: str, name: str, kind: str, parent=None):
    """A jurisdiction row with a placeholder geometry (for tests that only group by it)."""
    from geo.models import Jurisdiction

    return Jurisdiction.objects.create(
        kind=kind,
        cvegeo=cvegeo,
        cve_ent=cvegeo[:2],
        name=name,
        parent=parent,
        geometry={"type": "Polygon", "coordinates": []},
        min_lat=19,
        min_lon=-100,
        max_lat=20,
        max_lon=-99,
    )
