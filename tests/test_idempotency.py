"""POST /calls/ with an Idempotency-Key: a retry after a cut connection answers the original result and
creates nothing twice, even when the repeat races the original."""

import threading

import pytest
from django.db import connection

from incidents.models import Call, Incident
from tests.factories import new_incident_call


def test_a_repeated_post_answers_the_original_result(call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    first = client.post("/api/v1/calls/", new_incident_call(), HTTP_IDEMPOTENCY_KEY="form-1")
    again = client.post("/api/v1/calls/", new_incident_call(), HTTP_IDEMPOTENCY_KEY="form-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Call.objects.count() == Incident.objects.count() == 1
    other = client.post("/api/v1/calls/", new_incident_call(), HTTP_IDEMPOTENCY_KEY="form-2")
    assert other.json()["call"]["incident"] != first.json()["call"]["incident"]


def test_the_same_key_with_another_body_is_refused(call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    client.post("/api/v1/calls/", new_incident_call(), HTTP_IDEMPOTENCY_KEY="form-1")
    response = client.post("/api/v1/calls/", new_incident_call(lat=19.4), HTTP_IDEMPOTENCY_KEY="form-1")
    assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused"


def test_a_refused_call_does_not_burn_the_key(call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    bad = client.post(
        "/api/v1/calls/", new_incident_call(incident_type_code="99999"), HTTP_IDEMPOTENCY_KEY="k"
    )
    assert bad.status_code == 400
    assert client.post("/api/v1/calls/", new_incident_call(), HTTP_IDEMPOTENCY_KEY="k2").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_create_one_call(call_taker, api_client_for, accident_type):
    if connection.vendor != "postgresql":
        pytest.skip("row locks on the unique key: PostgreSQL")
    answers = []

    def post():
        answers.append(
            api_client_for(call_taker).post(
                "/api/v1/calls/", new_incident_call(), HTTP_IDEMPOTENCY_KEY="race"
            )
        )
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["call"]["uid"] for a in answers}) == 1
    assert Call.objects.count() == 1
