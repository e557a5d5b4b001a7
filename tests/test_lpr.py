"""LPR: plate normalisation, batched ingest with per-item errors and duplicates, hotlist hits and their
alerts, the Plate Recognizer Stream webhook, incidents from hits, tracks, retention, CSV import."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Role
from cad.models import Event
from incidents.models import Incident
from sensors.hotlists import import_csv
from sensors.lpr import purge_reads
from sensors.models import Hotlist, HotlistEntry, LprHit, LprRead, LprReader
from sensors.plates import normalize_plate, plate_key
from tests.factories import IncidentTypeFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "listed, read",
    [("PBO-1234", "P80 1234"), ("mex-12-34", "MEX1234"), ("A8C-1I2", "ABC.112"), ("ñ0b-123", "NOB123")],
)
def test_plate_key_tolerates_confusions_and_separators(listed, read):
    assert plate_key(listed) == plate_key(read)


def test_normalize_keeps_letters_and_digits():
    assert normalize_plate(" abc-12·3 ") == "ABC123"
    assert plate_key("ABC123") != plate_key("ABC124")


@pytest.fixture
def device(make_user, api_client_for):
    return api_client_for(make_user(Role.DEVICE, "lpr-gw"))


@pytest.fixture
def readers(center):
    return [
        LprReader.objects.create(
            center=center,
            code="ARCO-01",
            name="Arco Toluca-México km 42",
            lat=19.30,
            lon=-99.50,
            direction="E",
        ),
        LprReader.objects.create(
            center=center, code="ARCO-02", name="Arco Lerma km 52", lat=19.28, lon=-99.40, direction="E"
        ),
    ]


@pytest.fixture
def stolen(center, supervisor):
    hotlist = Hotlist.objects.create(
        center=center, kind=Hotlist.Kind.CARGO_THEFT, name="Robo de carga", source="FGJEM", owner=supervisor
    )
    HotlistEntry.objects.create(
        hotlist=hotlist,
        plate="PBO1234",
        plate_key=plate_key("PBO1234"),
        reason="Tractocamión robado con carga",
        valid_from=timezone.now() - timedelta(days=1),
        vehicle={"make": "Kenworth", "model": "T680", "color": "blanco"},
    )
    return hotlist


def _read(reader="ARCO-01", plate="XYZ9876", at=None, **extra):
    return {"reader": reader, "plate": plate, "read_at": (at or timezone.now()).isoformat(), **extra}


def test_batch_ingest_with_per_item_errors_and_a_hit(device, readers, stolen):
    now = timezone.now()
    batch = [
        _read(plate="ABC1234", at=now - timedelta(seconds=3)),
        _read(reader="ARCO-99"),
        _read(plate="!!"),
        _read(plate="P80-1234", at=now - timedelta(seconds=1), vehicle={"color": "blanco", "junk": "x"}),
        {"reader": "ARCO-01", "plate": "ABC1234", "read_at": "ayer"},
        _read(at=now + timedelta(hours=1)),
        "not an object",
    ]
    response = device.post("/api/v1/lpr/reads", {"reads": batch}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["hits"]) == (2, 0, 1)
    assert [(e["index"], e["status"], e["code"]) for e in body["errors"]] == [
        (1, 404, "unknown_reader"),
        (2, 400, "invalid"),
        (4, 400, "invalid"),
        (5, 400, "invalid"),
        (6, 400, "invalid"),
    ]
    assert set(body["errors"][2]["fields"]) == {"read_at"}
    hit = LprHit.objects.get()
    assert (hit.plate, hit.read_plate, hit.hotlist_kind, hit.lat, hit.lon) == (
        "PBO1234",
        "P801234",
        "cargo_theft",
        19.30,
        -99.50,
    )
    assert hit.vehicle["make"] == "Kenworth"
    alert = Event.objects.get(type="lpr.hit").payload
    assert (
        alert["plate"] == "PBO1234"
        and alert["place"] == readers[0].name
        and alert["vehicle"]["model"] == "T680"
    )

    # The same batch again: stored once, no second alert.
    again = device.post("/api/v1/lpr/reads", {"reads": batch}, format="json").json()
    assert (again["accepted"], again["duplicates"], again["hits"]) == (0, 2, 0)
    assert LprRead.objects.count() == 2 and LprHit.objects.count() == 1


def test_expired_entries_and_inactive_lists_do_not_hit(device, readers, stolen):
    HotlistEntry.objects.update(valid_until=timezone.now() - timedelta(minutes=1))
    assert (
        device.post("/api/v1/lpr/reads", {"reads": [_read(plate="PBO1234")]}, format="json").json()["hits"]
        == 0
    )
    HotlistEntry.objects.update(valid_until=None)
    Hotlist.objects.update(active=False)
    assert (
        device.post("/api/v1/lpr/reads", {"reads": [_read(plate="PBO1234")]}, format="json").json()["hits"]
        == 0
    )


def test_bad_batches(device, readers, settings):
    assert device.post("/api/v1/lpr/reads", {"reads": "x"}, format="json").status_code == 400
    all_bad = device.post("/api/v1/lpr/reads", {"reads": [_read(reader="NOPE")]}, format="json")
    assert all_bad.status_code == 400 and all_bad.json()["errors"][0]["status"] == 404
    settings.CAD = {**settings.CAD, "LPR_MAX_BATCH": 2}
    assert device.post("/api/v1/lpr/reads", {"reads": [_read()] * 3}, format="json").status_code == 413


def test_plate_recognizer_stream_webhook(device, readers, stolen):
    payload = {
        "hook": {
            "target": "https://cad/api/v1/lpr/webhooks/platerecognizer",
            "id": "ARCO-02",
            "event": "recognition",
        },
        "data": {
            "camera_id": "ARCO-02",
            "filename": "ARCO-02_screenshots/26-11-27/10-00-00.000000.jpg",
            "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
            "results": [
                {
                    "plate": "pbo1234",
                    "score": 0.91,
                    "vehicle": {"type": "Big Truck", "score": 0.8},
                    "model_make": [{"make": "Kenworth", "model": "T680", "score": 0.4}],
                    "color": [{"color": "white", "score": 0.7}],
                },
                {"plate": "xyz987", "score": 0.88, "vehicle": {"type": "Sedan"}},
                {"plate": "", "score": 0.1},
            ],
        },
    }
    response = device.post("/api/v1/lpr/webhooks/platerecognizer", payload, format="json")
    assert response.status_code == 202
    assert (response.json()["accepted"], response.json()["hits"], len(response.json()["errors"])) == (2, 1, 1)
    read = LprRead.objects.get(plate="XYZ987")
    assert read.vehicle == {"type": "Sedan"} and read.reader == readers[1]
    assert device.post("/api/v1/lpr/webhooks/platerecognizer", {"data": {}}, format="json").status_code == 400
    payload["data"]["camera_id"] = "UNKNOWN"
    unknown = device.post("/api/v1/lpr/webhooks/platerecognizer", payload, format="json")
    assert unknown.status_code == 400 and {e["status"] for e in unknown.json()["errors"]} == {400, 404}


def test_hit_opens_incident_carrying_the_vehicle_and_later_hits_join_it(
    device, readers, stolen, make_user, api_client_for
):
    IncidentTypeFactory(code="30430", name="Robo de vehículo particular sin violencia", tipo_name="Seguridad")
    device.post("/api/v1/lpr/reads", {"reads": [_read(plate="PBO1234")]}, format="json")
    hit = LprHit.objects.get()
    dispatcher = api_client_for(make_user(Role.DISPATCHER))
    opened = dispatcher.post(f"/api/v1/lpr/hits/{hit.id}/incident", {}, format="json")
    assert opened.status_code == 201
    incident = Incident.objects.get(folio=opened.json()["folio"])
    assert "PBO1234" in incident.narrative and "Kenworth" in incident.narrative
    assert incident.calls.get().channel == "lpr_hit" and (incident.lat, incident.lon) == (19.30, -99.50)
    assert dispatcher.post(f"/api/v1/lpr/hits/{hit.id}/incident", {}, format="json").status_code == 409
    assert dispatcher.post(f"/api/v1/lpr/hits/{hit.id}/status", {"status": "dismissed"}).status_code == 409

    device.post("/api/v1/lpr/reads", {"reads": [_read(reader="ARCO-02", plate="PB01234")]}, format="json")
    later = LprHit.objects.order_by("-id").first()
    assert later.incident == incident and later.status == "incident"
    assert incident.timeline.filter(kind="note", text__contains="Arco Lerma").exists()

    track = dispatcher.get("/api/v1/lpr/plates/pbo-1234/track").json()
    assert [p["place"] for p in track] == [readers[0].name, readers[1].name]
    for path, field in (("---/track", "plate"), ("pbo-1234/track?hours=0", "hours")):  # each names its field
        assert list(dispatcher.get(f"/api/v1/lpr/plates/{path}").json()["fields"]) == [field]
    hits = dispatcher.get("/api/v1/lpr/hits").json()
    assert [h["folio"] for h in hits] == [incident.folio, incident.folio]

    # Shared with a peer state, the incident's EIDO carries the listed vehicle (vehicleComponent).
    from interstate import eido

    [vehicle] = eido.build_eido(incident, peer_code="CDMX")["vehicleComponent"]
    assert vehicle["vehicleRelationshipType"] == ["Stolen"]
    [facts] = eido.read_eido(eido.build_eido(incident)).vehicles
    assert (facts["plate"], facts["make"], facts["model"]) == ("PBO1234", "Kenworth", "T680")

    # Raw reads past retention are purged; the hits stay with their incident.
    LprRead.objects.update(read_at=timezone.now() - timedelta(days=400))
    assert purge_reads() == 2 and LprRead.objects.count() == 0
    assert LprHit.objects.filter(incident=incident).count() == 2


def test_reader_heartbeat_brings_an_offline_reader_back(device, readers):
    LprReader.objects.filter(pk=readers[0].pk).update(online=False)
    device.post("/api/v1/lpr/reads", {"reads": [_read()]}, format="json")
    readers[0].refresh_from_db()
    assert readers[0].online and readers[0].last_seen_at is not None
    assert Event.objects.filter(type="sensor.online", payload__kind="lpr_reader").count() == 1


def test_permissions(device, readers, make_user, api_client_for):
    dispatcher = api_client_for(make_user(Role.DISPATCHER))
    assert dispatcher.post("/api/v1/lpr/reads", {"reads": [_read()]}, format="json").status_code == 403
    assert device.get("/api/v1/lpr/hits").status_code == 403
    assert dispatcher.get("/api/v1/lpr/hotlists").status_code == 403


def test_csv_import_with_progress_bad_rows_and_repeats(center, supervisor, api_client_for):
    hotlist = Hotlist.objects.create(
        center=center, kind=Hotlist.Kind.STOLEN, name="REPUVE", source="REPUVE", owner=supervisor
    )
    csv_text = "plate,reason,valid_until,owner,make,model,color\n" + "".join(
        f"MEX-{n:04d},robo,,FGJEM,Nissan,Versa,gris\n" for n in range(10)
    )
    csv_text += "??,bad,,,,,\nMEX-0001,robo actualizado,2099-01-01T00:00:00Z,FGJEM,,,\nABC123,x,mañana,,,,\n"
    calls = []
    stored, errors = import_csv(
        hotlist=hotlist, lines=io.StringIO(csv_text), chunk=4, progress=lambda n, e: calls.append(n)
    )
    assert stored == 10 + 1 and len(errors) == 2 and errors[0].startswith("line 12")
    assert HotlistEntry.objects.filter(hotlist=hotlist).count() == 10
    assert HotlistEntry.objects.get(plate="MEX0001").reason == "robo actualizado"
    assert calls == [4, 8, 11]

    out = io.StringIO()
    path = io.StringIO("plate\nZZZ-999\n")
    import sys

    sys_stdin, sys.stdin = sys.stdin, path
    try:
        call_command("import_hotlist", "-", hotlist=hotlist.id, stdout=out)
    finally:
        sys.stdin = sys_stdin
    assert "1 placas importadas" in out.getvalue()
    boss = api_client_for(supervisor)
    listed = boss.get("/api/v1/lpr/hotlists").json()
    assert listed[0]["entries"] == 11
    added = boss.post(
        f"/api/v1/lpr/hotlists/{hotlist.id}/entries", {"plate": "NEW-1234", "reason": "BOLO"}, format="json"
    )
    assert added.status_code == 201 and added.json()["plate"] == "NEW1234"
    assert (
        boss.post(f"/api/v1/lpr/hotlists/{hotlist.id}/entries", {"plate": "?"}, format="json").status_code
        == 400
    )
    assert boss.delete(f"/api/v1/lpr/hotlists/{hotlist.id}/entries/NEW-1234").status_code == 204
    assert boss.delete(f"/api/v1/lpr/hotlists/{hotlist.id}/entries/NEW-1234").status_code == 404


def test_lean_validator_fast_and_slow_paths_store_the_same_reads(device, readers, stolen):
    """The one-pass validator's fast path (plain ASCII plates) and its fallback (`_parse`) agree: plates
    normalised either way, odd but valid values stored exactly (COPY text escaping), bad ones answered
    per item and not stored."""
    now = timezone.now()
    at = [(now - timedelta(seconds=s)).isoformat() for s in range(10)]
    batch = [
        {"reader": "ARCO-01", "plate": "abc1234", "read_at": at[0]},  # fast path, lower case
        {"reader": "ARCO-01", "plate": "abc-12 34", "read_at": at[1]},  # fallback: separators
        {"reader": "ARCO-02", "plate": "ñoc123", "read_at": at[2].replace("+00:00", "Z")},  # fallback
        {
            "reader": "ARCO-02",
            "plate": "TAB123",
            "read_at": at[3],
            "confidence": 0.5,
            "image_ref": "arco\\02\tfoto\n1.jpg",
            "vehicle": {"make": 'Ford "F\\150"\x00', "junk": 1},
        },
        {"reader": "ARCO-01", "plate": "BOOL123", "read_at": at[4], "confidence": True},
        {"reader": "ARCO-01", "plate": "NUL123", "read_at": at[5], "image_ref": "a\x00b"},
        {"reader": ["ARCO-01"], "plate": "LIST123", "read_at": at[6]},
        {"reader": "ARCO-01", "plate": "ABCDEFG", "read_at": at[7]},  # no digit
        {"reader": "ARCO-01", "plate": "ABC1234", "read_at": "2026-01-01T00:00:00"},  # no zone
    ]
    response = device.post("/api/v1/lpr/reads", {"reads": batch}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["hits"]) == (4, 0, 0)
    assert [(e["index"], e["status"], list(e["fields"])) for e in body["errors"]] == [
        (4, 400, ["confidence"]),
        (5, 400, ["image_ref"]),
        (6, 400, ["reader"]),
        (7, 400, ["plate"]),
        (8, 400, ["read_at"]),
    ]
    stored = {r.plate: r for r in LprRead.objects.all()}
    assert sorted(stored) == ["ABC1234", "NOC123", "TAB123"]
    assert LprRead.objects.filter(plate="ABC1234").count() == 2  # two times, so not duplicates
    odd = stored["TAB123"]
    assert odd.image_ref == "arco\\02\tfoto\n1.jpg" and odd.confidence == 0.5
    assert odd.vehicle == {"make": 'Ford "F\\150"'}
    assert stored["NOC123"].reader == readers[1] and stored["NOC123"].plate_key == "N0C123"


def test_many_hits_in_one_batch_cost_the_same_queries_as_one(device, readers, stolen):
    """Hits are recorded in bulk: the number of queries of a batch does not grow with its hits, and
    their console events take consecutive seqs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sensors.hotlists import upsert_entries

    upsert_entries(
        [
            HotlistEntry(
                hotlist=stolen,
                plate=f"HIT{n:03d}",
                plate_key=plate_key(f"HIT{n:03d}"),
                valid_from=timezone.now() - timedelta(days=1),
            )
            for n in range(12)
        ]
    )
    now = timezone.now()

    def post(plates, second):
        at = (now - timedelta(seconds=second)).isoformat()
        reads = [{"reader": "ARCO-01", "plate": p, "read_at": at} for p in plates]
        with CaptureQueriesContext(connection) as queries:
            body = device.post("/api/v1/lpr/reads", {"reads": reads}, format="json").json()
        return body, len(queries)

    fillers = [f"XYZ{n:04d}" for n in range(50)]
    post(["WARM123"], 30)  # the readers' first heartbeat
    one, one_queries = post([*fillers, "HIT000"], 20)
    many, many_queries = post([*fillers, *[f"HIT{n:03d}" for n in range(1, 12)]], 10)
    assert (one["hits"], many["hits"]) == (1, 11) and many["accepted"] == 61
    assert many_queries == one_queries
    seqs = list(Event.objects.filter(type="lpr.hit").order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(seqs[0], seqs[0] + 12))
    payloads = Event.objects.filter(type="lpr.hit").order_by("seq")[1:]
    assert sorted(p.payload["plate"] for p in payloads) == [f"HIT{n:03d}" for n in range(1, 12)]
    assert LprHit.objects.filter(read__isnull=False).count() == 12


def test_reader_heartbeat_is_not_rewritten_within_the_throttle(device, readers):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    device.post("/api/v1/lpr/reads", {"reads": [_read(plate="ABC1234")]}, format="json")
    seen = LprReader.objects.get(pk=readers[0].pk).last_seen_at
    assert seen is not None
    with CaptureQueriesContext(connection) as queries:
        device.post("/api/v1/lpr/reads", {"reads": [_read(plate="ABC1235")]}, format="json")
    assert not [q for q in queries if "sensors_lprreader" in q["sql"] and q["sql"].startswith("UPDATE")]
    assert LprReader.objects.get(pk=readers[0].pk).last_seen_at == seen


@pytest.mark.django_db(transaction=True)
def test_the_alert_is_committed_and_broadcast_before_the_bulk_of_the_batch(
    center, supervisor, make_user, monkeypatch
):
    """A hit's read, the hit and its `lpr.hit` event commit (and the broadcast leaves) before the other
    reads are stored, so the alert never waits behind the batch; if storing the rest fails, the hit stays
    and a retry of the batch stores the rest without alerting twice."""
    from cad import events
    from sensors import lpr

    LprReader.objects.create(center=center, code="ARCO-01", name="Arco", lat=19.3, lon=-99.5, direction="E")
    hotlist = Hotlist.objects.create(
        center=center, kind="stolen", name="Robados", source="x", owner=supervisor
    )
    HotlistEntry.objects.create(
        hotlist=hotlist, plate="PBO1234", plate_key=plate_key("PBO1234"), valid_from=timezone.now()
    )
    order = []
    monkeypatch.setattr(
        events,
        "send_to_group",
        lambda group, message: order.append(
            ("broadcast", [e["type"] for e in message.get("envelopes") or [message["envelope"]]])
        ),
    )
    store = lpr._store_reads

    def failing_store(rows):
        order.append(("store", len(rows)))
        raise RuntimeError("disk full")

    monkeypatch.setattr(lpr, "_store_reads", failing_store)
    at = timezone.now().isoformat()
    items = [{"reader": "ARCO-01", "plate": p, "read_at": at} for p in ("ABC1234", "PB0-1234", "XYZ987")]
    device = make_user(Role.DEVICE, "lpr-gw")
    with pytest.raises(RuntimeError):
        lpr.ingest_reads(center_id=center.id, items=items, by=device)
    assert order == [("broadcast", ["lpr.hit"]), ("store", 2)]
    assert LprHit.objects.count() == 1 and list(LprRead.objects.values_list("plate", flat=True)) == [
        "PB01234"
    ]

    monkeypatch.setattr(lpr, "_store_reads", store)
    retry = lpr.ingest_reads(center_id=center.id, items=items, by=device)
    assert (retry.accepted, retry.duplicates, len(retry.hits)) == (2, 1, 0)
    assert LprRead.objects.count() == 3 and Event.objects.filter(type="lpr.hit").count() == 1


def test_csv_import_stores_odd_text_exactly(center, supervisor):
    """The import writes a COPY text payload: backslashes, tabs, line breaks and quotes survive; NUL
    (which PostgreSQL cannot store) is dropped instead of failing the chunk."""
    hotlist = Hotlist.objects.create(
        center=center, kind=Hotlist.Kind.STOLEN, name="REPUVE", source="REPUVE", owner=supervisor
    )
    csv_text = (
        "plate,reason,valid_until,owner,make\n"
        'ODD-0001,"robo\\con\tfuerza\nde noche",2099-01-01T00:00:00,"FGJEM ""Toluca""",Nissan\x00\n'
    )
    stored, errors = import_csv(hotlist=hotlist, lines=io.StringIO(csv_text, newline=""))
    assert (stored, errors) == (1, [])
    entry = HotlistEntry.objects.get(hotlist=hotlist)
    assert (entry.plate, entry.plate_key) == ("ODD0001", "0DD0001")
    assert entry.reason == "robo\\con\tfuerza\nde noche" and entry.owner == 'FGJEM "Toluca"'
    assert entry.vehicle == {"make": "Nissan"} and entry.valid_until.year == 2099
