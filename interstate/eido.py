"""NENA EIDO (NENA-STA-021, JSON) from a local incident, and the facts a received EIDO carries.

`build_eido` turns an incident into one EIDO document: the agencies (our centre owning the incident, the
peer as the agency it is transferred to / notified / that requested it), the incident component (CNIE code as
the internal type code plus a common type), the location (PIDF-LO point and civic address), the notes, the
calls (WITHOUT caller identity for 089 tips), the persons and vehicles the incident has, and the emergency
resources (our units on it) with their status. Every document built here is validated against NENA's schema
before it leaves (interstate.validation), so what we emit is what the schema accepts.

`read_eido` extracts from a (validated) EIDO what a receiver applies: ids, type, status, location, notes,
resources, vehicles, persons. Identifiers and registry values are documented in docs/interstate.md.

Vehicles and persons: the incident model has none of its own. Apps that know some (e.g. a plate reader hit)
list a callable in the setting CAD_INTERSTATE_EIDO_SOURCES; it is called with the incident and returns
`{"vehicles": [VehicleFacts...], "persons": [PersonFacts...]}`. Callers of 911 calls with a name or a
callback number are persons too (role Caller); 089 tips never are.
"""

from __future__ import annotations

import functools
import hashlib
import xml.etree.ElementTree as ET  # noqa: S405 - used to BUILD xml; untrusted xml is parsed with defusedxml
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from defusedxml import ElementTree as SafeET
from django.conf import settings
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from incidents.models import Assignment, AssignmentStatus, Incident, IncidentStatus, Line, TimelineEntry
from interstate.validation import validate_eido

EIDO_VERSION = "1.0"
NOTE_ID_PREFIX = "urn:emergency:uid:noteid:"

PIDF = "urn:ietf:params:xml:ns:pidf"
GP = "urn:ietf:params:xml:ns:pidf:geopriv10"
GML = "http://www.opengis.net/gml"
CA = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"

# CNIE tipo -> common incident type (docs/interstate.md). Receivers use the CNIE code (internal code) when
# they know it, else this common type.
COMMON_TYPE = {
    "1": "Medical",
    "2": "Fire.Rescue",
    "3": "Law",
    "4": "PublicService",
    "5": "Assistance",
    "6": "Other",
    "7": "Other",
}
# Common type -> the CNIE "other …" code a receiver files an incident under when the internal code is unknown.
FALLBACK_CNIE = {
    "Medical": "10316",
    "Fire.Rescue": "20404",
    "Law": "30806",
    "PublicService": "30806",
    "Assistance": "20404",
    "Other": "30806",
}
INCIDENT_STATUS = {
    IncidentStatus.PENDING: "Pending",
    IncidentStatus.DISPATCHED: "Dispatched",
    IncidentStatus.EN_ROUTE: "Enroute",
    IncidentStatus.ON_SCENE: "OnScene",
    IncidentStatus.CLOSED: "Closed",
}
UNIT_STATUS = {
    AssignmentStatus.DISPATCHED: "Dispatched",
    AssignmentStatus.EN_ROUTE: "Enroute",
    AssignmentStatus.ON_SCENE: "OnScene",
    AssignmentStatus.TRANSPORTING: "Transporting",
    AssignmentStatus.AT_HOSPITAL: "AtHospital",
    AssignmentStatus.CLEARED: "Available",
}
RESOURCE_TYPE = {
    "police": "Law",
    "ambulance": "EMS",
    "fire": "Fire",
    "civil_protection": "Rescue",
    "national_guard": "Law",
    "other": "Other",
}
# Role of the peer's agency in an EIDO we build, by what the share is (docs/interstate.md).
PEER_ROLE = {
    "request_for_service": "Responding",
    "request_awareness": "Notified",
    "inbound": "Requesting",
}


class VehicleFacts(TypedDict, total=False):
    key: str  # stable per incident: the component $id is built from it
    relationship: str  # e.g. "Involved", "Suspect", "Stolen" (Vehicle Relationship Type registry)
    at: datetime  # when the vehicle became related to the incident
    plate: str
    plate_state: str
    vin: str
    colour: str
    make: str
    model: str
    year: int


class PersonFacts(TypedDict, total=False):
    key: str
    role: str  # Person Role registry, e.g. "Caller", "Victim", "Suspect"
    name: str
    callback: str  # a telephone number


@dataclass
class EidoFacts:
    """What a received EIDO tells a receiver (see read_eido)."""

    incident_id: str
    folio: str = ""
    type_code: str = ""
    type_text: str = ""
    common_type: str = ""
    status: str = ""
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    disposition: str = ""
    line: str = Line.EMERGENCY
    caller_name: str = ""
    callback_number: str = ""
    notes: list[dict] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)
    vehicles: list[dict] = field(default_factory=list)
    call_started_at: datetime | None = None  # the first call's callStartTimestamp, at the sender


# --- Identifiers ------------------------------------------------------------------------------
def agency_id(code: str) -> str:
    """The agency identifier of a command centre in EIDOs: its code, lowercased, under c4.mx."""
    return f"{code.lower()}.c4.mx"


def incident_urn(incident: Incident) -> str:
    return f"urn:emergency:uid:incidentid:{incident.folio}:{agency_id(incident.center.code)}"


def _urn(kind: str, local: str, agency: str) -> str:
    return f"urn:emergency:uid:{kind}:{local}:{agency}"


def note_id(entry: TimelineEntry, agency: str) -> str:
    """A note keeps the $id it arrived with (merge by $id on both sides), else gets ours."""
    return entry.data.get("eido_id") or f"{NOTE_ID_PREFIX}{entry.id}:{agency}"


def _ts(value: datetime | None) -> str:
    return (value or timezone.now()).isoformat()


# --- Sources of vehicles and persons ----------------------------------------------------------
@functools.cache
def _sources(paths: tuple[str, ...]):
    return [import_string(path) for path in paths]


def extra_facts(incident: Incident) -> tuple[list[VehicleFacts], list[PersonFacts]]:
    """Vehicles and persons from the callables in CAD_INTERSTATE_EIDO_SOURCES."""
    vehicles, persons = [], []
    for source in _sources(tuple(settings.CAD_INTERSTATE_EIDO_SOURCES)):
        found = source(incident) or {}
        vehicles += list(found.get("vehicles", ()))
        persons += list(found.get("persons", ()))
    return vehicles, persons


# --- Building ---------------------------------------------------------------------------------
class _Builder:
    def __init__(
        self,
        incident: Incident | None,
        *,
        peer_code: str | None,
        peer_role: str,
        at: datetime,
        center_code: str | None = None,
    ):
        self.incident = incident
        self.us = agency_id(center_code or incident.center.code)
        self.peer = agency_id(peer_code) if peer_code else None
        self.peer_code = peer_code
        self.peer_role = peer_role
        self.at = at
        self.doc: dict = {}

    def prologue(self, component_id: str, at: datetime | None = None, agency: str | None = None) -> dict:
        return {
            "$id": component_id,
            "lastUpdateTimeStamp": _ts(at or self.at),
            "updatedByAgencyReference": {"$ref": agency or self.us},
        }

    def add(self, key: str, component: dict) -> dict:
        self.doc.setdefault(key, []).append(component)
        return component

    def build(self) -> dict:
        incident = self.incident
        self.doc = {
            **self.prologue(incident_urn(incident), incident.updated_at),
            "eidoVersion": EIDO_VERSION,
            "issuingElementIdentification": f"cad.{self.us}",
        }
        self.agencies()
        location = self.location()
        notes = self.narrative() + self.notes()
        persons = self.calls(location)
        vehicles, extra_persons = extra_facts(incident)
        persons += [self.person(facts) for facts in extra_persons]
        vehicle_refs = [self.vehicle(facts) for facts in vehicles]
        resources = self.resources()
        component = {
            **self.prologue(_urn("incidentinfoid", incident.folio, self.us), incident.updated_at),
            "incidentTypeInternalCode": incident.type_code,
            "incidentTypeInternalText": incident.type_name,
            "incidentTypeCommonRegistryText": COMMON_TYPE.get(incident.type_code[:1], "Other"),
            "incidentStatusInternalText": [incident.status],
            "incidentStatusCommonRegistryText": [INCIDENT_STATUS.get(incident.status, "Pending")],
            "internalIncidentId": incident.folio,
            "incidentPriorityInternalText": incident.priority,
            "incidentCommonPriorityNumber": incident.priority_rank,
        }
        if location:
            component["locationReference"] = [{"$ref": location}]
        if notes:
            component["notesReference"] = [{"$ref": ref} for ref in notes]
        if persons:
            component["personReference"] = [{"$ref": ref} for ref in persons]
        if vehicle_refs:
            component["vehicleReference"] = [{"$ref": ref} for ref in vehicle_refs]
        if incident.status == IncidentStatus.CLOSED:
            component["dispositionComponent"] = [
                {
                    **self.prologue(_urn("dispositionid", incident.folio, self.us), incident.closed_at),
                    "dispositionCommonRegistryCode": "Closed",
                    "dispositionPrimaryIndicator": True,
                    "dispositionDescriptionText": incident.disposition,
                }
            ]
        self.doc["incidentComponent"] = component
        if resources:
            self.doc["dispatchComponent"] = [
                {
                    **self.prologue(_urn("dispatchid", incident.folio, self.us)),
                    "agencyReference": {"$ref": self.us},
                    "emergencyResourceReference": [{"$ref": ref} for ref in resources],
                }
            ]
        return self.doc

    def agencies(self) -> None:
        self.add(
            "agencyComponent",
            {
                **self.prologue(self.us),
                "agencyRoleDescriptionRegistryText": ["Dispatching"],
                "agencyType": ["psap"],
                "incidentOwningAgencyIndicator": True,
            },
        )
        if self.peer:
            self.add(
                "agencyComponent",
                {
                    **self.prologue(self.peer),
                    "agencyRoleDescriptionRegistryText": [self.peer_role],
                    "agencyType": ["psap"],
                    "incidentOwningAgencyIndicator": False,
                },
            )

    def location(self) -> str | None:
        incident = self.incident
        if incident.lat is None and not incident.address:
            return None
        component_id = _urn("locationid", incident.folio, self.us)
        component = {
            **self.prologue(component_id, incident.updated_at),
            "locationTypeDescriptionRegistryText": "Incident",
            "locationByValue": pidf_lo(
                entity=incident_urn(incident),
                lat=incident.lat,
                lon=incident.lon,
                state=incident.state.name if incident.state_id else "",
                municipality=incident.municipality.name if incident.municipality_id else "",
                address=incident.address,
            ),
        }
        if incident.address:
            component["locationDescriptionText"] = incident.address
        self.add("locationComponent", component)
        return component_id

    def narrative(self) -> list[str]:
        """What the call-taker heard (the incident's narrative, first call's unless edited) as the first note.
        Its $id follows the text: an edited narrative reaches the peer as a new note (notes merge by $id)."""
        text = self.incident.narrative.strip()
        if not text:
            return []
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        component_id = _urn("notesid", f"narrative.{self.incident.folio}.{digest}", self.us)
        self.add(
            "notesComponent",
            {
                **self.prologue(component_id, self.incident.opened_at),
                "notesActionComments": _("Narrativa: %(text)s") % {"text": text},
            },
        )
        return [component_id]

    def notes(self) -> list[str]:
        refs = []
        # "incident" too: a related manager sets it on each row, and a deferred one is a query per note
        notes = self.incident.timeline.filter(kind=TimelineEntry.Kind.NOTE)
        entries = notes.only("id", "incident", "at", "text", "data")
        for entry in entries:
            if self.peer_code and entry.data.get("peer") == self.peer_code:
                continue  # came from (or is about) this peer: never echoed back to it
            component_id = note_id(entry, self.us)
            self.add(
                "notesComponent",
                {
                    **self.prologue(component_id, entry.at, entry.data.get("eido_agency")),
                    "notesActionComments": entry.text,
                },
            )
            refs.append(component_id)
        return refs

    def calls(self, location: str | None) -> list[str]:
        """Call components. 089: no caller, no callback, no call identifier — only that a tip came in."""
        persons = []
        for index, call in enumerate(self.incident.calls.order_by("arrived_at", "id"), start=1):
            anonymous = call.line == Line.ANONYMOUS
            local = f"{self.incident.folio}.{index}" if anonymous else str(call.uid)
            component = {
                **self.prologue(_urn("callid", local, self.us), call.answered_at or call.arrived_at),
                "standardPrimaryCallType": "emergency",
                "localCallType": call.line,
                "direction": "incoming",
                "callStartTimestamp": _ts(call.arrived_at),
                "callStateRegistryText": "callEnd" if call.released_at else "callAnswered",
            }
            if call.answered_at:
                component["answerDate"] = _ts(call.answered_at)
            if location:
                component["locationReference"] = [{"$ref": location}]
            if not anonymous and (call.caller_name or call.callback_number):
                callback = None
                if call.callback_number:
                    callback = _urn("callbackid", local, self.us)
                    self.add(
                        "callbackComponent",
                        {
                            **self.prologue(callback),
                            "callBackInformationUri": [tel_uri(call.callback_number)],
                        },
                    )
                    component["callBackReference"] = {"$ref": callback}
                person = self.person(
                    {"key": local, "role": "Caller", "name": call.caller_name or ""},
                    call_id=component["$id"],
                    callback_ref=callback,
                )
                component["personReference"] = [{"$ref": person}]
                persons.append(person)
            self.add("callComponent", component)
        return persons

    def person(
        self, facts: PersonFacts, *, call_id: str | None = None, callback_ref: str | None = None
    ) -> str:
        component_id = _urn("personid", facts["key"], self.us)
        component = {
            **self.prologue(component_id),
            "personIncidentRoleRegistryText": [facts.get("role") or "Other"],
        }
        if facts.get("name"):
            component["ncPersonComponent"] = {"name": [{"personFullName": [{"value": facts["name"]}]}]}
        if call_id:
            component["callIdentifier"] = [call_id]
        if callback_ref is None and facts.get("callback"):
            callback_ref = _urn("callbackid", facts["key"], self.us)
            self.add(
                "callbackComponent",
                {**self.prologue(callback_ref), "callBackInformationUri": [tel_uri(facts["callback"])]},
            )
        if callback_ref:
            component["callBackReference"] = {"$ref": callback_ref}
        self.add("personComponent", component)
        return component_id

    def vehicle(self, facts: VehicleFacts, *, location: str | None = None) -> str:
        component_id = _urn("vehicleid", facts["key"], self.us)
        nc: dict = {}
        identification = []
        if facts.get("vin"):
            identification.append(
                {"identificationId": [{"value": facts["vin"]}], "category": [{"value": "VIN"}]}
            )
        if facts.get("plate"):
            plate = {"identificationId": [{"value": facts["plate"]}], "category": [{"value": "LicensePlate"}]}
            if facts.get("plate_state"):
                plate["jurisdiction"] = [{"text": [{"value": facts["plate_state"]}]}]
            identification.append(plate)
        if identification:
            nc["identification"] = identification
        for key, name in (("make", "makeName"), ("model", "modelName"), ("colour", "conveyanceColorPrimary")):
            if facts.get(key):
                nc[name] = [{"value": str(facts[key])}]
        if facts.get("year"):
            nc["modelYearDate"] = [{"value": str(facts["year"])}]
        component = {
            **self.prologue(component_id),
            "vehicleRelationshipType": [facts.get("relationship") or "Involved"],
            "vehicleRelationshipTimeStamp": _ts(facts.get("at")),
        }
        if nc:
            component["ncVehicleComponent"] = nc
        if location:
            component["locationReference"] = [{"$ref": location}]
        self.add("vehicleComponent", component)
        return component_id

    def resources(self) -> list[str]:
        refs = []
        if self.incident.first_dispatched_at is None:  # no unit was ever sent: nothing to read
            return refs
        assignments = (
            Assignment.objects.filter(incident=self.incident)
            .select_related("unit__agency")
            .prefetch_related("unit__capabilities")
            .order_by("dispatched_at", "id")
        )
        for assignment in assignments:
            unit = assignment.unit
            component_id = _urn("resourceid", f"{assignment.id}.{unit.callsign}", self.us)
            changed = max(
                t
                for t in (
                    assignment.dispatched_at,
                    assignment.en_route_at,
                    assignment.on_scene_at,
                    assignment.transporting_at,
                    assignment.at_hospital_at,
                    assignment.cleared_at,
                )
                if t
            )
            component = {
                **self.prologue(component_id, changed),
                "emergencyResourceTypeCommonRegistryText": RESOURCE_TYPE.get(unit.agency.kind, "Other"),
                "emergencyResourceTypeInternalText": unit.agency.kind,
                "emergencyResourceName": f"{unit.callsign} ({unit.agency.name})",
                "resourceAttributeRegistryText": [],
                "resourceAttributeInternalText": sorted(c.code for c in unit.capabilities.all()),
                "primaryUnitStatusRegistryText": UNIT_STATUS[assignment.status],
                "secondaryUnitStatusRegistryText": [],
                "unitStatusInternal": [assignment.status],
                "agentReference": [],
            }
            if assignment.active:
                component["activeOnIncidentId"] = incident_urn(self.incident)
            self.add("emergencyResourceComponent", component)
            refs.append(component_id)
        return refs


def build_eido(
    incident: Incident, *, peer_code: str | None = None, peer_role: str = "Responding", loaded: bool = False
) -> dict:
    """The EIDO of `incident` as shared with the peer `peer_code` (whose own notes are left out), validated
    against NENA's schema (raises interstate.validation.SchemaErrors if our own document were invalid).
    `loaded`: the caller read `incident` after the change, in this transaction, with its centre and places
    (select_related("center").with_places(): a writer holding its lock); otherwise it is read again."""
    if not loaded:
        incident = Incident.objects.select_related("center").with_places().get(pk=incident.pk)
    # In the centre's language, whatever the screen language of the user whose action sent it: what travels
    # ("Narrativa: …") must not depend on who pressed the key.
    with translation.override(settings.LANGUAGE_CODE):
        document = _Builder(incident, peer_code=peer_code, peer_role=peer_role, at=timezone.now()).build()
    validate_eido(document)
    return document


def build_vehicle_eido(
    *,
    document_key: str,
    center_code: str,
    peer_code: str,
    peer_role: str,
    vehicles: list[VehicleFacts],
    sighting: dict | None = None,
) -> dict:
    """An EIDO about vehicles rather than an incident (a shared vehicle alert, a sighting of one): the agencies,
    one vehicleComponent per vehicle and, for a sighting (`{lat, lon, place, note}`), the location where it was
    read (the vehicles reference it) and a note. Validated against NENA's schema like every EIDO we emit."""
    builder = _Builder(
        None, peer_code=peer_code, peer_role=peer_role, at=timezone.now(), center_code=center_code
    )
    builder.doc = {
        **builder.prologue(_urn("incidentid", document_key, builder.us)),
        "eidoVersion": EIDO_VERSION,
        "issuingElementIdentification": f"cad.{builder.us}",
    }
    builder.agencies()
    location = None
    if sighting:
        location = _urn("locationid", document_key, builder.us)
        builder.add(
            "locationComponent",
            {
                **builder.prologue(location),
                "locationTypeDescriptionRegistryText": "Other",
                "locationByValue": pidf_lo(
                    entity=builder.doc["$id"],
                    lat=sighting["lat"],
                    lon=sighting["lon"],
                    state="",
                    municipality="",
                    address=sighting["place"],
                ),
                "locationDescriptionText": sighting["place"],
            },
        )
        builder.add(
            "notesComponent",
            {
                **builder.prologue(_urn("noteid", document_key, builder.us)),
                "notesActionComments": sighting["note"],
            },
        )
    for facts in vehicles:
        builder.vehicle(facts, location=location)
    validate_eido(builder.doc)
    return builder.doc


def tel_uri(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    return f"tel:{digits}"


def pidf_lo(*, entity: str, lat, lon, state: str, municipality: str, address: str) -> str:
    """A PIDF-LO (RFC 4119 / 5139 / 5491) document with the point (WGS 84) and the civic address."""
    ET.register_namespace("", PIDF)
    ET.register_namespace("gp", GP)
    ET.register_namespace("gml", GML)
    ET.register_namespace("ca", CA)
    presence = ET.Element(f"{{{PIDF}}}presence", {"entity": f"pres:{entity}"})
    tuple_ = ET.SubElement(presence, f"{{{PIDF}}}tuple", {"id": "incident"})
    status = ET.SubElement(tuple_, f"{{{PIDF}}}status")
    geopriv = ET.SubElement(status, f"{{{GP}}}geopriv")
    info = ET.SubElement(geopriv, f"{{{GP}}}location-info")
    if lat is not None and lon is not None:
        point = ET.SubElement(info, f"{{{GML}}}Point", {"srsName": "urn:ogc:def:crs:EPSG::4326"})
        ET.SubElement(point, f"{{{GML}}}pos").text = f"{lat:.6f} {lon:.6f}"
    civic = ET.SubElement(
        info, f"{{{CA}}}civicAddress", {"{http://www.w3.org/XML/1998/namespace}lang": "es-MX"}
    )
    ET.SubElement(civic, f"{{{CA}}}country").text = "MX"
    for tag, value in (("A1", state), ("A3", municipality), ("LOC", address)):
        if value:
            ET.SubElement(civic, f"{{{CA}}}{tag}").text = value
    ET.SubElement(geopriv, f"{{{GP}}}usage-rules")
    return ET.tostring(presence, encoding="unicode")


def read_pidf_lo(text: str) -> tuple[float | None, float | None, str]:
    """(lat, lon, address text) from a PIDF-LO: the first gml:pos, and the civic address as one line."""
    root = _parse_pidf(text)
    return (None, None, "") if root is None else _read_pidf_root(root)


def _parse_pidf(text: str):
    try:
        return SafeET.fromstring(text)
    except (SafeET.ParseError, ValueError):  # defusedxml's refusals (entities, DTDs) are ValueErrors
        return None


def _read_pidf_root(root) -> tuple[float | None, float | None, str]:
    lat = lon = None
    pos = root.find(f".//{{{GML}}}pos")
    if pos is not None and pos.text:
        parts = pos.text.split()
        try:
            lat, lon = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            lat = lon = None
        if lat is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
            lat = lon = None
    civic = root.find(f".//{{{CA}}}civicAddress")
    address = ""
    if civic is not None:
        loc = civic.findtext(f"{{{CA}}}LOC") or ""
        parts = [
            civic.findtext(f"{{{CA}}}{tag}") or "" for tag in ("RD", "HNO", "A5", "A4", "A3", "A2", "A1")
        ]
        address = loc or ", ".join(part for part in parts if part)
    return lat, lon, address.strip()


# --- Reading ----------------------------------------------------------------------------------
FOLIO_MAX = 64
# Components whose lastUpdateTimeStamp a receiver reads (as times: a note's, a unit's status).
_TIMED = ("incidentComponent", "notesComponent", "emergencyResourceComponent", "locationComponent")


def content_errors(document: dict) -> dict[str, list[str]]:
    """What a receiver needs of an incident's EIDO beyond NENA's schema, which leaves almost everything
    optional and does not check formats: the sender's folio, locations it can read, times it can read. Field
    paths -> reasons; empty when the document can be applied as it is (never half of it, silently)."""
    problems: dict[str, list[str]] = {}
    component = document.get("incidentComponent")
    folio = component.get("internalIncidentId") if isinstance(component, dict) else None
    if not isinstance(folio, str) or not 0 < len(folio.strip()) <= FOLIO_MAX:
        problems["eido.incidentComponent.internalIncidentId"] = [
            _("El folio del incidente en el centro de origen: requerido, hasta %(n)s caracteres.")
            % {"n": FOLIO_MAX}
        ]
    for index, location in enumerate(document.get("locationComponent") or []):
        if isinstance(location, dict) and location.get("locationByValue"):
            problem = _pidf_problem(location["locationByValue"])
            if problem:
                problems[f"eido.locationComponent[{index}].locationByValue"] = [problem]
    for key in _TIMED:
        items = document.get(key) or []
        for index, item in enumerate([items] if isinstance(items, dict) else items):
            stamp = item.get("lastUpdateTimeStamp") if isinstance(item, dict) else None
            if stamp is not None and instant(stamp) is None:
                where = key if key == "incidentComponent" else f"{key}[{index}]"
                problems[f"eido.{where}.lastUpdateTimeStamp"] = [
                    _("Fecha y hora ISO 8601 con zona horaria, p. ej. 2026-11-28T13:11:28-06:00.")
                ]
    return problems


def instant(value) -> datetime | None:
    """An ISO 8601 time with its offset, else None: NENA's schema checks no format, and a time without an
    offset would be guessed."""
    try:
        at = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


def _pidf_problem(text) -> str | None:
    """Why a locationByValue cannot be read (None when it can): not PIDF-LO XML, or a gml:pos that is not
    «lat lon» in WGS84. A civic address without a point is fine."""
    if not isinstance(text, str):
        return _("Se espera un documento PIDF-LO (XML).")
    root = _parse_pidf(text)
    if root is None:
        return _("No es un documento PIDF-LO (XML) legible.")
    if root.find(f".//{{{GML}}}pos") is not None and _read_pidf_root(root)[0] is None:
        return _("gml:pos debe ser «latitud longitud» en WGS84 (−90…90, −180…180).")
    return None


def _by_id(document: dict, key: str) -> dict[str, dict]:
    return {c["$id"]: c for c in document.get(key, []) if isinstance(c, dict) and "$id" in c}


def _refs(component: dict, key: str) -> Iterable[str]:
    value = component.get(key) or []
    if isinstance(value, dict):
        value = [value]
    return [ref["$ref"] for ref in value if isinstance(ref, dict) and "$ref" in ref]


def read_eido(document: dict) -> EidoFacts:
    """What a receiver applies from a valid EIDO (validate it first)."""
    facts = EidoFacts(incident_id=document["$id"])
    component = document.get("incidentComponent") or {}
    facts.folio = str(component.get("internalIncidentId") or "")[:64]
    facts.type_code = str(component.get("incidentTypeInternalCode") or "")
    facts.type_text = str(component.get("incidentTypeInternalText") or "")
    facts.common_type = str(component.get("incidentTypeCommonRegistryText") or "")
    internal = component.get("incidentStatusInternalText") or []
    common = component.get("incidentStatusCommonRegistryText") or []
    status_by_common = {value: key for key, value in INCIDENT_STATUS.items()}
    if internal and internal[0] in IncidentStatus.values:
        facts.status = internal[0]
    elif common:
        facts.status = status_by_common.get(common[0], str(common[0])[:32])
    for disposition in component.get("dispositionComponent") or []:
        facts.disposition = str(disposition.get("dispositionDescriptionText") or "")[:200]
    locations = _by_id(document, "locationComponent")
    for ref in _refs(component, "locationReference") or list(locations):
        location = locations.get(ref)
        if location is None:
            continue
        lat, lon, address = read_pidf_lo(location.get("locationByValue") or "")
        facts.lat, facts.lon = lat, lon
        facts.address = (location.get("locationDescriptionText") or address)[:300]
        break
    for note in document.get("notesComponent") or []:
        facts.notes.append(
            {
                "id": note["$id"],
                "text": str(note.get("notesActionComments") or ""),
                "at": note.get("lastUpdateTimeStamp"),
                "agency": (note.get("updatedByAgencyReference") or {}).get("$ref", ""),
            }
        )
    for resource in document.get("emergencyResourceComponent") or []:
        facts.resources.append(
            {
                "id": resource["$id"],
                "name": str(resource.get("emergencyResourceName") or ""),
                "type": str(resource.get("emergencyResourceTypeCommonRegistryText") or ""),
                "status": str(resource.get("primaryUnitStatusRegistryText") or ""),
                "status_internal": (resource.get("unitStatusInternal") or [""])[0],
                "active": bool(resource.get("activeOnIncidentId")),
                "updated_at": resource.get("lastUpdateTimeStamp"),
            }
        )
    for vehicle in document.get("vehicleComponent") or []:
        facts.vehicles.append({"id": vehicle["$id"], **vehicle_facts(vehicle)})
    calls = document.get("callComponent") or []
    started = [instant(call.get("callStartTimestamp")) for call in calls]
    facts.call_started_at = min((at for at in started if at), default=None)
    if calls and all(str(call.get("localCallType")) == Line.ANONYMOUS for call in calls):
        facts.line = Line.ANONYMOUS
    else:
        persons = _by_id(document, "personComponent")
        callbacks = _by_id(document, "callbackComponent")
        for person in persons.values():
            if "Caller" not in (person.get("personIncidentRoleRegistryText") or []):
                continue
            names = (person.get("ncPersonComponent") or {}).get("name") or []
            full = (names[0].get("personFullName") or [{}])[0].get("value", "") if names else ""
            facts.caller_name = str(full)[:160]
            for ref in _refs(person, "callBackReference"):
                uris = (callbacks.get(ref) or {}).get("callBackInformationUri") or []
                tel = next((uri for uri in uris if str(uri).startswith("tel:")), "")
                facts.callback_number = tel.removeprefix("tel:")[:20]
            break
    return facts


def vehicle_facts(vehicle: dict) -> dict:
    """Plate, VIN, colour, make, model, year and relationship of an EIDO vehicleComponent (those it has)."""
    nc = vehicle.get("ncVehicleComponent") or {}
    found = {"relationship": ", ".join(vehicle.get("vehicleRelationshipType") or [])}
    for identification in nc.get("identification") or []:
        category = ((identification.get("category") or [{}])[0]).get("value", "")
        value = ((identification.get("identificationId") or [{}])[0]).get("value", "")
        if category == "VIN":
            found["vin"] = value
        elif value:
            found["plate"] = value
    for key, name in (
        ("make", "makeName"),
        ("model", "modelName"),
        ("colour", "conveyanceColorPrimary"),
        ("year", "modelYearDate"),
    ):
        values = nc.get(name) or []
        if values:
            found[key] = str(values[0].get("value", ""))
    return {key: value for key, value in found.items() if value}
