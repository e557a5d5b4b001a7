"""AVL batches on PostgreSQL go COPY → staging → INSERT … SELECT + UPDATE … FROM; they must store and move
exactly what the ORM path (SQLite's) does: every fix in the track, each unit at its newest fix (the first of
equally new ones), older fixes kept but not moving the unit, one AVL event with the moves, foreign units
refused with nothing written."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from cad.errors import DomainError
from cad.models import Event
from tests.factories import CenterFactory, UnitFactory
from units import services
from units.models import AvlPosition, Unit

pytestmark = pytest.mark.django_db


def _outcome(unit_ids):
    track = sorted(
        AvlPosition.objects.filter(unit_id__in=unit_ids).values_list(
            "unit_id", "recorded_at", "lat", "lon", "speed_kmh", "heading"
        )
    )
    units = sorted(Unit.objects.filter(id__in=unit_ids).values_list("id", "lat", "lon", "position_at"))
    event = Event.objects.filter(type="units.positions").order_by("-seq").first()
    return track, units, event.payload if event else None


def test_copy_path_stores_and_moves_exactly_like_the_orm_path(center):
    now = timezone.now()
    units = [UnitFactory(center=center, position_at=now - timedelta(minutes=5)) for _ in range(6)]
    ahead = UnitFactory(center=center, position_at=now + timedelta(minutes=1))  # its position is newer
    ids = [u.id for u in [*units, ahead]]
    batch = [
        {
            "unit_id": u.id,
            "lat": 19.0 + i / 100,
            "lon": -99.0 - i / 100,
            "recorded_at": now,
            "speed_kmh": 30.0,
        }
        for i, u in enumerate(units)
    ]
    batch += [
        {"unit_id": units[0].id, "lat": 18.5, "lon": -98.5, "recorded_at": now},  # same time: the first wins
        {"unit_id": units[1].id, "lat": 18.6, "lon": -98.6, "recorded_at": now - timedelta(seconds=30)},
        {
            "unit_id": units[2].id,
            "lat": 18.7,
            "lon": -98.7,
            "recorded_at": now + timedelta(seconds=5),
            "heading": 90,
        },
        {"unit_id": ahead.id, "lat": 18.8, "lon": -98.8, "recorded_at": now},
    ]
    with transaction.atomic():
        rollback = transaction.savepoint()
        assert services.record_positions(center_id=center.id, positions=batch) == len(batch)
        product = _outcome(ids)
        transaction.savepoint_rollback(rollback)
        with transaction.atomic():
            moved = services._store_and_move_by_orm(center_id=center.id, positions=batch)
        orm_track, orm_units, _ = _outcome(ids)
    assert product[0] == orm_track and len(orm_track) == len(batch)
    assert product[1] == orm_units
    assert product[2]["positions"] == [[uid, lat, lon, at.isoformat()] for uid, lat, lon, at in moved]
    assert ahead.id not in {p[0] for p in product[2]["positions"]}
    assert {p[0]: p[1] for p in product[2]["positions"]}[units[2].id] == 18.7


def test_units_of_another_centre_refuse_the_whole_batch(center):
    mine = UnitFactory(center=center)
    foreign = UnitFactory(center=CenterFactory(code="CDM"))
    batch = [
        {"unit_id": uid, "lat": 19.0, "lon": -99.0, "recorded_at": timezone.now()}
        for uid in (mine.id, foreign.id)
    ]
    before = AvlPosition.objects.count(), Event.objects.count()
    with pytest.raises(DomainError) as refused:
        services.record_positions(center_id=center.id, positions=batch)
    assert refused.value.code == "unknown_unit" and str(foreign.id) in str(refused.value)
    assert (AvlPosition.objects.count(), Event.objects.count()) == before
    if connection.vendor == "postgresql":  # the staging table is emptied with the transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('pg_temp.avl_staging')")
            if cursor.fetchone()[0]:
                cursor.execute("SELECT count(*) FROM pg_temp.avl_staging")
                assert cursor.fetchone()[0] == 0
