import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from knox.models import AuthToken

from accounts.models import Role, User
from cad.models import Center, EventStream
from demo.seed import DEFAULT_DEMO_PASSWORD
from geo import locator
from geo.models import Jurisdiction, Locality
from incidents.models import IncidentType
from units.models import Agency, Capability, Station, Unit, UnitStatus

pytestmark = pytest.mark.django_db

COUNTED = (
    Center,
    EventStream,
    IncidentType,
    Jurisdiction,
    Locality,
    Agency,
    Capability,
    Station,
    Unit,
    User,
    AuthToken,
)


@pytest.fixture(autouse=True)
def fresh_locator():
    locator.invalidate()
    yield
    locator.invalidate()


def counts() -> dict:
    return {model.__name__: model.objects.count() for model in COUNTED} | {
        "unit_capabilities": Unit.capabilities.through.objects.count()
    }


def test_seed_twice_is_idempotent_and_users_can_log_in(capsys, monkeypatch):
    monkeypatch.delenv("CAD_DEMO_PASSWORD", raising=False)
    call_command("seed_demo", "--units", "30")
    first = counts()
    out = capsys.readouterr().out
    assert "[2/6] catálogo CNIE… 279 tipos" in out
    assert "no use estas cuentas ni esta contraseña en producción" in out

    # An operator changed a demo password and disabled an account: seeding again touches neither.
    User.objects.filter(username="despachador").update(password="x")
    User.objects.filter(username="supervisor").update(is_active=False)
    call_command("seed_demo", "--units", "30")
    assert counts() == first
    capsys.readouterr()
    assert User.objects.get(username="despachador").password == "x"
    assert not User.objects.get(username="supervisor").is_active
    User.objects.filter(username="despachador").update(is_active=True)
    User.objects.filter(username="supervisor").update(is_active=True)
    despachador = User.objects.get(username="despachador")
    despachador.set_password(DEFAULT_DEMO_PASSWORD)
    despachador.save()

    assert first["Unit"] == 30
    assert first["IncidentType"] == 279
    assert first["Jurisdiction"] == 6 + 44  # INEGI states + the sample's approximate municipal areas
    assert first["Locality"] == 48  # the sample gazetteer
    assert first["Agency"] == 7
    center = Center.objects.get(code="MEX")
    assert (center.name, center.cve_ent) == ("Estado de México C5", "15")
    assert set(center.streams.values_list("name", flat=True)) == {"console", "avl"}
    assert set(Capability.objects.values_list("code", flat=True)) == {
        "ambulance",
        "patrol",
        "fire_engine",
        "rescue",
        "hazmat",
        "civil_protection",
    }
    assert not Unit.objects.exclude(status=UnitStatus.AVAILABLE).exists()
    assert not Unit.objects.filter(capabilities__isnull=True).exists()
    assert Unit.objects.filter(callsign="PE-101", capabilities__code="patrol").exists()
    assert Unit.objects.filter(callsign="BOM-1", capabilities__code="rescue").exists()
    assert Unit.objects.filter(position_at__isnull=True).count() == 0

    for username, role in [
        ("operador", Role.CALL_TAKER),
        ("despachador", Role.DISPATCHER),
        ("supervisor", Role.SUPERVISOR),
        ("admin", Role.ADMINISTRATOR),
    ]:
        user = authenticate(username=username, password=DEFAULT_DEMO_PASSWORD)
        assert user is not None and user.role == role and user.center == center
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    for username, role in [("avl-gateway", Role.DEVICE), ("peer-cdmx", Role.PEER)]:
        user = User.objects.get(username=username)
        assert user.role == role
        assert not user.has_usable_password()
        # No token is made (it could only be shown, never read back): the operator issues one.
        assert not AuthToken.objects.filter(user=user).exists()
    assert "manage.py service_token issue --user <usuario>" in out


def test_seed_password_option_and_env(monkeypatch):
    monkeypatch.setenv("CAD_DEMO_PASSWORD", "desde-entorno-1")
    call_command("seed_demo", "--units", "5")
    assert authenticate(username="operador", password="desde-entorno-1") is not None
    call_command("seed_demo", "--units", "5", "--password", "opcion-2")  # existing users are not touched
    assert authenticate(username="operador", password="opcion-2") is None
    assert authenticate(username="operador", password="desde-entorno-1") is not None


def test_seed_many_units_quickly():
    call_command("seed_demo", "--units", "2000")
    assert Unit.objects.count() == 2000
    assert Unit.capabilities.through.objects.count() >= 2000


def test_unknown_center_is_an_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="ZZZ"):
        call_command("seed_demo", "--center", "ZZZ", "--units", "1")


def test_seed_cdmx_is_idempotent_and_every_unit_is_inside_the_city(monkeypatch):
    monkeypatch.delenv("CAD_DEMO_PASSWORD", raising=False)
    call_command("seed_demo", "--center", "CDMX")
    first = counts()
    call_command("seed_demo", "--center", "CDMX")
    assert counts() == first

    center = Center.objects.get(code="CDMX")
    assert (center.name, center.cve_ent, center.timezone) == (
        "Ciudad de México C5",
        "09",
        "America/Mexico_City",
    )
    assert Unit.objects.filter(center=center).count() == 60
    assert set(Agency.objects.filter(center=center).values_list("code", flat=True)) == {
        "SSC",
        "ERUM",
        "HCB",
        "PCCDMX",
        "CRM",
    }
    for lat, lon in Unit.objects.values_list("lat", "lon"):
        state, _municipality = locator.locate(lat, lon)
        assert state is not None and state.cve_ent == "09", (lat, lon)
    for username in ("operador", "despachador", "supervisor", "admin"):
        user = authenticate(username=username, password=DEFAULT_DEMO_PASSWORD)
        assert user is not None and user.center == center
    assert User.objects.get(username="peer-mex").role == Role.PEER
