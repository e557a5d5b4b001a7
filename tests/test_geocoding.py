"""Geocoding: the AGEEML importer (real column formats), the offline gazetteer, the Nominatim adapter
against a small local fake Nominatim server (the edge of the world), and the search/reverse API."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from geo.geocoding import GazetteerGeocoder, GeocoderUnavailable, NominatimGeocoder, words_of
from geo.models import Locality
from geo.services import (
    DATA_DIR,
    SAMPLE_DIR,
    LocalityImportError,
    import_geojson_file,
    import_localities,
    import_localities_file,
)

pytestmark = pytest.mark.django_db

OLD_FORMAT = (
    "Mapa,Cve_Ent,Nom_Ent,Nom_Abr,Cve_Mun,Nom_Mun,Cve_Loc,Nom_Loc,Ámbito,Latitud,Longitud,Altitud,Pob_Total\r\n"
    '151060023,15,México,Mex.,106,Toluca,0023,San Pablo Autopan,U,"19°20\'45.000"" N","99°39\'10.000"" W",2600,1000\r\n'
    "151060999,15,México,Mex.,106,Toluca,0999,Sin coordenadas,R,,,,\r\n"
)


@pytest.fixture
def gazetteer():
    import_geojson_file(path=DATA_DIR / "15-estado-de-mexico.geojson")
    import_geojson_file(path=SAMPLE_DIR / "municipios-15-aproximados.geojson")
    return import_localities_file(path=SAMPLE_DIR / "localidades-muestra.csv")


def test_sample_and_the_older_latin1_format_import(gazetteer):
    assert gazetteer == (48, 0)
    toluca = Locality.objects.get(cvegeo="151060001")
    assert (toluca.name, toluca.municipality_name, toluca.state_name) == (
        "Toluca de Lerdo",
        "Toluca",
        "México",
    )
    # Older downloads: mixed-case header, "Mapa" for CVEGEO, Latin-1, DMS only; rows without coordinates skip.
    imported, skipped = import_localities(raw=OLD_FORMAT.encode("latin-1"), source="AGEEML 2010")
    assert (imported, skipped) == (1, 1)
    autopan = Locality.objects.get(cvegeo="151060023")
    assert autopan.lat == pytest.approx(19.345833, abs=1e-5) and autopan.lon == pytest.approx(
        -99.652778, abs=1e-5
    )
    assert autopan.population == 1000 and autopan.state_name == "México"
    # Re-import updates by CVEGEO, never duplicates.
    assert import_localities_file(path=SAMPLE_DIR / "localidades-muestra.csv", states={"02"}) == (1, 0)
    assert Locality.objects.count() == 49


def test_a_bad_row_imports_nothing():
    bad = OLD_FORMAT.replace('99°39\'10.000"" W', "noventa y nueve").encode("latin-1")
    with pytest.raises(LocalityImportError, match="línea 2"):
        import_localities(raw=bad, source="x")
    with pytest.raises(LocalityImportError, match="faltan columnas"):
        import_localities(raw=b"a,b,c\r\n1,2,3\r\n", source="x")
    assert Locality.objects.count() == 0


def test_gazetteer_search_and_reverse(gazetteer):
    geocoder = GazetteerGeocoder()
    assert words_of("Av. Independencia 100 esq. Juárez, col. Centro, Toluca") == [
        "independencia",
        "juarez",
        "centro",
        "toluca",
    ]
    first = geocoder.search("Av. Independencia 100, Toluca", cve_ent="15")[0]
    assert first.label == "Toluca de Lerdo, Toluca, México" and first.cvegeo == "151060001"
    assert geocoder.search("NEZAHUALCOYOTL")[0].label == "Ciudad Nezahualcóyotl, Nezahualcóyotl, México"
    assert geocoder.search("calle 5") == []
    near_metepec = geocoder.reverse(19.2530, -99.6040)
    assert near_metepec.label.startswith("Metepec") and 0 < near_metepec.distance_m < 500


class FakeNominatim(BaseHTTPRequestHandler):
    """Answers /search and /reverse like Nominatim's jsonv2 (a canned Toluca), /status 500 otherwise."""

    requests: list = []

    def do_GET(self):  # noqa: N802 - http.server's API
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        FakeNominatim.requests.append((url.path, query, self.headers.get("User-Agent")))
        toluca = {
            "lat": "19.2924",
            "lon": "-99.6569",
            "display_name": "Avenida Independencia, Centro, Toluca de Lerdo, Estado de México, México",
            "address": {
                "road": "Avenida Independencia",
                "city": "Toluca de Lerdo",
                "state": "Estado de México",
            },
        }
        if url.path == "/search":
            body = [toluca, {"lat": "not a number", "lon": "1"}] if "toluca" in query["q"][0].lower() else []
        elif url.path == "/reverse":
            body = toluca
        else:
            self.send_response(500)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def nominatim_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeNominatim)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_nominatim_adapter_against_a_local_server(nominatim_url):
    geocoder = NominatimGeocoder(nominatim_url, timeout=2)
    found = geocoder.search("Independencia, Toluca")
    assert len(found) == 1  # the malformed item is dropped
    assert (found[0].lat, found[0].kind, found[0].municipality) == (19.2924, "address", "Toluca de Lerdo")
    path, query, agent = FakeNominatim.requests[-1]
    assert path == "/search" and query["format"] == ["jsonv2"] and query["countrycodes"] == ["mx"]
    assert agent.startswith("c4-cad")
    place = geocoder.reverse(19.29, -99.65)
    assert place.state == "Estado de México" and 0 < place.distance_m < 2000
    with pytest.raises(GeocoderUnavailable):
        NominatimGeocoder(f"{nominatim_url}/broken", timeout=2).search("x")
    with pytest.raises(GeocoderUnavailable):
        NominatimGeocoder("http://127.0.0.1:9", timeout=1).search("x")  # nothing listens there


def test_geocode_api_with_each_geocoder(gazetteer, call_taker, api_client_for, settings, nominatim_url):
    client = api_client_for(call_taker)
    found = client.get("/api/v1/geocode/search", {"q": "Tijuana"}).json()
    assert found["geocoder"] == "gazetteer"
    assert found["candidates"][0]["label"] == "Tijuana, Baja California"
    assert found["candidates"][0]["inside_service_area"] is False  # the console then asks to confirm
    assert client.get("/api/v1/geocode/search").status_code == 400
    reverse = client.get("/api/v1/geocode/reverse", {"lat": 19.2530, "lon": -99.6040}).json()
    assert (reverse["state"], reverse["municipality"], reverse["municipality_cvegeo"]) == (
        "Estado de México",
        "Metepec",
        "15054",
    )
    assert reverse["inside_service_area"] is True and reverse["place"]["label"].startswith("Metepec")

    settings.CAD = {**settings.CAD, "GEOCODER": "nominatim", "GEOCODER_URL": nominatim_url}
    via_nominatim = client.get("/api/v1/geocode/search", {"q": "toluca"}).json()
    assert via_nominatim["geocoder"] == "nominatim" and via_nominatim["candidates"][0]["inside_service_area"]
    settings.CAD = {**settings.CAD, "GEOCODER_URL": f"{nominatim_url}/broken"}
    down = client.get("/api/v1/geocode/search", {"q": "toluca"})
    assert down.status_code == 503 and down.json()["code"] == "geocoder_unavailable"
    # Reverse still answers the jurisdiction (from the INEGI boundaries) when the geocoder is down.
    still = client.get("/api/v1/geocode/reverse", {"lat": 19.2530, "lon": -99.6040}).json()
    assert still["municipality"] == "Metepec" and still["place"] is None and still["warning"]
