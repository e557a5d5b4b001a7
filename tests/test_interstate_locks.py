"""Lock order between a delivery and a change to the shared incident (PostgreSQL: row locks, real threads).

A change locks the incident, records its event (the centre's stream counter lock) and interstate's listener
then locks the escalation to write the update; the delivery of that escalation's request records `sent` with
an event too. Both lock the incident first (interstate.services.lock_escalation), so they queue instead of
deadlocking."""

import threading
import time

import pytest
from django.conf import settings
from django.db import connection

from incidents import services as incident_services
from interstate import delivery, services
from interstate.models import Escalation
from tests.factories import open_incident
from tests.interstate_support import INSIDE_CDMX, register_cdmx


@pytest.mark.django_db(transaction=True)
def test_a_delivery_and_a_note_on_the_shared_incident_do_not_deadlock(
    center, dispatcher, accident_type, monkeypatch
):
    if not settings.IS_POSTGRES:
        pytest.skip("row-lock order: PostgreSQL (SQLite locks the whole database)")
    register_cdmx()
    incident = open_incident(
        center=center, by=dispatcher, incident_type=accident_type, lat=INSIDE_CDMX[0], lon=INSIDE_CDMX[1]
    )
    escalation = services.escalate_incident(
        folio=incident.folio, center_id=center.id, peer_code="CDMX", kind="request_for_service", by=dispatcher
    )
    message = delivery._next_pending(escalation.stream_id)

    # The delivery holds its locks and pauses right before it saves the escalation and records its event; the
    # note comes in then.
    holding, go = threading.Event(), threading.Event()
    escalation_changed = delivery.escalation_changed

    def paused_escalation_changed(*args, **kwargs):
        holding.set()
        go.wait(10)
        return escalation_changed(*args, **kwargs)

    monkeypatch.setattr(delivery, "escalation_changed", paused_escalation_changed)
    errors = []

    def run(target):
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - a deadlock surfaces here as a database error
            errors.append(exc)
        finally:
            connection.close()

    deliver = threading.Thread(
        target=run,
        args=(lambda: delivery._record_delivery(message, {"incident": "CDMX-2026-000001"}, owner="test"),),
    )
    note = threading.Thread(
        target=run,
        args=(
            lambda: incident_services.add_note(
                folio=incident.folio, center_id=center.id, text="Huye al norte", by=dispatcher
            ),
        ),
    )
    deliver.start()
    assert holding.wait(10)
    note.start()
    time.sleep(0.5)  # the note is now waiting for a lock the delivery holds
    go.set()
    deliver.join(20)
    note.join(20)
    assert errors == []
    escalation.refresh_from_db()
    assert escalation.state == Escalation.State.SENT
    assert escalation.outbox.filter(kind="update").count() == 1  # the note became an update
