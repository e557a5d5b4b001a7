"""Sensor UI in a real Chromium: a plate-reader hit raises a distinct alert row on the dispatch console,
opens an incident from it, and the dashboard map draws the plate's track; the panic-button panel lists
the buttons with their state and history."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
SENSORS = """
from datetime import timedelta
from django.utils import timezone
from accounts.tokens import issue_token
from accounts.models import Role, User
from cad.models import Center
from sensors.models import Hotlist, HotlistEntry, LprReader, PanicButton
center = Center.objects.get(code="MEX")
LprReader.objects.get_or_create(code="ARCO-T1", defaults=dict(center=center, name="Arco Toluca km 42", lat=19.30, lon=-99.50, direction="E"))
LprReader.objects.get_or_create(code="ARCO-T2", defaults=dict(center=center, name="Arco Lerma km 52", lat=19.28, lon=-99.40, direction="E"))
owner = User.objects.get(username="supervisor")
hotlist, _ = Hotlist.objects.get_or_create(center=center, name="Robo de carga UI", defaults=dict(kind="cargo_theft", source="FGJEM", owner=owner))
HotlistEntry.objects.get_or_create(hotlist=hotlist, plate_key="P801234", defaults=dict(plate="PBO1234", reason="Tractocamión robado", valid_from=timezone.now() - timedelta(days=1), vehicle={"make": "Kenworth", "model": "T680"}))
PanicButton.objects.get_or_create(account="0A11", defaults=dict(center=center, name="Botón Plaza Toluca", lat=19.29, lon=-99.65, address="Plaza de los Mártires", camera_ref="CAM-TOL-0042"))
device, _ = User.objects.get_or_create(username="lpr-ui", defaults=dict(role=Role.DEVICE, center=center))
# Across states: CDMX as a registered peer; its shared list here; our shared truck published to it.
from interstate.models import Peer, VehicleAlert
from interstate.services import peer_register
if not Peer.objects.filter(code="CDMX").exists():
    peer_register(code="CDMX", name="C5 CDMX", base_url="http://cdmx.invalid", inbound_key_id="cdmx-ui", inbound_secret="cdmx-ui-secret")
peer = Peer.objects.get(code="CDMX")
theirs, _ = Hotlist.objects.get_or_create(center=center, peer="CDMX", kind="stolen", defaults=dict(name="CDMX: robo", source="C5 CDMX", owner=peer.service_user))
HotlistEntry.objects.get_or_create(hotlist=theirs, plate_key="XYZ9876", defaults=dict(plate="XYZ9876", reason="Robo CDMX", valid_from=timezone.now() - timedelta(days=1), remote_id="urn:uuid:cdmx-ui"))
truck, _ = HotlistEntry.objects.get_or_create(hotlist=hotlist, plate_key="LF12345", defaults=dict(plate="LF12345", reason="Tractocamión robado", valid_from=timezone.now() - timedelta(days=1)))
VehicleAlert.objects.get_or_create(source_key=f"hotlist-entry:{truck.id}", defaults=dict(alert_id="urn:uuid:mex-ui-truck", plate=truck.plate, list_kind="cargo_theft", peers=["CDMX"]))
print(issue_token(device))
"""


@pytest.fixture(scope="module")
def device_token(cad_server, cad_server_env):
    """Readers, a listed plate, a panic button and a device token in the browser test's database."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", SENSORS],
        env=cad_server_env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _post_read(base: str, token: str, plate: str, reader: str) -> dict:
    body = {"reads": [{"reader": reader, "plate": plate, "read_at": timezone.now().isoformat()}]}
    response = httpx.post(
        f"{base}/api/v1/lpr/reads", json=body, headers={"Authorization": f"Token {token}"}, timeout=15
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_plate_hit_alert_row_opens_incident_and_track_on_dashboard(
    login, cad_server, device_token, screenshot_dir
):
    page = login("despachador")
    page.goto("/console/")
    page.wait_for_function("window.cadRealtime && window.cadRealtime.last.console !== null")
    expect(page.locator("#panic-body tr")).to_have_count(1, timeout=10_000)
    page.locator("#panic-panel summary").click()
    page.locator("#panic-body tr").first.click()
    expect(page.locator("#panic-detail")).to_contain_text("CAM-TOL-0042")

    assert _post_read(cad_server, device_token, "P80-1234", "ARCO-T1")["hits"] == 1
    row = page.locator("#lpr-alerts li.lpr-hit").first
    expect(row).to_be_visible(timeout=5_000)
    expect(row).to_contain_text("PBO1234")
    expect(row).to_contain_text("Kenworth")
    page.screenshot(path=str(screenshot_dir / "sensors-lpr-alert.png"))
    row.get_by_role("button", name="Abrir incidente").click()
    expect(page.locator("#lpr-alerts a.folio").first).to_be_visible(timeout=5_000)

    _post_read(cad_server, device_token, "PBO-1234", "ARCO-T2")
    board = login("supervisor")
    board.goto("/dashboard/")
    board.wait_for_function("window.cadMap && window.cadMap.map")
    board.fill("#plate-track-input", "PBO 1234")
    board.click("#plate-track-form button[type=submit]")
    expect(board.locator("#plate-track-count")).to_have_text("2", timeout=5_000)
    track = board.evaluate("window.cadPlateTrack")
    assert track["points"] == 2 and track["layers"] == 3  # the line and a marker per read
    board.screenshot(path=str(screenshot_dir / "sensors-plate-track.png"))
    board.fill("#plate-track-input", "---")  # no letters or digits: the API's reason, not "HTTP 400"
    board.click("#plate-track-form button[type=submit]")
    expect(board.locator("#plate-track-count")).to_have_text("Placa inválida: de 4 a 10 letras y dígitos.")


def test_across_states_a_peers_list_and_a_peers_sighting_are_labelled_on_the_console(
    login, cad_server, device_token, screenshot_dir
):
    import json
    from datetime import UTC, datetime

    from interstate.eido import build_vehicle_eido
    from tests.interstate_harness import peer_headers

    page = login("despachador")
    page.goto("/console/")
    page.wait_for_function("window.cadRealtime && window.cadRealtime.last.console !== null")

    # Our arch reads a plate of CDMX's shared list: the row names the list's owner.
    assert _post_read(cad_server, device_token, "XYZ-9876", "ARCO-T2")["hits"] == 1
    theirs = page.locator("#lpr-alerts li.lpr-hit", has_text="XYZ9876")
    expect(theirs).to_contain_text("Lista de CDMX", timeout=5_000)

    # CDMX's arch read our shared truck: its signed sighting becomes a row read in CDMX, at its arch.
    read_at = datetime.now(UTC).replace(microsecond=0)
    body = {
        "vehicleSighting": {
            "alertId": "urn:uuid:mex-ui-truck",
            "readPlate": "LF12345",
            "readAt": read_at.isoformat(),
            "reader": {"code": "CDMX-ARCO-9", "name": "Arco Calzada Vallejo", "direction": "S"},
        },
        "requestId": "urn:uuid:mex-ui-truck",
        "eido": build_vehicle_eido(
            document_key="ui-sighting",
            center_code="CDMX",
            peer_code="MEX",
            peer_role="Requesting",
            vehicles=[{"key": "ui-sighting", "plate": "LF12345", "at": read_at}],
            sighting={"lat": 19.489, "lon": -99.148, "place": "Arco Calzada Vallejo", "note": "Leída"},
        ),
    }
    data = json.dumps(body).encode()
    path = "/api/v1/interstate/messages"
    headers = peer_headers(
        "POST", path, data, key_id="cdmx-ui", secret="cdmx-ui-secret", idempotency_key="ui-sighting-1"
    )
    response = httpx.post(f"{cad_server}{path}", content=data, headers=headers, timeout=15)
    assert response.status_code == 200, response.text
    seen = page.locator("#lpr-alerts li.lpr-hit", has_text="Arco Calzada Vallejo")
    expect(seen).to_contain_text("Leída en CDMX", timeout=5_000)
    expect(seen).to_contain_text("LF12345")
    page.locator("#sensors-panel").screenshot(path=str(screenshot_dir / "sensors-lpr-across-states.png"))
