"""Panic buttons: the SIA DC-09 receiver driven with real frames (SIA-DCS, ADM-CID, AES; bad CRC,
unknown account, stale timestamp), the HTTP device endpoint, merging presses, heartbeat supervision."""

import asyncio
import re
import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import Role
from cad import periodic
from cad.models import Event
from incidents.models import Incident, IncidentStatus, Priority
from incidents.services import close_incident
from sensors.dc09 import Dc09Server, load_accounts
from sensors.dialler import build_frame, crc16, send_frame
from sensors.models import PanicButton, PanicSignal
from sensors.supervision import declare_silent_offline
from tests.factories import AgencyFactory, IncidentTypeFactory

AES_KEY = "0123456789ABCDEF"


@pytest.fixture
def panic_type(db):
    return IncidentTypeFactory(
        code="30402", name="Botón de emergencia activado", tipo_name="Seguridad", priority=Priority.ALTA
    )


def make_button(center, account="1A2B", **kwargs):
    defaults = {"name": f"Botón {account}", "lat": 19.29, "lon": -99.65, "address": "Plaza 1, Toluca"}
    return PanicButton.objects.create(center=center, account=account, **{**defaults, **kwargs})


@pytest.fixture(scope="module")
def receiver():
    """The receiver's asyncio server in a background loop on a free port; `reload()` re-reads accounts."""
    loop = asyncio.new_event_loop()
    dc09 = Dc09Server({})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(asyncio.start_server(dc09.handle, "127.0.0.1", port))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)

    class Receiver:
        def reload(self):
            dc09.accounts = load_accounts()

        def send(self, frame: bytes, timeout: float = 5) -> str | None:
            return asyncio.run(send_frame("127.0.0.1", port, frame, timeout=timeout))

    yield Receiver()
    loop.call_soon_threadsafe(loop.stop)  # the daemon thread ends with the loop
    dc09.close()


def test_crc_is_crc16_arc():
    assert crc16("123456789") == "BB3D"  # the CRC-16/ARC check value


@pytest.mark.django_db(transaction=True)
def test_dc09_press_opens_then_merges_and_bad_frames_are_refused(receiver, center, panic_type, make_user):
    agency = AgencyFactory(center=center)
    button = make_button(center, agency=agency, camera_ref="CAM-TOL-0042")
    encrypted = make_button(center, account="CAFE01", aes_key=AES_KEY, lat=19.5, lon=-99.2)
    receiver.reload()

    assert receiver.send(build_frame(button.account, code="PA", sequence=1)) == "ACK"
    incident = Incident.objects.get()
    assert (incident.type_code, incident.priority, incident.lat, incident.lon) == (
        "30402",
        "ALTA",
        19.29,
        -99.65,
    )
    assert incident.address == "Plaza 1, Toluca" and incident.calls.get().channel == "panic_button"
    # A second press within the window joins the same incident.
    assert receiver.send(build_frame(button.account, code="PA", sequence=2)) == "ACK"
    assert Incident.objects.count() == 1 and incident.calls.count() == 2
    # The panel retransmits (same sequence) when an answer is late: acknowledged, not stored twice.
    assert receiver.send(build_frame(button.account, code="PA", sequence=2)) == "ACK"
    assert incident.calls.count() == 2
    assert list(PanicSignal.objects.filter(button=button).values_list("merged", flat=True)) == [True, False]

    # ADM-CID 1120 (panic), AES-encrypted for this account.
    assert receiver.send(build_frame("CAFE01", code="1120", protocol="ADM-CID", key=AES_KEY)) == "ACK"
    assert Incident.objects.filter(lat=19.5).count() == 1
    # Heartbeat (RP): acknowledged, moves last_seen, opens nothing.
    encrypted.refresh_from_db()
    before = encrypted.last_seen_at
    assert receiver.send(build_frame("CAFE01", code="RP", key=AES_KEY)) == "ACK"
    encrypted.refresh_from_db()
    assert encrypted.last_seen_at > before

    stale = datetime.now(UTC) - timedelta(minutes=5)
    assert (
        receiver.send(build_frame(button.account, bad_crc=True), timeout=0.5) is None
    )  # silent: panel retries
    assert receiver.send(build_frame("BEEF99")) == "NAK"
    assert receiver.send(build_frame(button.account, at=stale)) == "NAK"
    assert receiver.send(build_frame("CAFE01", key="FEDCBA9876543210"), timeout=0.5) in ("NAK", "DUH", None)
    assert receiver.send(build_frame(button.account, code="KC")) == "DUH"  # not a SIA code
    assert Incident.objects.count() == 2
    pressed = Event.objects.filter(type="panic.pressed").order_by("seq")
    assert [e.payload["merged"] for e in pressed] == [False, True, False]
    assert pressed[0].payload["button"]["camera_ref"] == "CAM-TOL-0042"


@pytest.mark.django_db(transaction=True)
def test_dc09_signal_not_stored_is_nakked_so_the_panel_retries(receiver, center, settings):
    make_button(center, account="ABC")
    receiver.reload()
    settings.CAD = {**settings.CAD, "PANIC_INCIDENT_TYPE": "99999"}  # misconfigured type: nothing stored
    assert receiver.send(build_frame("ABC")) == "NAK"
    assert PanicSignal.objects.count() == 0 and Incident.objects.count() == 0


@pytest.mark.django_db
def test_http_device_endpoint(center, panic_type, make_user, api_client_for):
    make_button(center, account="00F1")
    device = api_client_for(make_user(Role.DEVICE, "button-gw"))
    first = device.post("/api/v1/panic/signals", {"account": "00f1"}, format="json")
    assert first.status_code == 202 and first.json()["kind"] == "press" and not first.json()["merged"]
    again = device.post("/api/v1/panic/signals", {"account": "00F1", "code": "PA"}, format="json")
    assert again.json()["folio"] == first.json()["folio"] and again.json()["merged"]
    beat = device.post("/api/v1/panic/signals", {"account": "00F1", "code": "RP"}, format="json")
    assert beat.status_code == 202 and beat.json() == {"kind": "heartbeat", "folio": None, "merged": False}
    assert device.post("/api/v1/panic/signals", {"account": "0BAD"}, format="json").status_code == 404
    bad = device.post("/api/v1/panic/signals", {"account": "not hex!", "code": "P"}, format="json")
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"account", "code"}
    dispatcher = api_client_for(make_user(Role.DISPATCHER))
    assert dispatcher.post("/api/v1/panic/signals", {"account": "00F1"}, format="json").status_code == 403


@pytest.mark.django_db
def test_press_after_window_or_after_closing_opens_a_new_incident(
    center, panic_type, make_user, api_client_for, settings
):
    button = make_button(center, account="0A0A")
    device = api_client_for(make_user(Role.DEVICE, "button-gw"))
    first = device.post("/api/v1/panic/signals", {"account": "0A0A"}).json()["folio"]
    close_incident(
        folio=first, center_id=center.id, disposition="Falsa alarma", by=make_user(Role.DISPATCHER)
    )
    second = device.post("/api/v1/panic/signals", {"account": "0A0A"}).json()["folio"]
    assert second != first
    PanicSignal.objects.filter(button=button).update(received_at=timezone.now() - timedelta(minutes=11))
    third = device.post("/api/v1/panic/signals", {"account": "0A0A"}).json()["folio"]
    assert third not in (first, second)
    assert Incident.objects.filter(status=IncidentStatus.PENDING).count() == 2


@pytest.mark.django_db
def test_silent_button_goes_offline_and_back_with_supervisor_alerts(center, make_user, api_client_for):
    button = make_button(center, account="0B0B", heartbeat_s=60)
    quiet = make_button(center, account="0C0C", heartbeat_s=60)
    PanicButton.objects.filter(pk=button.pk).update(last_seen_at=timezone.now() - timedelta(seconds=200))
    PanicButton.objects.filter(pk=quiet.pk).update(last_seen_at=timezone.now() - timedelta(seconds=30))
    assert declare_silent_offline() == 1
    assert declare_silent_offline() == 0  # idempotent
    button.refresh_from_db()
    assert not button.online
    device = api_client_for(make_user(Role.DEVICE, "button-gw"))
    device.post("/api/v1/panic/signals", {"account": "0B0B", "code": "RP"})
    button.refresh_from_db()
    assert button.online
    alerts = [
        (e.type, e.payload["name"]) for e in Event.objects.filter(type__startswith="sensor.").order_by("seq")
    ]
    assert alerts == [("sensor.offline", button.name), ("sensor.online", button.name)]
    history = (
        api_client_for(make_user(Role.DISPATCHER)).get(f"/api/v1/panic/buttons/{button.id}").json()["history"]
    )
    assert [h["kind"] for h in history] == ["online", "offline"]
    assert "sensors.check_heartbeats" in periodic.REGISTRY
    from django.conf import settings

    assert (
        settings.CELERY_BEAT_SCHEDULE["sensors.check_heartbeats"]["task"] == "sensors.tasks.check_heartbeats"
    )


@pytest.mark.django_db
def test_console_button_panel(center, make_user, api_client_for):
    make_button(center, account="0D0D", camera_ref="rtsp://cam/1")
    client = api_client_for(make_user(Role.CALL_TAKER))
    buttons = client.get("/api/v1/panic/buttons").json()
    assert [(b["account"], b["camera_ref"], b["online"]) for b in buttons] == [("0D0D", "rtsp://cam/1", True)]
    assert client.get("/api/v1/panic/buttons/999999").status_code == 404
    assert api_client_for(make_user(Role.DEVICE)).get("/api/v1/panic/buttons").status_code == 403


def _sia_event(receiver_accounts, frame: bytes):
    from pysiaalarm.event import SIAEvent

    return SIAEvent.from_line(frame.decode().strip(), receiver_accounts)


@pytest.mark.django_db(transaction=True)
def test_batch_stores_each_signal_in_its_savepoint_and_commits_once(center, panic_type):
    """The receiver's group commit: several presses in one transaction, a bad one rolled back alone (NAK),
    two presses of one button in the same batch open ONE incident, and the batch's events are written with
    one counter bump, in order, with contiguous seqs."""
    from sensors.dc09 import store_batch

    make_button(center, account="0E01")
    make_button(center, account="0E02", lat=19.4, lon=-99.1)
    gone = make_button(center, account="0E03")
    accounts = load_accounts()
    PanicButton.objects.filter(pk=gone.pk).update(active=False)  # deactivated after the receiver loaded it
    frames = [
        build_frame("0E01", sequence=1),
        build_frame("0E03", sequence=1),
        build_frame("0E02", code="1120", protocol="ADM-CID", sequence=1),
        build_frame("0E01", sequence=2),
    ]
    assert store_batch([_sia_event(accounts, f) for f in frames]) == [True, False, True, True]
    assert Incident.objects.count() == 2
    first = PanicSignal.objects.filter(button__account="0E01").order_by("id")
    assert [s.merged for s in first] == [False, True] and len({s.incident_id for s in first}) == 1
    assert not PanicSignal.objects.filter(button=gone).exists()
    pressed = list(Event.objects.filter(type="panic.pressed").order_by("seq"))
    assert [(e.payload["button"]["account"], e.payload["merged"]) for e in pressed] == [
        ("0E01", False),
        ("0E02", False),
        ("0E01", True),
    ]
    seqs = list(Event.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    # Per press: incident.created/updated, call.created, panic.pressed, in that order.
    types = [e.type for e in Event.objects.order_by("seq")]
    assert types[:3] == ["incident.created", "call.created", "panic.pressed"]


@pytest.mark.django_db(transaction=True)
def test_batch_that_cannot_commit_acks_nothing(center, panic_type, monkeypatch):
    """A failure while writing the batch's events (or committing) leaves nothing stored: every signal of the
    batch is NAKed, so no panel is told "stored" for a press that is not."""
    from django.db import DatabaseError

    from cad import events
    from sensors.dc09 import store_batch

    make_button(center, account="0F01")
    accounts = load_accounts()

    def broken(events_):
        raise DatabaseError("disk full")

    monkeypatch.setattr(events, "_write", broken)
    assert store_batch([_sia_event(accounts, build_frame("0F01"))]) == [False]
    assert PanicSignal.objects.count() == 0 and Incident.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_simultaneous_presses_of_one_button_open_one_incident(center, panic_type):
    """Presses of the same button racing in separate transactions (receiver + HTTP device gateway): the
    button row lock makes the later ones merge into the first one's incident."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from sensors.panic import receive_panic_signal

    if not settings.IS_POSTGRES:  # the test database is in memory: a second writer fails at once there
        pytest.skip(
            "SQLite serialises writers (tests/test_sqlite_writers.py); the race is meaningful on PostgreSQL"
        )
    make_button(center, account="0A11")
    barrier = threading.Barrier(4)

    def press(_):
        try:
            barrier.wait(5)
            return receive_panic_signal(account="0A11", code="PA", transport="http").incident_id
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        incidents = list(pool.map(press, range(4)))
    assert len(set(incidents)) == 1 and Incident.objects.count() == 1
    assert sorted(PanicSignal.objects.values_list("merged", flat=True)) == [False, True, True, True]


@pytest.mark.django_db
def test_a_press_costs_a_bounded_number_of_queries(center, panic_type):
    """Guards the press path's round trips (it was 42 for a new incident): the three events are written
    with one counter UPDATE and one INSERT, the folio with one UPDATE … RETURNING, the call inserted once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sensors.panic import receive_panic_signal

    make_button(center, account="0C11")
    receive_panic_signal(account="0C11", code="PA", transport="dc09")  # warm: counters, service user
    make_button(center, account="0C12")
    with CaptureQueriesContext(connection) as opened:
        receive_panic_signal(account="0C12", code="PA", transport="dc09")
    with CaptureQueriesContext(connection) as merged:
        receive_panic_signal(account="0C12", code="PA", transport="dc09")
    sql = [q["sql"] for q in opened.captured_queries]
    assert len([s for s in sql if "cad_eventstream" in s]) == 1  # on PostgreSQL, the INSERT's statement too
    assert len([s for s in sql if re.search(r'INSERT INTO "?cad_event"? ', s)]) == 1
    assert len([s for s in sql if "incidents_foliocounter" in s]) == 1
    assert len([s for s in sql if "incidents_call" in s]) == 1
    assert len(opened.captured_queries) <= 22, "\n".join(sql)
    assert len(merged.captured_queries) <= 20, "\n".join(q["sql"] for q in merged.captured_queries)
