"""089 anonymity, airtight: no handset location for a tip, and no caller identity in logged exception text."""

import logging
import sys

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from cad.errors import DomainError
from cad.logging import JsonFormatter
from incidents import services
from incidents.models import Call, CallDisposition, Incident, Line

TIP = {"line": "089", "disposition": "new_incident", "incident_type_code": "10104", "lat": 19.3, "lon": -99.6}


@pytest.mark.parametrize("source", ["device", "carrier"])
def test_089_refuses_the_tipsters_handset_location(call_taker, api_client_for, accident_type, source):
    body = {**TIP, "location_source": source, "location_accuracy_m": 12}
    response = api_client_for(call_taker).post("/api/v1/calls/", body)
    assert response.status_code == 400
    assert "location_source" in response.json()["fields"]
    assert not Call.objects.exists()


@pytest.mark.parametrize("source", ["device", "carrier"])
def test_an_089_incident_is_not_placed_again_by_the_tipsters_handset(
    call_taker, dispatcher, api_client_for, accident_type, source
):
    """Placing the incident later (the location endpoint) is the same handset: refused, nothing changed."""
    folio = api_client_for(call_taker).post("/api/v1/calls/", TIP).json()["call"]["incident"]
    moved = {"lat": 19.31, "lon": -99.61, "source": source}
    response = api_client_for(dispatcher).post(f"/api/v1/incidents/{folio}/location", moved)
    assert response.status_code == 400, response.content
    assert "location_source" in response.json()["fields"]
    incident = Incident.objects.get(folio=folio)
    assert (incident.lat, incident.location_source) == (19.3, "")
    manual = api_client_for(dispatcher).post(
        f"/api/v1/incidents/{folio}/location", {**moved, "source": "caller"}
    )
    assert manual.status_code == 200, manual.content


def test_the_service_refuses_it_too(center, call_taker, accident_type):
    with pytest.raises(DomainError) as refused:
        services.take_call(
            center=center,
            by=call_taker,
            line=Line.ANONYMOUS,
            disposition=CallDisposition.NEW_INCIDENT,
            incident_type=accident_type,
            lat=19.3,
            lon=-99.6,
            location_source="carrier",
        )
    assert "location_source" in refused.value.fields


def test_089_still_takes_a_place_said_or_marked_on_the_map(call_taker, api_client_for, accident_type):
    body = {"line": "089", "disposition": "new_incident", "incident_type_code": "10104", "lat": 19.3}
    body.update(lon=-99.6, location_source="map")
    assert api_client_for(call_taker).post("/api/v1/calls/", body).status_code == 201


@pytest.mark.postgres
def test_a_logged_check_violation_does_not_carry_the_callers_identity(center, call_taker, settings):
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("the row in the error text is PostgreSQL's")
    try:
        with transaction.atomic():  # a write that bypasses the service: the database refuses it
            Call.objects.create(
                center=center,
                line=Line.ANONYMOUS,
                arrived_at=timezone.now(),
                caller_name="Juana Denunciante",
                callback_number="5512345678",
                disposition=CallDisposition.INFORMATIONAL,
                call_taker=call_taker,
            )
    except IntegrityError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "write failed", None, sys.exc_info())
    text = JsonFormatter().format(record)
    assert "Failing row contains" in text
    assert "Juana" not in text and "5512345678" not in text
