"""nearest_available_units ranks in the database (straight-line ETA) and must equal a full scan, and the
estimator-agnostic bounding-box path, on a mixed fleet: speeds, capabilities, stale and busy units."""

import random
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from tests.factories import AgencyFactory, CapabilityFactory, UnitFactory
from units.models import Agency, Unit, UnitStatus
from units.routing import StraightLineEstimator, haversine_km
from units.selectors import nearest_available_units


class BoxPathEstimator(StraightLineEstimator):
    """Same formula under another class: units.selectors takes its bounding-box path."""


@pytest.fixture
def fleet(center):
    rng = random.Random(7)
    now = timezone.now()
    agencies = [
        AgencyFactory(center=center, code="PE", speed_kmh=45.0),
        AgencyFactory(center=center, code="CRM", kind=Agency.Kind.AMBULANCE, speed_kmh=55.0),
        AgencyFactory(center=center, code="BOM", kind=Agency.Kind.FIRE, speed_kmh=35.0),
    ]
    CapabilityFactory(code="ambulance")
    units = []
    for i in range(80):
        stale = i % 11 == 0
        units.append(
            UnitFactory(
                center=center,
                agency=agencies[i % 3],
                callsign=f"R-{i:03d}",
                status=UnitStatus.DISPATCHED if i % 13 == 0 else UnitStatus.AVAILABLE,
                lat=19.3 + rng.uniform(-0.9, 0.9),
                lon=-99.5 + rng.uniform(-0.9, 0.9),
                position_at=now - timedelta(minutes=30 if stale else 1),
                capabilities=["ambulance"] if i % 2 else ["patrol"],
            )
        )
    return units


def full_scan(*, lat, lon, capability, limit, exclude, now):
    fresh_after = now - timedelta(seconds=300)
    rows = [
        u
        for u in Unit.objects.select_related("agency").prefetch_related("capabilities")
        if u.status == UnitStatus.AVAILABLE
        and u.position_at >= fresh_after
        and u.id not in exclude
        and (capability is None or capability in {c.code for c in u.capabilities.all()})
    ]
    km = haversine_km(lat, lon, np.array([u.lat for u in rows]), np.array([u.lon for u in rows]))
    seconds = km * 1.35 / np.array([u.agency.speed_kmh for u in rows]) * 3600
    return [rows[i].id for i in np.argsort(seconds, kind="stable")[:limit]]


@pytest.mark.parametrize("capability", [None, "ambulance", "patrol"])
def test_database_ranking_equals_full_scan_and_box_path(fleet, settings, capability):
    now = timezone.now()
    rng = random.Random(11)
    exclude = {fleet[1].id, fleet[2].id}
    for _ in range(15):
        lat, lon = 19.3 + rng.uniform(-1.2, 1.2), -99.5 + rng.uniform(-1.2, 1.2)
        kwargs = {"center_id": fleet[0].center_id, "lat": lat, "lon": lon, "capability": capability}
        ranked = nearest_available_units(**kwargs, limit=5, exclude=exclude, now=now)
        expected = full_scan(lat=lat, lon=lon, capability=capability, limit=5, exclude=exclude, now=now)
        assert [c["unit_id"] for c in ranked] == expected
        settings.CAD = {**settings.CAD, "TRAVEL_TIME_ESTIMATOR": f"{__name__}.BoxPathEstimator"}
        boxed = nearest_available_units(**kwargs, limit=5, exclude=exclude, now=now)
        settings.CAD = {**settings.CAD, "TRAVEL_TIME_ESTIMATOR": "units.routing.StraightLineEstimator"}
        assert boxed == ranked
        assert all(c["eta_s"] <= d["eta_s"] for c, d in zip(ranked, ranked[1:], strict=False))


def test_database_ranking_returns_nothing_without_fresh_available_units(center):
    UnitFactory(center=center, position_at=timezone.now() - timedelta(hours=1))
    UnitFactory(center=center, status=UnitStatus.OUT_OF_SERVICE)
    assert nearest_available_units(center_id=center.id, lat=19.3, lon=-99.6, capability=None, limit=5) == []
