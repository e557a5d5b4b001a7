"""The permission matrix (accounts.permissions) enforced on the API, role by role, with real tokens."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.tokens import issue_token
from tests.factories import UnitFactory, new_incident_call, open_incident

pytestmark = pytest.mark.django_db

ROLES = ["call_taker", "dispatcher", "supervisor", "administrator", "device", "peer", "anonymous"]
CONSOLE = {"call_taker", "dispatcher", "supervisor", "administrator"}
DISPATCH = {"dispatcher", "supervisor", "administrator"}
AVL = {"device", "administrator"}

# endpoint → (roles allowed, success status)
ENDPOINTS = {
    "list_incidents": (CONSOLE, 200),
    "create_call": (CONSOLE, 201),
    "assign": (DISPATCH, 201),
    "unit_status": (DISPATCH, 200),
    "avl_positions": (AVL, 202),
    "recommendations": (DISPATCH, 200),
    "dispatch": (DISPATCH, 201),
    "set_location": (CONSOLE, 200),
}


def _request(endpoint: str, client: APIClient, *, folio: str, unit_id: int):
    if endpoint == "list_incidents":
        return client.get("/api/v1/incidents/")
    if endpoint == "create_call":
        return client.post(
            "/api/v1/calls/",
            new_incident_call(),
            format="json",
        )
    if endpoint == "assign":
        return client.post(f"/api/v1/incidents/{folio}/assignments", {"unit_id": unit_id}, format="json")
    if endpoint == "unit_status":
        return client.post(f"/api/v1/units/{unit_id}/status", {"status": "off_duty"}, format="json")
    if endpoint == "avl_positions":
        fix = {"unit_id": unit_id, "lat": 19.3, "lon": -99.6, "recorded_at": timezone.now().isoformat()}
        return client.post("/api/v1/avl/positions", {"positions": [fix]}, format="json")
    if endpoint == "recommendations":
        return client.get(f"/api/v1/incidents/{folio}/recommendations")
    if endpoint == "dispatch":
        return client.post(f"/api/v1/incidents/{folio}/dispatch", {"unit_ids": [unit_id]}, format="json")
    if endpoint == "set_location":
        body = {"lat": 19.29, "lon": -99.65, "source": "map"}
        return client.post(f"/api/v1/incidents/{folio}/location", body, format="json")
    raise AssertionError(endpoint)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(role, endpoint, center, make_user, accident_type):
    opener = make_user(Role.CALL_TAKER, "opener")
    folio = open_incident(center=center, by=opener, incident_type=accident_type).folio
    unit = UnitFactory(center=center)

    client = APIClient()
    if role != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(make_user(role, f'u-{role}'))}")
    response = _request(endpoint, client, folio=folio, unit_id=unit.id)

    allowed, success = ENDPOINTS[endpoint]
    if role == "anonymous":
        expected = 401
    elif role in allowed:
        expected = success
    else:
        expected = 403
    assert response.status_code == expected, (role, endpoint, response.content[:300])
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Token")
    if expected >= 400:
        assert set(response.json()) == {"message", "code", "fields"}


def test_user_without_centre_is_refused(make_user, api_client_for):
    user = make_user(Role.DISPATCHER, "nomad", center=None)
    assert api_client_for(user).get("/api/v1/incidents/").status_code == 403


def test_inactive_user_token_is_refused(make_user):
    user = make_user(Role.DISPATCHER, "gone", is_active=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user)}")
    assert client.get("/api/v1/incidents/").status_code == 401
