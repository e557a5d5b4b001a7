"""Travel-time estimators. The default is straight-line distance × road factor ÷ agency speed; a
road-routing engine (e.g. OSRM's table service) plugs in by implementing `TravelTimeEstimator` and
naming the class in settings.CAD["TRAVEL_TIME_ESTIMATOR"]."""

from functools import cache
from typing import Protocol

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    lat1, lon1 = np.radians(lat), np.radians(lon)
    lat2, lon2 = np.radians(lats), np.radians(lons)
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))


class TravelTimeEstimator(Protocol):
    def estimate(
        self, *, origin: tuple[float, float], lats: np.ndarray, lons: np.ndarray, speeds_kmh: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (distance_km, seconds) from each (lat, lon) to origin."""


class StraightLineEstimator:
    def __init__(self, road_factor: float | None = None):
        self.road_factor = road_factor or settings.CAD["ROAD_FACTOR"]

    def estimate(self, *, origin, lats, lons, speeds_kmh):
        distance_km = haversine_km(origin[0], origin[1], lats, lons)
        seconds = distance_km * self.road_factor / np.maximum(speeds_kmh, 1.0) * 3600.0
        return distance_km, seconds


@cache
def _estimator_class(path: str):
    return import_string(path)


def get_estimator() -> TravelTimeEstimator:
    return _estimator_class(settings.CAD["TRAVEL_TIME_ESTIMATOR"])()
