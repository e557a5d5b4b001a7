"""The layout beyond one host: a `replica` database alias only when DATABASE_REPLICA_URL is set, the router
sending dashboard/export reads there (and nothing else), and a compose file whose web and worker scale."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from django.db import DEFAULT_DB_ALIAS

from cad.db import REPLICA, ReplicaRouter, read_alias, replica_reads
from incidents.models import Incident

ROOT = Path(__file__).resolve().parent.parent

SHOW = (
    "import json, django; django.setup(); from django.conf import settings; "
    "r = settings.DATABASES.get('replica'); "
    "print(json.dumps({'aliases': sorted(settings.DATABASES), 'routers': settings.DATABASE_ROUTERS, "
    "'replica': r and {k: r[k] for k in ('NAME', 'HOST')}, 'mirror': r and r['TEST'].get('MIRROR')}))"
)


def _settings(**env) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_REPLICA_URL"}
    environment.update(DJANGO_SETTINGS_MODULE="cad.settings", **env)
    out = subprocess.run(
        [sys.executable, "-c", SHOW], env=environment, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_replica_alias_exists_only_when_configured():
    assert _settings() == {"aliases": ["default"], "routers": [], "replica": None, "mirror": None}
    configured = _settings(
        DATABASE_URL="postgres://cad@primary:5432/cad", DATABASE_REPLICA_URL="postgres://cad@replica:5432/cad"
    )
    assert configured["aliases"] == ["default", "replica"]
    assert configured["routers"] == ["cad.db.ReplicaRouter"]
    assert configured["replica"] == {"NAME": "cad", "HOST": "replica"} and configured["mirror"] == "default"


def test_router_sends_only_report_reads_to_the_replica(monkeypatch):
    router = ReplicaRouter()
    monkeypatch.setattr("cad.db.settings", SimpleNamespace(DATABASES={DEFAULT_DB_ALIAS: {}, REPLICA: {}}))
    assert router.db_for_read(Incident) == DEFAULT_DB_ALIAS
    with replica_reads() as alias:
        assert alias == REPLICA and router.db_for_read(Incident) == REPLICA
        assert router.db_for_write(Incident) == DEFAULT_DB_ALIAS
    assert read_alias() == DEFAULT_DB_ALIAS
    assert router.allow_migrate(REPLICA, "incidents") is False
    monkeypatch.setattr("cad.db.settings", SimpleNamespace(DATABASES={DEFAULT_DB_ALIAS: {}}))
    with replica_reads() as alias:  # no replica configured: everything stays on default
        assert alias == DEFAULT_DB_ALIAS


def test_compose_scales_the_stateless_services_behind_one_load_balancer():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert "ports" not in services["web"] and "ports" not in services["worker"]  # no fixed host port
    assert services["lb"]["ports"] and "web" in services["lb"]["depends_on"]
    assert "--appendonly" in services["redis"]["command"] and "redisdata" in compose["volumes"]
    nginx = (ROOT / "docker" / "nginx.conf").read_text()
    assert "proxy_pass $web" in nginx and "Upgrade $http_upgrade" in nginx
