import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from cad.logging import JsonFormatter
from tests.factories import UnitFactory
from units.models import AvlPosition


def test_log_lines_are_json_and_redact_caller_identity():
    record = logging.makeLogRecord(
        {"name": "incidents", "levelname": "INFO", "msg": "call taken", "caller_name": "Juan", "line": "089"}
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "call taken"
    assert entry["line"] == "089"
    assert entry["caller_name"] == "[redacted]"
    assert "Juan" not in JsonFormatter().format(record)
    # Each line names its centre (two centres' processes share a terminal under run.py interstate).
    assert json.loads(JsonFormatter(center="CDMX").format(record))["center"] == "CDMX"


def test_logs_are_configured_with_the_centres_code(settings):
    assert settings.LOGGING["formatters"]["json"]["center"] == settings.CAD["CENTER_CODE"]
    assert f"] {settings.CAD['CENTER_CODE']} " in settings.CELERY_WORKER_TASK_LOG_FORMAT


@pytest.mark.django_db
def test_prune_avl_keeps_recent_track(center):
    unit = UnitFactory(center=center)
    now = timezone.now()
    AvlPosition.objects.create(unit=unit, recorded_at=now - timedelta(days=40), lat=19.0, lon=-99.0)
    recent = AvlPosition.objects.create(unit=unit, recorded_at=now - timedelta(days=1), lat=19.0, lon=-99.0)
    out = StringIO()
    call_command("prune_avl", "--days", "30", stdout=out)
    assert list(AvlPosition.objects.values_list("id", flat=True)) == [recent.id]
    assert "1 posiciones" in out.getvalue()
