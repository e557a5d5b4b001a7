import random
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from geo import locator
from geo.models import Jurisdiction
from geo.services import (
    INEGI_SOURCE,
    JurisdictionImportError,
    import_feature_collection,
    import_geojson_file,
    shipped_files,
)

pytestmark = pytest.mark.django_db

TOLUCA = (19.2826, -99.6557)
CDMX = (19.4326, -99.1332)
GULF_OF_MEXICO = (21.0, -94.0)


@pytest.fixture(autouse=True)
def fresh_locator():
    """The locator cache is process-wide; tests roll back the rows it was built from."""
    locator.invalidate()
    yield
    locator.invalidate()


@pytest.fixture
def states():
    return sum(import_geojson_file(path=path) for path in shipped_files())


def square(lon: float, lat: float, half: float = 0.02) -> dict:
    ring = [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


def collection(*features) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def test_import_shipped_states_and_locate(states):
    assert states == 6
    assert set(Jurisdiction.objects.values_list("cvegeo", flat=True)) == {"09", "13", "15", "17", "22", "29"}
    mexico = Jurisdiction.objects.get(cvegeo="15")
    assert mexico.kind == Jurisdiction.Kind.STATE
    assert mexico.name == "Estado de México"
    assert INEGI_SOURCE in mexico.source
    assert mexico.min_lat < TOLUCA[0] < mexico.max_lat

    assert locator.locate(*TOLUCA)[0].cvegeo == "15"
    assert locator.locate(*CDMX)[0].cvegeo == "09"
    assert locator.locate(*GULF_OF_MEXICO) == (None, None)


def test_reimport_is_an_upsert(states):
    assert import_geojson_file(path=shipped_files()[0]) == 1
    assert Jurisdiction.objects.count() == 6


def test_municipality_is_linked_to_state_and_located(states):
    toluca = {
        "type": "Feature",
        "properties": {"cve_ent": "15", "cve_mun": "106", "cvegeo": "15106", "nomgeo": "Toluca"},
        "geometry": square(TOLUCA[1], TOLUCA[0]),
    }
    assert import_feature_collection(data=collection(toluca), source="prueba") == 1

    municipality = Jurisdiction.objects.get(cvegeo="15106")
    assert municipality.kind == Jurisdiction.Kind.MUNICIPALITY
    assert municipality.parent.cvegeo == "15"
    state, found = locator.locate(*TOLUCA)
    assert (state.cvegeo, found.cvegeo, found.name) == ("15", "15106", "Toluca")
    assert locator.locate(*CDMX)[1] is None


def test_municipality_loaded_before_its_state_is_linked_later():
    municipality = {
        "type": "Feature",
        "properties": {"CVEGEO": "29001", "NOMGEO": "Amaxac de Guerrero"},
        "geometry": square(-98.17, 19.35),
    }
    import_feature_collection(data=collection(municipality), source="prueba")
    assert Jurisdiction.objects.get(cvegeo="29001").parent is None

    import_geojson_file(path=next(p for p in shipped_files() if p.name.startswith("29")))
    assert Jurisdiction.objects.get(cvegeo="29001").parent.cvegeo == "29"


def test_invalid_geometry_is_repaired():
    bowtie = {"type": "Polygon", "coordinates": [[[-99, 19], [-98, 20], [-98, 19], [-99, 20], [-99, 19]]]}
    feature = {"type": "Feature", "properties": {"cvegeo": "15", "name": "Moño"}, "geometry": bowtie}
    import_feature_collection(data=collection(feature), source="prueba")
    assert Jurisdiction.objects.get(cvegeo="15").geometry["type"] in ("Polygon", "MultiPolygon")
    assert locator.locate(19.5, -98.9)[0] is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "no tiene elementos"),
        (collection({"type": "Feature", "properties": {"cvegeo": "15"}, "geometry": None}), "Elemento 0"),
        (
            collection(
                {"type": "Feature", "properties": {"cvegeo": "15", "name": "A"}, "geometry": square(-99, 19)},
                {"type": "Feature", "properties": {"cvegeo": "1", "name": "B"}, "geometry": square(-99, 19)},
            ),
            "Elemento 1",
        ),
        (
            collection({"type": "Feature", "properties": {"cvegeo": "15"}, "geometry": square(-99, 19)}),
            "falta el nombre",
        ),
        (
            collection(
                {"type": "Feature", "properties": {"cvegeo": "15", "name": "A"}, "geometry": square(19, 200)}
            ),
            "WGS84",
        ),
    ],
)
def test_invalid_input_is_a_clear_error_and_writes_nothing(data, message):
    with pytest.raises(JurisdictionImportError, match=message) as excinfo:
        import_feature_collection(data=data, source="prueba")
    assert excinfo.value.status == 400
    assert Jurisdiction.objects.count() == 0


def test_locate_is_fast_and_thread_safe(states):
    locator.locate(*TOLUCA)  # warm-up
    started = time.perf_counter()
    for i in range(2000):
        locator.locate(TOLUCA[0] + i * 1e-6, TOLUCA[1])
    assert (time.perf_counter() - started) / 2000 < 0.001

    results, errors = [], []

    def work():
        try:
            for _ in range(200):
                results.append(locator.locate(*CDMX)[0].cvegeo)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(results) == {"09"}


def test_command(tmp_path, capsys):
    call_command("import_jurisdictions")
    out = capsys.readouterr().out
    assert "[6/6]" in out and "Fuente: INEGI, Marco Geoestadístico" in out
    call_command("import_jurisdictions", "--all")
    assert Jurisdiction.objects.count() == 7

    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CommandError, match="bad.geojson"):
        call_command("import_jurisdictions", str(bad))


def test_places_of_answers_as_locate_point_by_point(states):
    """places_of (one vectorised look-up for many points) = locate point by point: overlapping
    municipalities (the first by cvegeo wins), one whose state is not the state covering it (its own state
    is reported), points in no boundary and points without coordinates."""
    features = [
        {
            "type": "Feature",
            "properties": {"cve_ent": "15", "cve_mun": "106", "cvegeo": "15106", "nomgeo": "Toluca"},
            "geometry": square(TOLUCA[1], TOLUCA[0], 0.05),
        },
        {
            "type": "Feature",
            "properties": {"cve_ent": "15", "cve_mun": "051", "cvegeo": "15051", "nomgeo": "Lerma"},
            "geometry": square(TOLUCA[1] + 0.05, TOLUCA[0], 0.05),
        },
        {  # a Mexico City municipality drawn over the Estado de México
            "type": "Feature",
            "properties": {"cve_ent": "09", "cve_mun": "010", "cvegeo": "09010", "nomgeo": "Álvaro Obregón"},
            "geometry": square(TOLUCA[1] - 0.05, TOLUCA[0] + 0.05, 0.03),
        },
    ]
    import_feature_collection(data=collection(*features), source="prueba")
    rng = random.Random(5)
    points = [
        (TOLUCA[0] + rng.uniform(-0.15, 0.15), TOLUCA[1] + rng.uniform(-0.15, 0.15)) for _ in range(300)
    ]
    points += [CDMX, GULF_OF_MEXICO, (None, None), (19.3, None)]
    rng.shuffle(points)

    def by_locate(lat, lon):
        state, municipality = (
            locator.locate(lat, lon) if lat is not None and lon is not None else (None, None)
        )
        return (
            state and (state.name, state.cvegeo),
            municipality and (municipality.name, municipality.cvegeo),
        )

    places = locator.places_of(points)
    got = [
        (
            p["state"] and (p["state"], p["state_cvegeo"]),
            p["municipality"] and (p["municipality"], p["municipality_cvegeo"]),
        )
        for p in places
    ]
    assert got == [by_locate(*point) for point in points]
    assert {p["municipality_cvegeo"] for p in places} == {"15106", "15051", "09010", None}
    assert {p["state_cvegeo"] for p in places if p["municipality_cvegeo"] == "09010"} == {"09"}
    assert locator.place_of(*points[0]) == places[0]
    assert locator.places_of([]) == []


def test_incidents_are_read_with_place_names_but_never_the_boundaries(states, center, call_taker):
    """An incident's state is a join for its name: the boundary (tens of kB of GeoJSON, parsed on every load)
    stays in the database, in the console list, the detail, and under every incident service's lock."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from incidents import selectors, services
    from incidents.models import CallDisposition, Incident, Line
    from tests.factories import IncidentTypeFactory

    incident = services.take_call(
        center=center,
        by=call_taker,
        line=Line.EMERGENCY,
        disposition=CallDisposition.NEW_INCIDENT,
        incident_type=IncidentTypeFactory(),
        lat=TOLUCA[0],
        lon=TOLUCA[1],
    ).incident
    for loaded in (
        selectors.incident_get(folio=incident.folio, center_id=center.id),
        selectors.incident_list_for_console(center_id=center.id).get(pk=incident.pk),
        Incident.objects.with_places().get(pk=incident.pk),
    ):
        with CaptureQueriesContext(connection) as queries:
            assert loaded.state.name == "Estado de México"
        assert not queries.captured_queries  # joined
        assert "geometry" in loaded.state.get_deferred_fields()
    with CaptureQueriesContext(connection) as queries:
        services.add_note(folio=incident.folio, center_id=center.id, text="nota", by=call_taker)
    assert not any('"geometry"' in q["sql"] for q in queries.captured_queries)
