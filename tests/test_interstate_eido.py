"""The EIDO the product emits: valid against NENA's schema (at run time and by the shared validator tool),
with the incident's type, location, notes, calls, persons, vehicles and resources — and nothing of an 089
tipster."""

import importlib.util
import json
import types
from pathlib import Path

import pytest
import yaml

from incidents import services
from incidents.models import CallDisposition, Line
from interstate import eido
from interstate.validation import SchemaErrors, validate_eido, validate_message
from tests.factories import UnitFactory, open_incident

VALIDATOR_TOOL = Path("/work/shared/tools/eido_validate.py")
pytestmark = pytest.mark.django_db


@pytest.fixture
def worked_incident(center, dispatcher, accident_type):
    """A 9-1-1 incident with a caller, a note and a unit on scene."""
    call = services.take_call(
        center=center,
        by=dispatcher,
        line=Line.EMERGENCY,
        disposition=CallDisposition.NEW_INCIDENT,
        incident_type=accident_type,
        lat=19.43,
        lon=-99.13,
        address="Av. Insurgentes Sur 100",
        caller_name="Juana Pérez",
        callback_number="+52 55 1234 5678",
        narrative="Choque de dos autos",
    )
    folio = call.incident.folio
    services.add_note(folio=folio, center_id=center.id, text="Hay un lesionado atrapado", by=dispatcher)
    unit = UnitFactory(center=center, callsign="AMB-7")
    services.assign_unit(folio=folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    services.change_unit_status(unit_id=unit.id, center_id=center.id, to="en_route", by=dispatcher)
    return call.incident


def test_emitted_eido_validates_and_carries_the_incident(worked_incident):
    document = eido.build_eido(worked_incident, peer_code="CDMX")
    validate_eido(document)  # build_eido validated it already; this is the test's own check
    component = document["incidentComponent"]
    assert component["incidentTypeInternalCode"] == "10104"
    assert component["incidentTypeCommonRegistryText"] == "Medical"
    assert component["internalIncidentId"] == worked_incident.folio
    agencies = {a["$id"]: a for a in document["agencyComponent"]}
    assert agencies["mex.c4.mx"]["incidentOwningAgencyIndicator"] is True
    assert agencies["cdmx.c4.mx"]["agencyRoleDescriptionRegistryText"] == ["Responding"]
    [resource] = document["emergencyResourceComponent"]
    assert resource["primaryUnitStatusRegistryText"] == "Enroute"
    assert resource["activeOnIncidentId"] == document["$id"]
    assert [n["notesActionComments"] for n in document["notesComponent"]] == [
        "Narrativa: Choque de dos autos",  # what the call-taker heard, first
        "Hay un lesionado atrapado",
    ]
    [person] = document["personComponent"]
    assert person["personIncidentRoleRegistryText"] == ["Caller"]
    [callback] = document["callbackComponent"]
    assert callback["callBackInformationUri"] == ["tel:+525512345678"]

    # Sent from a user whose screen is in English: what travels is in the centre's language all the same.
    from django.utils import translation

    with translation.override("en"):
        english_screen = eido.build_eido(worked_incident, peer_code="CDMX")
    assert english_screen["notesComponent"][0]["notesActionComments"] == "Narrativa: Choque de dos autos"

    facts = eido.read_eido(document)
    assert (round(facts.lat, 4), round(facts.lon, 4)) == (19.43, -99.13)
    assert facts.address == "Av. Insurgentes Sur 100"
    assert facts.status == "en_route" and facts.type_code == "10104"
    assert facts.caller_name == "Juana Pérez" and facts.callback_number == "+525512345678"
    assert [r["status_internal"] for r in facts.resources] == ["en_route"]
    # When the call reached the sender (the receiver shows how old the emergency is); a time without an offset,
    # or not a time, is left out rather than guessed.
    first_call = worked_incident.calls.order_by("arrived_at").first()
    assert abs((facts.call_started_at - first_call.arrived_at).total_seconds()) < 1
    for bad in ("2026-11-28T10:00:00", "ayer", 12):
        document["callComponent"][0]["callStartTimestamp"] = bad
        assert eido.read_eido(document).call_started_at is None


def test_the_eido_costs_the_same_queries_however_many_notes(worked_incident, dispatcher):
    """Every update carries a full snapshot: a query per note would grow with the incident's life."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    folio, center_id = worked_incident.folio, worked_incident.center_id
    with CaptureQueriesContext(connection) as one_note:
        eido.build_eido(worked_incident, peer_code="CDMX")
    for n in range(5):
        services.add_note(folio=folio, center_id=center_id, text=f"nota {n}", by=dispatcher)
    with CaptureQueriesContext(connection) as six_notes:
        document = eido.build_eido(worked_incident, peer_code="CDMX")
    assert len(document["notesComponent"]) == 7  # the narrative and six notes
    assert len(six_notes) == len(one_note), [q["sql"][:120] for q in six_notes.captured_queries]


def test_shared_validator_tool_accepts_what_we_emit(worked_incident, tmp_path, monkeypatch, capsys):
    """Runs the shared tool's main() in this process. Its only change: PyYAML's C loader for the same safe
    load (the pure-Python loader spends ~15 s on the 3 MB schema)."""
    path = tmp_path / "eido.json"
    path.write_text(json.dumps(eido.build_eido(worked_incident, peer_code="CDMX")))
    spec = importlib.util.spec_from_file_location("eido_validate_tool", VALIDATOR_TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    fast_yaml = types.SimpleNamespace(safe_load=lambda text: yaml.load(text, Loader=yaml.CSafeLoader))
    monkeypatch.setattr(tool, "yaml", fast_yaml)
    assert tool.main([str(path)]) == 0, capsys.readouterr().out
    assert "valid EIDO" in capsys.readouterr().out


def test_089_tip_sends_no_caller_data(center, call_taker, accident_type):
    tip = services.take_call(
        center=center,
        by=call_taker,
        line=Line.ANONYMOUS,
        disposition=CallDisposition.NEW_INCIDENT,
        incident_type=accident_type,
        lat=19.3,
        lon=-99.6,
        location_source="map",  # 089 never takes the handset's (device/carrier) location
        location_accuracy_m=12.5,
        narrative="Venta de droga en la esquina",
    )
    text = json.dumps(eido.build_eido(tip.incident, peer_code="CDMX"), ensure_ascii=False)
    assert str(tip.uid) not in text
    assert call_taker.username not in text
    for key in ("personComponent", "callbackComponent", "agentComponent"):
        assert key not in text
    assert '"localCallType": "089"' in text
    assert "12.5" not in text and "device" not in text


def test_vehicles_come_from_the_configured_sources(settings, center, call_taker, accident_type):
    settings.CAD_INTERSTATE_EIDO_SOURCES = ["tests.test_interstate_eido.stolen_truck"]
    incident = open_incident(center=center, by=call_taker, incident_type=accident_type)
    document = eido.build_eido(incident)
    [vehicle] = document["vehicleComponent"]
    assert vehicle["vehicleRelationshipType"] == ["Stolen"]
    assert document["incidentComponent"]["vehicleReference"] == [{"$ref": vehicle["$id"]}]
    [facts] = eido.read_eido(document).vehicles
    assert facts["plate"] == "MEX-123-A" and facts["vin"] == "3N1CN7AD0ZK000001"
    assert facts["make"] == "Kenworth" and facts["colour"] == "Blanco"


def stolen_truck(incident):
    return {
        "vehicles": [
            {
                "key": f"lpr-{incident.folio}",
                "relationship": "Stolen",
                "plate": "MEX-123-A",
                "plate_state": "MEX",
                "vin": "3N1CN7AD0ZK000001",
                "colour": "Blanco",
                "make": "Kenworth",
                "model": "T680",
                "year": 2021,
            }
        ]
    }


def test_invalid_documents_are_refused_with_the_schemas_reasons():
    with pytest.raises(SchemaErrors) as refused:
        validate_eido({"eidoVersion": "9.9", "agencyComponent": "nope"})
    reasons = "\n".join(refused.value.errors)
    assert "'$id' is a required property" in reasons
    assert "agencyComponent: 'nope' is not of type 'array'" in reasons
    with pytest.raises(SchemaErrors):
        validate_message("requestForService", {"requestForService": {"requestId": "x"}})


def test_pidf_lo_refuses_entity_expansion():
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    assert eido.read_pidf_lo(bomb) == (None, None, "")
