import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from tests.factories import CenterFactory, IncidentTypeFactory, SubtypeResponsePlanFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_jurisdiction_cache():
    """Tests roll back the boundaries the locator cached: start and end each test with an empty cache."""
    from geo.locator import invalidate

    invalidate()
    yield
    invalidate()


@pytest.fixture
def center(db):
    return CenterFactory()


@pytest.fixture
def make_user(center):
    def make(role: str, username: str | None = None, **kwargs):
        return UserFactory(
            username=username or role, role=role, center=kwargs.pop("center", center), **kwargs
        )

    return make


@pytest.fixture
def call_taker(make_user):
    return make_user(Role.CALL_TAKER)


@pytest.fixture
def dispatcher(make_user):
    return make_user(Role.DISPATCHER)


@pytest.fixture
def supervisor(make_user):
    return make_user(Role.SUPERVISOR)


@pytest.fixture
def api_client_for():
    """An APIClient authenticated as the given user (session-free: force_authenticate)."""

    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


@pytest.fixture
def accident_type(db):
    SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1, "patrol": 1})
    return IncidentTypeFactory(code="10104")
