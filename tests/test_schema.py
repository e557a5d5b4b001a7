"""Property-based API test: schemathesis generates requests from our own OpenAPI document and every
operation must answer without a server error (no 5xx), as an authenticated dispatcher."""

import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from accounts.models import Role
from accounts.tokens import issue_token
from incidents.catalogue import DEFAULT_EDITION, import_catalogue, read_catalogue_csv
from incidents.models import IncidentType
from tests.factories import UnitFactory, open_incident

# The served schema needs a login; generate the same document in-process and point schemathesis at the app.
schema = schemathesis.openapi.from_dict(
    json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
)
schema.app = get_wsgi_application()


@pytest.fixture
def wsgi_keeps_test_connection():
    """Calls go straight to the WSGI handler, whose request signals would close the connection that
    holds the test transaction; Django's own test client disconnects them the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def dispatcher_token(db, center, make_user, wsgi_keeps_test_connection):
    """A seeded centre: the CNIE catalogue, a few units and an open incident; a dispatcher's token."""
    import_catalogue(rows=read_catalogue_csv(), edition=DEFAULT_EDITION)
    user = make_user(Role.DISPATCHER, "schema-dispatcher")
    for capability in ("ambulance", "patrol", "fire_engine"):
        UnitFactory(center=center, capabilities=[capability])
    incident_type = IncidentType.objects.filter(active=True).exclude(tipo_code="7").first()
    open_incident(center=center, by=user, incident_type=incident_type)
    return issue_token(user)


def test_schema_is_served_to_users_only_and_lists_every_operation(client, make_user):
    assert client.get("/api/v1/schema/?format=json").status_code == 401
    assert client.get("/api/v1/docs/").status_code in (401, 403)
    client.force_login(make_user(Role.CALL_TAKER))
    assert client.get("/api/v1/docs/").status_code == 200
    paths = client.get("/api/v1/schema/?format=json").json()["paths"]
    for path in (
        "/api/v1/calls/",
        "/api/v1/incidents/{folio}/assignments",
        "/api/v1/avl/positions",
        "/api/v1/jurisdictions/locate",
    ):
        assert path in paths
    assert client.get("/api/v1/docs/").status_code == 200


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_with_a_server_error(case, dispatcher_token):
    response = case.call(headers={"Authorization": f"Token {dispatcher_token}"})
    case.validate_response(response, checks=[not_a_server_error])
