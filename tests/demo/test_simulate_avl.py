"""simulate_avl: one round moves every available unit a little and stores the fixes through
record_positions (track rows, fresh position_at, one AVL-stream event); busy units are left alone."""

import math
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from cad.models import Event, EventStream
from tests.factories import UnitFactory
from units.models import AvlPosition, UnitStatus


@pytest.mark.django_db
def test_once_moves_available_units_a_little_and_refreshes_positions(center):
    old = timezone.now() - timedelta(minutes=20)
    available = [UnitFactory(center=center, position_at=old) for _ in range(3)]
    busy = UnitFactory(center=center, status=UnitStatus.DISPATCHED, position_at=old)
    out = StringIO()

    call_command("simulate_avl", "--once", "--seed", "1", "--step-m", "100", stdout=out)

    assert "3 posiciones de 3 unidades" in out.getvalue()
    for unit in available:
        before = (unit.lat, unit.lon)
        unit.refresh_from_db()
        assert unit.position_at > old
        moved_m = math.dist(before, (unit.lat, unit.lon)) * 111_000
        assert 0 < moved_m < 250  # a small step, not a jump across the state
        assert AvlPosition.objects.filter(unit=unit).count() == 1
    busy.refresh_from_db()
    assert busy.position_at == old
    assert not AvlPosition.objects.filter(unit=busy).exists()
    assert Event.objects.filter(stream=EventStream.Name.AVL, type="units.positions").count() == 1


@pytest.mark.django_db
def test_missing_center_says_to_seed_first():
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("simulate_avl", "--once", "--center", "ZZZ")
