"""Service tokens (accounts.tokens, accounts.auth, `manage.py service_token`): stored as digests only, expiry,
rotation with a grace period, revocation, service accounts only, the upgrade from DRF's plaintext tokens, and
the centre's time zone for token-authenticated requests."""

import csv
import importlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.tokens import issue_token, list_tokens
from incidents.models import Incident, IncidentStatus
from tests.factories import CenterFactory, IncidentTypeFactory

pytestmark = pytest.mark.django_db

METRICS = "/api/v1/realtime/metrics"  # console/api.py: its own authentication classes (supervisors)
AVL = "/api/v1/avl/positions"  # the default authentication classes (devices)


def _get(token: str, path: str = AVL):
    """A device's request (an empty AVL batch), or a GET of `path`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.post(AVL, {"positions": []}) if path == AVL else client.get(path)


def _command(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("service_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _raw_token_table() -> str:
    """Every column of every row of knox's table, as text: what a database dump would show."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM knox_authtoken")
        return repr(cursor.fetchall())


@pytest.fixture
def device(make_user):
    return make_user(Role.DEVICE, "avl-gateway")


def test_token_is_stored_as_a_digest_never_in_plaintext(device):
    token = issue_token(device)
    assert len(token) == 64
    raw = _raw_token_table()
    assert token not in raw
    assert token[:15] in raw  # the lookup key only (a quarter of the token)
    assert _get(token).status_code == 202


def test_token_expires_by_default_after_the_configured_ttl(device, settings):
    settings.CAD_TOKEN_TTL_DAYS = 30
    issue_token(device)
    expiry = AuthToken.objects.get(user=device).expiry
    assert abs(expiry - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)


def test_expired_token_gets_401_in_the_api_error_shape(device):
    token = issue_token(device)
    AuthToken.objects.filter(user=device).update(expiry=timezone.now() - timedelta(seconds=1))
    for path in (AVL, METRICS):
        response = _get(token, path)
        assert response.status_code == 401, path
        body = response.json()
        assert set(body) == {"message", "code", "fields"}
        assert body["code"] == "authentication_failed" and "vencido" in body["message"]
        assert response["WWW-Authenticate"].startswith("Token")


def test_wrong_or_malformed_tokens_are_401_not_500(device):
    token = issue_token(device)
    client = APIClient()
    for header in (f"Token {token[:-1]}x", "Token", f"Token {token} extra", "Token zz", "Token \u00e9\u00e9"):
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.post(AVL, {"positions": []}).status_code == 401, header


def test_token_of_deactivated_account_is_refused(device):
    token = issue_token(device)
    device.is_active = False
    device.save()
    response = _get(token)
    assert response.status_code == 401
    assert "desactivada" in response.json()["message"]


def test_issue_prints_the_token_once_on_stdout_and_it_works(device):
    out, err = _command("issue", "--user", "avl-gateway", "--ttl-days", "7")
    token = out.strip()
    assert len(token) == 64 and token not in err
    assert _get(token).status_code == 202
    expiry = AuthToken.objects.get(user=device).expiry
    assert abs(expiry - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


def test_rotate_old_token_works_during_the_grace_period_then_fails(device):
    old = issue_token(device)
    new = _command("rotate", "--user", "avl-gateway", "--grace-hours", "2")[0].strip()
    assert new != old
    assert _get(old).status_code == 202  # the device is not reconfigured yet
    assert _get(new).status_code == 202
    old_row = AuthToken.objects.get(token_key=old[:15])
    assert abs(old_row.expiry - (timezone.now() + timedelta(hours=2))) < timedelta(minutes=1)
    assert AuthToken.objects.get(token_key=new[:15]).expiry > timezone.now() + timedelta(days=300)
    # Two hours later:
    AuthToken.objects.filter(pk=old_row.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert _get(old).status_code == 401
    assert _get(new).status_code == 202


def test_rotate_without_grace_retires_the_old_token_at_once(device):
    old = issue_token(device)
    new = _command("rotate", "--user", "avl-gateway", "--grace-hours", "0")[0].strip()
    assert _get(old).status_code == 401
    assert _get(new).status_code == 202


def test_revoke_one_by_prefix_or_all(device):
    first, second = issue_token(device), issue_token(device)
    out, _err = _command("revoke", "--user", "avl-gateway", "--prefix", first[:8])
    assert "1 token" in out
    assert _get(first).status_code == 401
    assert _get(second).status_code == 202
    _command("revoke", "--user", "avl-gateway")
    assert _get(second).status_code == 401
    assert not AuthToken.objects.filter(user=device).exists()
    with pytest.raises(CommandError, match="service_token list"):
        _command("revoke", "--user", "avl-gateway", "--prefix", "ffffffff")


def test_list_shows_prefix_and_expiry_never_the_secret(device, make_user):
    token = issue_token(device)
    issue_token(make_user(Role.DISPATCHER, "despacho"))  # a person's token (tests, scripts): not listed
    out, _err = _command("list")
    assert token[:8] in out and token[:9] not in out
    assert "avl-gateway" in out and "despacho" not in out
    assert f"{timezone.localtime(AuthToken.objects.get(user=device).expiry):%Y-%m-%d}" in out
    assert [row.prefix for row in list_tokens([device])] == [token[:8]]


@pytest.mark.parametrize("role", [Role.CALL_TAKER, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMINISTRATOR])
def test_command_refuses_people(make_user, role):
    make_user(role, "persona")
    for action in ("issue", "rotate"):
        with pytest.raises(CommandError, match="cuentas de servicio"):
            _command(action, "--user", "persona")
    assert not AuthToken.objects.exists()


def test_command_explains_unknown_user_and_missing_user(db):
    with pytest.raises(CommandError, match="No existe el usuario nadie"):
        _command("issue", "--user", "nadie")
    with pytest.raises(CommandError, match="--user"):
        _command("issue")


@pytest.mark.parametrize(
    ("option", "value"), [("--ttl-days", "0"), ("--ttl-days", "nan"), ("--grace-hours", "1e9")]
)
def test_command_refuses_bad_durations(device, option, value):
    with pytest.raises(CommandError, match="Valor inválido"):
        _command("rotate", "--user", "avl-gateway", option, value)
    assert not AuthToken.objects.exists()


def test_admin_lists_tokens_of_its_centre_without_the_secret(device, make_user, client):
    token = issue_token(device)
    other = make_user(Role.DEVICE, "otro", center=CenterFactory(code="CDMX", name="C5 CDMX", cve_ent="09"))
    other_token = issue_token(other)
    admin = make_user(Role.ADMINISTRATOR, "jefe", is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = client.get("/admin/knox/authtoken/").content.decode()
    assert "avl-gateway" in page and token[:8] in page
    assert token[:9] not in page and other_token[:8] not in page  # another centre's device


@pytest.mark.postgres
@pytest.mark.skipif(
    not django_settings.IS_POSTGRES, reason="DDL inside the test's transaction needs PostgreSQL"
)
def test_upgrade_moves_drf_plaintext_tokens_to_digests_that_keep_working(device):
    """accounts migration 0004 on a database that still has rest_framework.authtoken's table."""
    key = "0123456789abcdef0123456789abcdef01234567"  # a DRF key: 40 hex digits
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp with time zone, "
            "user_id bigint)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [key, device.id])
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001', now())"
        )
    migration = importlib.import_module("accounts.migrations.0004_knox_tokens")
    from django.apps import apps

    with connection.schema_editor() as editor:
        migration.move_plaintext_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert key not in _raw_token_table()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone()[0] == 0
    assert _get(key).status_code == 202  # the deployed device keeps its key
    assert AuthToken.objects.get(user=device).expiry > timezone.now() + timedelta(days=300)


def test_token_requests_use_the_centres_time_zone(make_user):
    """Cancún is UTC-5 all year, Mexico City (settings.TIME_ZONE) UTC-6. An incident opened at 05:30 UTC on
    11 November is 00:30 on the 11th in Cancún but 23:30 on the 10th in Mexico City: a supervisor of Quintana
    Roo exporting the 11th over the API with a token gets it, in Cancún time."""
    qroo = CenterFactory(code="QROO", name="C5 Quintana Roo", cve_ent="23", timezone="America/Cancun")
    supervisor = make_user(Role.SUPERVISOR, "super-qroo", center=qroo)
    itype = IncidentTypeFactory(code="10104")
    opened = datetime(2026, 11, 11, 5, 30, tzinfo=UTC)
    Incident.objects.create(
        folio="QROO-2026-000001",
        center=qroo,
        incident_type=itype,
        type_code=itype.code,
        type_name=itype.name,
        priority=itype.priority,
        priority_rank=1,
        status=IncidentStatus.PENDING,
        call_arrived_at=opened,
        opened_at=opened,
        created_by=supervisor,
    )
    response = _get(issue_token(supervisor), "/api/v1/exports/incidents.csv?from=2026-11-11&to=2026-11-11")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["Folio"] for row in rows] == ["QROO-2026-000001"]  # the day is Cancún's day
    assert rows[0]["Llegada de la llamada"] == "2026-11-11 00:30:00"  # written in Cancún time
