"""The admin stays inside the domain: scoped to the staff user's centre, lifecycle fields read-only."""

from django.test import Client

from accounts.models import Role
from tests.factories import CenterFactory, UnitFactory, UserFactory, open_incident


def _admin_client(center) -> Client:
    client = Client()
    client.force_login(
        UserFactory(
            username=f"admin-{center.code}",
            role=Role.ADMINISTRATOR,
            center=center,
            is_staff=True,
            is_superuser=True,
        )
    )
    return client


def test_a_superuser_of_one_centre_does_not_read_another_centres_calls(center, call_taker, accident_type):
    other = CenterFactory(code="QRO")
    mine = open_incident(center=center, by=call_taker, incident_type=accident_type)
    theirs = open_incident(
        center=other,
        by=UserFactory(username="qro", role=Role.CALL_TAKER, center=other),
        incident_type=accident_type,
    )
    client = _admin_client(center)
    calls = client.get("/admin/incidents/call/").content.decode()
    incidents = client.get("/admin/incidents/incident/").content.decode()
    assert mine.folio in incidents and theirs.folio not in incidents
    assert str(theirs.calls.get().uid) not in calls and str(mine.calls.get().uid) in calls
    assert (
        client.get(f"/admin/incidents/call/{theirs.calls.get().pk}/change/").status_code == 302
    )  # not found


def test_unit_status_and_call_times_are_read_only_in_the_admin(center, call_taker, accident_type):
    unit = UnitFactory(center=center)
    call = open_incident(center=center, by=call_taker, incident_type=accident_type).calls.get()
    client = _admin_client(center)
    unit_form = client.get(f"/admin/units/unit/{unit.pk}/change/").content.decode()
    call_form = client.get(f"/admin/incidents/call/{call.pk}/change/").content.decode()
    assert 'name="status"' not in unit_form and 'name="lat"' not in unit_form
    assert 'name="arrived_at_0"' not in call_form and 'name="disposition"' not in call_form
