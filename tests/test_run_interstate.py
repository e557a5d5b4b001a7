"""run.py's two-centre layout (`python3 run.py interstate`): each instance's database, Redis namespace,
session cookie and published URL. The processes themselves are exercised by tests/e2e."""

import io
import json
import sys

import pytest

import run


def test_embedded_default_gives_each_centre_a_sqlite_file_in_var():
    assert run.instance_database_url("", "mex") == f"sqlite:///{run.ROOT / 'var' / 'mex.sqlite3'}"
    assert run.instance_database_url("", "cdmx") == f"sqlite:///{run.ROOT / 'var' / 'cdmx.sqlite3'}"


def test_database_url_gives_each_centre_a_database_beside_the_named_one():
    url = "postgres://cad:s3cret@db.internal:5432/cad?sslmode=require"
    assert (
        run.instance_database_url(url, "mex")
        == "postgres://cad:s3cret@db.internal:5432/cad_mex?sslmode=require"
    )
    assert run.instance_database_url("postgres://postgres@127.0.0.1/", "cdmx") == (
        "postgres://postgres@127.0.0.1/cad_cdmx"
    )
    assert (
        run.instance_database_url("sqlite:////tmp/x/demo.sqlite3", "cdmx")
        == "sqlite:////tmp/x/demo_cdmx.sqlite3"
    )


def test_instance_env_sets_centre_namespace_and_public_url():
    base = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cad_id",
        "REDIS_URL": "redis://127.0.0.1:6379/2",
    }
    mex = run.instance_env(base, code="MEX", public_url="http://127.0.0.1:8000")
    cdmx = run.instance_env(base, code="CDMX", public_url="http://127.0.0.1:8001")
    assert (mex["DATABASE_URL"], cdmx["DATABASE_URL"]) == (
        "postgres://postgres@127.0.0.1:5432/cad_id_mex",
        "postgres://postgres@127.0.0.1:5432/cad_id_cdmx",
    )
    assert mex["REDIS_URL"] == cdmx["REDIS_URL"] == base["REDIS_URL"]  # one server, two namespaces
    assert (mex["CAD_INSTANCE"], cdmx["CAD_INSTANCE"]) == ("mex", "cdmx")
    assert (mex["CAD_CENTER_CODE"], cdmx["CAD_CENTER_CODE"]) == ("MEX", "CDMX")
    assert cdmx["CAD_PUBLIC_URL"] == "http://127.0.0.1:8001"
    assert base == {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cad_id",
        "REDIS_URL": "redis://127.0.0.1:6379/2",
    }


def test_production_processes_are_named_per_centre_with_their_own_beat_schedule():
    env = {"REDIS_URL": "redis://127.0.0.1:6379/2"}
    processes = run.instance_processes(
        env, host="127.0.0.1", port=8001, web_procs=1, simulate=False, tag="cdmx"
    )
    names = [name for name, _cmd, _env, _essential in processes]
    assert names == ["cdmx-daphne", "cdmx-celery-worker", "cdmx-celery-beat"]
    worker, beat = processes[1][1], processes[2][1]
    assert worker[worker.index("-n") + 1] == "cdmx@%h"
    assert str(beat[beat.index("-s") + 1]).endswith("celerybeat-schedule-cdmx")


def _peer_setup_in_process(monkeypatch, capsys, specs: list) -> dict:
    """Run run.py's PEER_SETUP snippet here (as `manage.py shell -c` runs it), specs on stdin."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(specs)))
    exec(run.PEER_SETUP, {})  # noqa: S102 - the snippet run.py ships, exercised as-is
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.django_db
def test_peer_setup_registers_then_a_second_run_moves_the_peer_and_renews_the_secrets(
    center, monkeypatch, capsys
):
    from geo.services import import_geojson_file
    from interstate.models import Peer

    import_geojson_file(path=run.ROOT / "geo" / "data" / "inegi-entidades" / "09-ciudad-de-mexico.geojson")
    spec = {
        "code": "CDMX",
        "name": "Ciudad de México C5",
        "base_url": "http://127.0.0.1:8001",
        "cve_ent": "09",
    }
    first = _peer_setup_in_process(monkeypatch, capsys, [spec])["CDMX"]
    peer = Peer.objects.get(code="CDMX")
    assert (peer.base_url, peer.enabled, peer.inbound_key_id) == (
        "http://127.0.0.1:8001",
        True,
        first["key_id"],
    )
    assert peer.inbound_secret == first["secret"]
    assert peer.service_area["type"] in ("Polygon", "MultiPolygon") and peer.max_lat > 19.5

    _peer_setup_in_process(
        monkeypatch, capsys, [{"code": "CDMX", "outbound": {"key_id": "k1", "secret": "s1"}}]
    )
    assert (Peer.objects.get(code="CDMX").outbound_key_id, Peer.objects.get(code="CDMX").outbound_secret) == (
        "k1",
        "s1",
    )

    again = _peer_setup_in_process(monkeypatch, capsys, [{**spec, "base_url": "http://127.0.0.1:8211"}])[
        "CDMX"
    ]
    peer.refresh_from_db()
    assert peer.base_url == "http://127.0.0.1:8211"
    assert again["key_id"] != first["key_id"] and peer.inbound_secret == again["secret"] != first["secret"]
    assert Peer.objects.count() == 1
