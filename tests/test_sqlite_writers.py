"""The embedded default on SQLite: background threads and requests write at the same moment without
"database is locked" (IMMEDIATE transactions, Django ≥ 5.1 `transaction_mode`). Runs in a subprocess on a
SQLite file whatever database the suite uses."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WRITERS = """
import threading
import django
django.setup()
from django.core.management import call_command
from django.db import OperationalError, close_old_connections, transaction
from cad.events import record_event
from cad.models import Center, Event

call_command("migrate", "cad", verbosity=0)
center = Center.objects.create(code="MEX", name="Prueba")
errors = []

def writer(n):
    try:
        for i in range(40):
            with transaction.atomic():
                Center.objects.filter(pk=center.pk).exists()  # read first, then write: the risky upgrade
                record_event(type="test.write", center_id=center.pk, payload={"n": n, "i": i})
    except OperationalError as exc:
        errors.append(str(exc))
    finally:
        close_old_connections()

threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(f"errors={len(errors)} {errors[:1]} events={Event.objects.count()}")
"""


def test_concurrent_writers_never_get_database_is_locked(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'cad.sqlite3'}", DJANGO_SETTINGS_MODULE="cad.settings")
    result = subprocess.run(
        [sys.executable, "-c", WRITERS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "errors=0 [] events=240" in result.stdout, result.stdout
