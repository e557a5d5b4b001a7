"""Geocoding behind one interface, two implementations chosen by settings.CAD["GEOCODER"]:

* `gazetteer` (default, offline): INEGI's localities catalogue (AGEEML) as imported by the operator
  (`manage.py import_localities`), searched accent- and case-insensitively; reverse = nearest locality.
* `nominatim`: any Nominatim-compatible server (the usual self-hosted geocoder) at CAD_GEOCODER_URL,
  through its `/search` and `/reverse` endpoints (format jsonv2).

Both answer `search(query)` with `Candidate`s and `reverse(lat, lon)` with the nearest named place. The
state and municipality of a point always come from the loaded INEGI boundaries (geo.locator), whatever
the geocoder says, so jurisdiction never depends on a third-party server.
"""

import math
import re
from dataclasses import asdict, dataclass
from typing import Protocol

import httpx
import numpy as np
from django.conf import settings
from django.db.models import Q
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from cad.errors import DomainError
from cad.text import fold
from geo.models import Locality

# Words of an address that say nothing about the place ("Av. Independencia 100 esq. Juárez, col. Centro").
STOPWORDS = frozenset(
    [
        "a",
        "al",
        "av",
        "ave",
        "avenida",
        "c",
        "calle",
        "calz",
        "calzada",
        "carr",
        "carretera",
        "col",
        "colonia",
        "cp",
        "de",
        "del",
        "e",
        "el",
        "en",
        "entre",
        "esq",
        "esquina",
        "int",
        "interior",
        "la",
        "las",
        "lote",
        "los",
        "lt",
        "mz",
        "manzana",
        "no",
        "num",
        "numero",
        "y",
    ]
)
MAX_WORDS = 6


class GeocoderUnavailable(DomainError):
    status = 503
    code = "geocoder_unavailable"


@dataclass(frozen=True)
class Candidate:
    label: str
    lat: float
    lon: float
    kind: str  # locality | municipality | address | place
    source: str  # gazetteer | nominatim
    municipality: str | None = None
    state: str | None = None
    cvegeo: str | None = None
    distance_m: float | None = None  # reverse lookups: how far the point is from it

    def as_dict(self) -> dict:
        return asdict(self)


class Geocoder(Protocol):
    name: str

    def search(self, query: str, *, limit: int = 8, cve_ent: str | None = None) -> list[Candidate]:
        """Places matching an address or place name, best first (`cve_ent`: prefer that state)."""

    def reverse(self, lat: float, lon: float) -> Candidate | None:
        """The nearest named place to a point, or None."""


def words_of(query: str) -> list[str]:
    """The searchable words of a query: folded, without house numbers and address filler."""
    words = [w for w in re.split(r"[^\w]+", fold(query)) if w and not w.isdigit() and w not in STOPWORDS]
    return list(dict.fromkeys(w for w in words if len(w) >= 2))[:MAX_WORDS]


def _label(name: str, municipality: str, state: str) -> str:
    parts = [name]
    if fold(municipality) != fold(name):
        parts.append(municipality)
    parts.append(state)
    return ", ".join(p for p in parts if p)


class GazetteerGeocoder:
    """Offline search over the imported AGEEML localities.

    A locality matches when any word of the query is in its name, municipality or state; it ranks by the
    words found in its own name (then in its municipality or state), the municipality named, an exact name,
    the centre's state,
    a municipal seat (CVE_LOC 0001), urban before rural and population."""

    name = "gazetteer"
    FETCH = 400  # rows read per search before ranking

    def search(self, query: str, *, limit: int = 8, cve_ent: str | None = None) -> list[Candidate]:
        words = words_of(query)
        if not words:
            return []
        match = Q()
        for word in words:
            match |= Q(search_text__contains=word)
        rows = list(
            Locality.objects.filter(match)
            .order_by("-population", "cvegeo")
            .values(
                "cvegeo",
                "cve_ent",
                "cve_loc",
                "name",
                "municipality_name",
                "state_name",
                "ambito",
                "lat",
                "lon",
            )[: self.FETCH]
        )
        phrase = " ".join(words)

        def rank(row):
            name, municipality = fold(row["name"]), fold(row["municipality_name"])
            rest = f"{municipality} {fold(row['state_name'])}"
            in_name = sum(1 for w in words if w in name)
            in_rest = sum(1 for w in words if w not in name and w in rest)
            return (
                -(in_name * 2 + in_rest),
                -sum(1 for w in words if w in municipality),  # the seat of the municipality named
                name != phrase,
                not name.startswith(words[0]),
                row["cve_ent"] != cve_ent,
                row["cve_loc"] != "0001",
                row["ambito"] != "U",
            )

        rows.sort(key=rank)
        return [
            Candidate(
                label=_label(row["name"], row["municipality_name"], row["state_name"]),
                lat=row["lat"],
                lon=row["lon"],
                kind="locality",
                source=self.name,
                municipality=row["municipality_name"],
                state=row["state_name"],
                cvegeo=row["cvegeo"],
            )
            for row in rows[:limit]
        ]

    def reverse(self, lat: float, lon: float) -> Candidate | None:
        from units.routing import haversine_km

        for half in (0.05, 0.25, 1.0):  # degrees; widen until some locality is near
            rows = list(
                Locality.objects.filter(
                    lat__gte=lat - half, lat__lte=lat + half, lon__gte=lon - half, lon__lte=lon + half
                ).values("cvegeo", "name", "municipality_name", "state_name", "lat", "lon")[:2000]
            )
            if rows:
                break
        else:
            return None
        distances = haversine_km(
            lat, lon, np.array([r["lat"] for r in rows]), np.array([r["lon"] for r in rows])
        )
        best = int(np.argmin(distances))
        row = rows[best]
        return Candidate(
            label=_label(row["name"], row["municipality_name"], row["state_name"]),
            lat=row["lat"],
            lon=row["lon"],
            kind="locality",
            source=self.name,
            municipality=row["municipality_name"],
            state=row["state_name"],
            cvegeo=row["cvegeo"],
            distance_m=round(float(distances[best]) * 1000, 1),
        )


class NominatimGeocoder:
    """Adapter for a Nominatim-compatible server (`/search`, `/reverse`, format jsonv2, addressdetails)."""

    name = "nominatim"

    def __init__(self, base_url: str | None = None, *, timeout: float | None = None, transport=None):
        self.base_url = (base_url or settings.CAD["GEOCODER_URL"]).rstrip("/")
        if not self.base_url:
            raise GeocoderUnavailable(_("Falta CAD_GEOCODER_URL para el geocodificador Nominatim."))
        self.timeout = timeout or settings.CAD["GEOCODER_TIMEOUT_S"]
        self.transport = transport

    def _get(self, path: str, params: dict):
        headers = {"User-Agent": settings.CAD["GEOCODER_USER_AGENT"], "Accept-Language": "es"}
        try:
            with httpx.Client(timeout=self.timeout, headers=headers, transport=self.transport) as client:
                response = client.get(f"{self.base_url}/{path}", params={**params, "format": "jsonv2"})
                response.raise_for_status()
                return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise GeocoderUnavailable(
                _("El geocodificador no respondió (%(error)s); capture coordenadas o marque en el mapa.")
                % {"error": type(exc).__name__}
            ) from exc

    def _candidate(self, item: dict, *, origin: tuple[float, float] | None = None) -> Candidate | None:
        try:
            lat, lon = float(item["lat"]), float(item["lon"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            return None
        address = item.get("address") or {}
        municipality = next(
            (address[k] for k in ("municipality", "county", "city", "town", "village") if address.get(k)),
            None,
        )
        distance = None
        if origin is not None:
            from units.routing import haversine_km

            distance = round(
                float(haversine_km(origin[0], origin[1], np.array([lat]), np.array([lon]))[0]) * 1000, 1
            )
        kind = "address" if address.get("road") or address.get("house_number") else "place"
        return Candidate(
            label=str(item.get("display_name") or item.get("name") or f"{lat:.5f}, {lon:.5f}")[:300],
            lat=lat,
            lon=lon,
            kind=kind,
            source=self.name,
            municipality=municipality,
            state=address.get("state"),
            distance_m=distance,
        )

    def search(self, query: str, *, limit: int = 8, cve_ent: str | None = None) -> list[Candidate]:
        found = self._get("search", {"q": query, "limit": limit, "addressdetails": 1, "countrycodes": "mx"})
        if not isinstance(found, list):
            return []
        return [c for c in (self._candidate(item) for item in found if isinstance(item, dict)) if c][:limit]

    def reverse(self, lat: float, lon: float) -> Candidate | None:
        found = self._get("reverse", {"lat": lat, "lon": lon, "addressdetails": 1, "zoom": 18})
        if not isinstance(found, dict) or "error" in found:
            return None
        return self._candidate(found, origin=(lat, lon))


GEOCODERS = {"gazetteer": GazetteerGeocoder, "nominatim": NominatimGeocoder}


def get_geocoder() -> Geocoder:
    """The configured geocoder: "gazetteer", "nominatim", or the dotted path of a class."""
    name = settings.CAD["GEOCODER"]
    cls = GEOCODERS.get(name) or import_string(name)
    return cls()
