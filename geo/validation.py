"""Checks of a coordinate typed, clicked or received for a call or an incident.

A bad coordinate never becomes a silent NULL: out of range, 0,0, a likely lat/lon swap or a missing minus
sign is a field error; a point outside the centre's service area (its state boundary, widened by
CAD_SERVICE_AREA_MARGIN_KM) needs an explicit confirmation (`confirm_outside_area`), and the result says
it is outside. Without a loaded boundary for the centre the service area is Mexico's bounding box.
"""

import math
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _

from cad.errors import DomainError
from geo import locator
from geo.models import Jurisdiction

# Mexico's bounding box (islands included), the fallback service area.
MEXICO_BBOX = (14.3, -118.6, 32.8, -86.5)  # min_lat, min_lon, max_lat, max_lon


class BadCoordinates(DomainError):
    code = "invalid_coordinates"


@dataclass(frozen=True)
class PointCheck:
    """A checked point: its state and municipality (None where no boundary covers it) and whether it lies
    in the centre's service area."""

    lat: float
    lon: float
    state: Jurisdiction | None
    municipality: Jurisdiction | None
    inside_service_area: bool

    def summary(self) -> dict:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "inside_service_area": self.inside_service_area,
            "state": self.state.name if self.state else None,
            "municipality": self.municipality.name if self.municipality else None,
        }


def _in_mexico(lat: float, lon: float) -> bool:
    min_lat, min_lon, max_lat, max_lon = MEXICO_BBOX
    return min_lat <= lat <= max_lat and min_lon <= lon <= max_lon


def in_service_area(lat: float, lon: float, *, cve_ent: str | None) -> bool:
    """Inside the centre's state (with the configured margin), or Mexico when that boundary is unknown."""
    inside = None
    if cve_ent:
        inside = locator.within(cve_ent, lat, lon, margin_km=settings.CAD["SERVICE_AREA_MARGIN_KM"])
    return _in_mexico(lat, lon) if inside is None else inside


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_point(*, lat, lon, cve_ent: str | None, confirm_outside_area: bool = False) -> PointCheck | None:
    """Validate a coordinate pair for the centre whose state key is `cve_ent`; None when both are None.

    Raises BadCoordinates (400) with field errors, code `invalid_coordinates`, `coordinates_swapped`,
    `missing_minus_sign`, `null_island`, or `outside_service_area` when the point is outside and not
    confirmed."""
    if lat is None and lon is None:
        return None
    if lat is None or lon is None:
        missing = "lon" if lon is None else "lat"
        raise BadCoordinates(
            _("Capture latitud y longitud juntas."),
            fields={missing: [_("Capture latitud y longitud juntas.")]},
        )
    lat_n, lon_n = _number(lat), _number(lon)
    errors = {}
    if lat_n is None or not -90 <= lat_n <= 90:
        errors["lat"] = [_("La latitud debe ser un número entre -90 y 90.")]
    if lon_n is None or not -180 <= lon_n <= 180:
        errors["lon"] = [_("La longitud debe ser un número entre -180 y 180.")]
    if lat_n is not None and lon_n is not None:
        swapped_ok = -90 <= lon_n <= 90 and in_service_area(lon_n, lat_n, cve_ent=cve_ent)
        if swapped_ok and (errors or not in_service_area(lat_n, lon_n, cve_ent=cve_ent)):
            hint = _(
                "¿Invirtió latitud y longitud? Con los valores intercambiados (%(lat)s, %(lon)s) el punto sí cae en el área del centro."
            ) % {
                "lat": lon_n,
                "lon": lat_n,
            }
            raise BadCoordinates(hint, code="coordinates_swapped", fields={"lat": [hint], "lon": [hint]})
    if errors:
        raise BadCoordinates(_("Coordenadas fuera de rango; revise los campos marcados."), fields=errors)
    if abs(lat_n) < 1e-6 and abs(lon_n) < 1e-6:
        message = _("0, 0 no es una ubicación (suele ser el valor vacío de un dispositivo).")
        raise BadCoordinates(message, code="null_island", fields={"lat": [message], "lon": [message]})
    inside = in_service_area(lat_n, lon_n, cve_ent=cve_ent)
    if not inside:
        for fixed_lat, fixed_lon, field in ((lat_n, -lon_n, "lon"), (-lat_n, lon_n, "lat")):
            if in_service_area(fixed_lat, fixed_lon, cve_ent=cve_ent):
                hint = _("¿Falta el signo menos? Con %(value)s el punto sí cae en el área del centro.") % {
                    "value": fixed_lon if field == "lon" else fixed_lat
                }
                raise BadCoordinates(hint, code="missing_minus_sign", fields={field: [hint]})
    state, municipality = locator.locate(lat_n, lon_n)
    if not inside and not confirm_outside_area:
        # Where the point IS, then that it is not ours: "(Ciudad de México)" after "del centro" read as the
        # name of this centre.
        where = ", ".join(j.name for j in (municipality, state) if j)
        message = (
            _(
                "El punto (%(lat)s, %(lon)s) cae en %(where)s, fuera del área de servicio de este centro. "
                "Confírmelo para continuar."
            )
            if where
            else _(
                "El punto (%(lat)s, %(lon)s) está fuera de los límites cargados y del área de servicio de este "
                "centro. Confírmelo para continuar."
            )
        ) % {"lat": lat_n, "lon": lon_n, "where": where}
        raise BadCoordinates(
            message,
            code="outside_service_area",
            fields={"confirm_outside_area": [message]},
        )
    return PointCheck(lat_n, lon_n, state, municipality, inside)
