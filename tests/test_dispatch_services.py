"""Dispatch services: events recorded in the transaction, status derived from units, folios."""

import pytest
from django.db import transaction

from cad.errors import InvalidTransition, UnitNotAvailable
from cad.models import Event
from incidents import services
from incidents.models import IncidentStatus
from tests.factories import UnitFactory, open_incident
from units.models import UnitStatus

pytestmark = pytest.mark.django_db


def test_assign_unit_broadcasts_only_on_commit(
    django_capture_on_commit_callbacks, center, dispatcher, accident_type
):
    incident = open_incident(center=center, by=dispatcher, incident_type=accident_type)
    unit = UnitFactory(center=center)
    before = Event.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        services.assign_unit(folio=incident.folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    recorded = Event.objects.filter(id__gt=0).count() - before
    # unit.status_changed, incident.updated, assignment.created: one broadcast each, after commit.
    assert recorded == len(callbacks) == 3
    types = list(Event.objects.order_by("-id").values_list("type", flat=True)[:3])
    assert sorted(types) == ["assignment.created", "incident.updated", "unit.status_changed"]


def test_rolled_back_work_records_no_event(center, dispatcher, accident_type):
    before = Event.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        open_incident(center=center, by=dispatcher, incident_type=accident_type)
        raise RuntimeError("abort")
    assert Event.objects.count() == before


def test_incident_status_follows_its_units(center, dispatcher, accident_type):
    incident = open_incident(center=center, by=dispatcher, incident_type=accident_type)
    first, second = UnitFactory(center=center), UnitFactory(center=center)
    assert incident.status == IncidentStatus.PENDING
    for unit in (first, second):
        services.assign_unit(folio=incident.folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.DISPATCHED
    services.change_unit_status(unit_id=first.id, center_id=center.id, to=UnitStatus.EN_ROUTE, by=dispatcher)
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.EN_ROUTE
    first_en_route = incident.first_en_route_at
    services.change_unit_status(unit_id=second.id, center_id=center.id, to=UnitStatus.EN_ROUTE, by=dispatcher)
    services.change_unit_status(unit_id=second.id, center_id=center.id, to=UnitStatus.ON_SCENE, by=dispatcher)
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ON_SCENE
    assert incident.first_en_route_at == first_en_route  # the second unit does not move the first time
    services.change_unit_status(unit_id=first.id, center_id=center.id, to=UnitStatus.AVAILABLE, by=dispatcher)
    services.change_unit_status(
        unit_id=second.id, center_id=center.id, to=UnitStatus.AVAILABLE, by=dispatcher
    )
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ATTENDED  # a unit reached the scene: awaiting closure
    closed = services.close_incident(
        folio=incident.folio, center_id=center.id, disposition="Atendido", by=dispatcher
    )
    assert closed.status == IncidentStatus.CLOSED and closed.closed_at is not None


def test_busy_and_out_of_service_units_cannot_be_assigned(center, dispatcher, accident_type):
    incident = open_incident(center=center, by=dispatcher, incident_type=accident_type)
    other = open_incident(center=center, by=dispatcher, incident_type=accident_type, lat=19.5)
    unit = UnitFactory(center=center)
    services.assign_unit(folio=incident.folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    with pytest.raises(UnitNotAvailable):
        services.assign_unit(folio=other.folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    broken = UnitFactory(center=center, status=UnitStatus.OUT_OF_SERVICE)
    with pytest.raises(UnitNotAvailable):
        services.assign_unit(folio=other.folio, center_id=center.id, unit_id=broken.id, by=dispatcher)


def test_unit_cannot_be_on_scene_before_dispatch(center, dispatcher):
    unit = UnitFactory(center=center)
    with pytest.raises(InvalidTransition):
        services.change_unit_status(
            unit_id=unit.id, center_id=center.id, to=UnitStatus.ON_SCENE, by=dispatcher
        )
    with pytest.raises(InvalidTransition):
        services.change_unit_status(
            unit_id=unit.id, center_id=center.id, to=UnitStatus.DISPATCHED, by=dispatcher
        )
    unit.refresh_from_db()
    assert unit.status == UnitStatus.AVAILABLE and unit.status_changes.count() == 0


def test_folios_carry_state_prefix_year_and_sequence(center, dispatcher, accident_type):
    folios = [
        open_incident(center=center, by=dispatcher, incident_type=accident_type).folio for _ in range(3)
    ]
    prefix = folios[0].rsplit("-", 1)[0]
    assert prefix.startswith("MEX-20")
    assert [int(f.rsplit("-", 1)[1]) for f in folios] == [1, 2, 3]


def test_recommendation_completes_the_plan_less_assigned_units(center, dispatcher, accident_type):
    from units.selectors import recommend_units

    incident = open_incident(
        center=center, by=dispatcher, incident_type=accident_type
    )  # plan: 1 ambulance + 1 patrol
    patrol = UnitFactory(center=center, capabilities=["patrol"], lat=19.291, lon=-99.651)
    UnitFactory(center=center, capabilities=["patrol"], lat=19.30, lon=-99.66)
    ambulance = UnitFactory(center=center, capabilities=["ambulance"], lat=19.31, lon=-99.65)
    before = recommend_units(incident=incident)
    assert set(before["suggested_unit_ids"]) == {patrol.id, ambulance.id}

    services.assign_unit(folio=incident.folio, center_id=center.id, unit_id=patrol.id, by=dispatcher)
    after = recommend_units(incident=incident)
    assert after["suggested_unit_ids"] == [ambulance.id]
    by_capability = {r["capability"]: r for r in after["requirements"]}
    assert by_capability["patrol"]["assigned"] == 1 and by_capability["patrol"]["suggested"] == []


def test_an_incident_another_centre_handles_suggests_none_of_ours_but_lists_them(
    center, dispatcher, accident_type, api_client_for
):
    """CDMX accepted our request for service: its units cover the plan. Ours are listed (support), none is
    suggested, and the answer says who handles it (the console says so above the list)."""
    from units.selectors import recommend_units

    incident = open_incident(center=center, by=dispatcher, incident_type=accident_type)
    patrol = UnitFactory(center=center, capabilities=["patrol"], lat=19.291, lon=-99.651)
    with transaction.atomic():
        services.set_handled_by(incident=incident, center_code="CDMX", text="Lo atiende CDMX", by=dispatcher)
    answer = api_client_for(dispatcher).get(f"/api/v1/incidents/{incident.folio}/recommendations").json()
    assert answer["handled_by_center"] == "CDMX"
    assert answer["suggested_unit_ids"] == []
    assert all(r["suggested"] == [] for r in answer["requirements"])
    listed = {c["unit_id"] for r in answer["requirements"] for c in r["candidates"]}
    assert patrol.id in listed

    with transaction.atomic():
        services.set_handled_by(incident=incident, center_code="", text="Lo atendemos", by=dispatcher)
    incident.refresh_from_db()
    again = recommend_units(incident=incident)
    assert again["handled_by_center"] == "" and again["suggested_unit_ids"] == [patrol.id]


def test_closing_frees_units_without_tying_them_to_the_closed_incident(center, dispatcher, accident_type):
    incident = open_incident(center=center, by=dispatcher, incident_type=accident_type)
    unit = UnitFactory(center=center)
    services.assign_unit(folio=incident.folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    services.close_incident(folio=incident.folio, center_id=center.id, disposition="Atendido", by=dispatcher)
    freed = Event.objects.filter(type="unit.status_changed").order_by("-seq").first()
    assert freed.payload["status"] == UnitStatus.AVAILABLE
    assert freed.payload["incident"] is None
    assert unit.status_changes.order_by("-at", "-id").first().incident_id == incident.id  # history keeps it


@pytest.mark.django_db(transaction=True)
def test_a_failed_broadcast_does_not_fail_the_committed_write(center, dispatcher, accident_type, settings):
    # A Redis channel layer nobody listens on: every group_send fails after commit.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]},
        }
    }
    incident = open_incident(
        center=center, by=dispatcher, incident_type=accident_type
    )  # three events, three failed broadcasts
    assert incident.folio.startswith("MEX-")
    assert Event.objects.filter(type="incident.created", payload__folio=incident.folio).exists()


def test_the_folio_year_is_the_centres_local_year(center, call_taker, accident_type, monkeypatch):
    """The folio year is the centre's local year, not the server's default zone's."""
    from datetime import UTC, datetime

    from incidents import services as dispatch

    center.timezone = "America/Tijuana"
    center.save()
    # 01:00 on 1 January 2027 in Mexico City (settings.TIME_ZONE), 23:00 on 31 December 2026 in Tijuana.
    monkeypatch.setattr(dispatch.timezone, "now", lambda: datetime(2027, 1, 1, 7, 0, tzinfo=UTC))
    incident = open_incident(center=center, by=call_taker, incident_type=accident_type)
    assert incident.folio.startswith(f"{center.code}-2026-")
