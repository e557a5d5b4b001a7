"""Races through the API on PostgreSQL: real threads, one connection each, released together."""

import re
import threading

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from incidents.models import Assignment, Incident
from tests.factories import UnitFactory, new_incident_call, open_incident
from units.models import Unit, UnitStatus

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="row locks and concurrent writers need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

THREADS = 8


def _run_together(work, n=THREADS):
    """Run work(i) in n threads released by one barrier; return the results in thread order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def target(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertions below
            results[i] = exc
        finally:
            connection.close()  # each thread had its own connection

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_one_unit_raced_onto_many_incidents_has_exactly_one_winner(center, dispatcher, accident_type):
    folios = [
        open_incident(center=center, by=dispatcher, incident_type=accident_type).folio for _ in range(THREADS)
    ]
    unit = UnitFactory(center=center)

    def assign(i):
        client = APIClient()
        client.force_authenticate(user=dispatcher)
        response = client.post(
            f"/api/v1/incidents/{folios[i]}/assignments", {"unit_id": unit.id}, format="json"
        )
        return response.status_code

    statuses = _run_together(assign)
    assert sorted(statuses) == [201] + [409] * (THREADS - 1), statuses
    assert Assignment.objects.filter(unit=unit, active=True).count() == 1
    assert Assignment.objects.filter(unit=unit).count() == 1
    assert Unit.objects.get(pk=unit.id).status == UnitStatus.DISPATCHED
    winner = folios[statuses.index(201)]
    assert list(Incident.objects.filter(status="dispatched").values_list("folio", flat=True)) == [winner]


def test_concurrent_calls_get_unique_contiguous_folios(center, call_taker, accident_type):
    def open_incident(i):
        client = APIClient()
        client.force_authenticate(user=call_taker)
        response = client.post(
            "/api/v1/calls/",
            new_incident_call(),
            format="json",
        )
        assert response.status_code == 201, response.content
        return response.json()["call"]["incident"]

    folios = _run_together(open_incident)
    assert all(isinstance(f, str) for f in folios), folios
    assert len(set(folios)) == THREADS
    numbers = sorted(int(re.fullmatch(r"MEX-\d{4}-(\d{6})", f).group(1)) for f in folios)
    assert numbers == list(range(1, THREADS + 1))
    assert Incident.objects.count() == THREADS
