"""Geographic writes: import of state and municipality boundaries from GeoJSON FeatureCollections, and
of INEGI's localities catalogue (AGEEML CSV) for the offline gazetteer.

Understands INEGI's Marco Geoestadístico properties (`cve_ent`, `cve_mun`, `cvegeo`, `nomgeo`,
`nombre_catalogo`, `nombre_inegi`); any FeatureCollection with those keys (or `name`) is accepted.
"""

import csv
import io
import json
import math
import re
from pathlib import Path

from django.db import transaction
from django.utils.translation import gettext as _
from shapely import make_valid
from shapely.errors import GEOSException, ShapelyError
from shapely.geometry import MultiPolygon, Polygon, mapping, shape

from cad.errors import DomainError
from cad.text import fold
from geo import locator
from geo.models import Jurisdiction

DATA_DIR = Path(__file__).resolve().parent / "data" / "inegi-entidades"
INEGI_SOURCE = "Fuente: INEGI, Marco Geoestadístico"
# Estado de México and its neighbours with shipped boundaries.
DEFAULT_STATE_KEYS = ("09", "13", "15", "17", "22", "29")
NAME_KEYS = ("nomgeo", "NOMGEO", "nombre_catalogo", "nombre_inegi", "name", "NOMBRE", "nombre")


class JurisdictionImportError(DomainError):
    code = "invalid_geojson"


def shipped_files(*, all_states: bool = False) -> list[Path]:
    """The GeoJSON files shipped with the product: the default set, or every shipped state."""
    files = sorted(DATA_DIR.glob("*.geojson"))
    if all_states:
        return files
    return [f for f in files if f.name[:2] in DEFAULT_STATE_KEYS]


def load_geojson_file(path: Path | str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise JurisdictionImportError(
            _("No se pudo leer %(path)s como GeoJSON: %(error)s") % {"path": path, "error": exc}
        ) from exc


def _feature_error(index: int, message: str) -> JurisdictionImportError:
    return JurisdictionImportError(
        _("Elemento %(index)s de la colección: %(message)s") % {"index": index, "message": message},
        fields={"features": [str(index)]},
    )


def _property(properties: dict, *keys: str) -> str:
    for key in keys:
        value = properties.get(key)
        if value not in (None, ""):
            return str(value).strip()
    return ""


def _polygonal(geometry):
    """Only the polygonal part of a (repaired) geometry, or None."""
    if isinstance(geometry, Polygon | MultiPolygon):
        return geometry if not geometry.is_empty else None
    polygons = []
    for part in getattr(geometry, "geoms", []):
        if isinstance(part, Polygon):
            polygons.append(part)
        elif isinstance(part, MultiPolygon):
            polygons.extend(part.geoms)
    return MultiPolygon(polygons) if polygons else None


def _parse_feature(index: int, feature) -> dict:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise _feature_error(index, _("no es un Feature de GeoJSON"))
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise _feature_error(index, _("«properties» debe ser un objeto"))
    cve_ent = _property(properties, "cve_ent", "CVE_ENT")
    cve_mun = _property(properties, "cve_mun", "CVE_MUN")
    cvegeo = _property(properties, "cvegeo", "CVEGEO")
    if not cvegeo and cve_ent:
        cvegeo = cve_ent.zfill(2) + (cve_mun.zfill(3) if cve_mun else "")
    if not re.fullmatch(r"\d{2}|\d{5}", cvegeo):
        raise _feature_error(
            index,
            _("falta «cvegeo» o no tiene 2 dígitos (entidad) o 5 dígitos (municipio): «%(cvegeo)s»")
            % {"cvegeo": cvegeo},
        )
    if cve_ent and cve_ent.zfill(2) != cvegeo[:2]:
        raise _feature_error(
            index,
            _("«cve_ent» %(cve_ent)s no coincide con «cvegeo» %(cvegeo)s")
            % {"cve_ent": cve_ent, "cvegeo": cvegeo},
        )
    name = _property(properties, *NAME_KEYS)
    if not name:
        raise _feature_error(index, _("falta el nombre (nomgeo, nombre_catalogo, nombre_inegi o name)"))
    raw_geometry = feature.get("geometry")
    if not isinstance(raw_geometry, dict) or raw_geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise _feature_error(index, _("la geometría debe ser Polygon o MultiPolygon"))
    try:
        geometry = shape(raw_geometry)
        repaired = not geometry.is_valid
        if repaired:
            geometry = _polygonal(make_valid(geometry))
    except (ShapelyError, GEOSException, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise _feature_error(index, _("geometría ilegible: %(error)s") % {"error": exc}) from exc
    if geometry is None or geometry.is_empty:
        raise _feature_error(index, _("la geometría está vacía"))
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise _feature_error(index, _("las coordenadas no son WGS84 (longitud, latitud)"))
    return {
        "cvegeo": cvegeo,
        "cve_ent": cvegeo[:2],
        "kind": Jurisdiction.Kind.STATE if len(cvegeo) == 2 else Jurisdiction.Kind.MUNICIPALITY,
        "name": name[:160],
        # Stored as given when valid; repaired geometries are stored repaired.
        "geometry": json.loads(json.dumps(mapping(geometry))) if repaired else raw_geometry,
        "min_lat": min_lat,
        "min_lon": min_lon,
        "max_lat": max_lat,
        "max_lon": max_lon,
    }


@transaction.atomic
def import_feature_collection(*, data: dict, source: str) -> int:
    """Upsert the jurisdictions of a GeoJSON FeatureCollection by `cvegeo`; returns how many. Every
    feature is validated before anything is written (`JurisdictionImportError` names the feature).
    Municipalities are linked to their state when it is loaded (before or in this collection)."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise JurisdictionImportError(_("Se esperaba un GeoJSON de tipo FeatureCollection."))
    features = data.get("features")
    if not isinstance(features, list) or not features:
        raise JurisdictionImportError(_("La FeatureCollection no tiene elementos («features»)."))
    parsed = [_parse_feature(index, feature) for index, feature in enumerate(features)]
    # States first, so municipalities of the same collection find their parent.
    parsed.sort(key=lambda item: (item["kind"] != Jurisdiction.Kind.STATE, item["cvegeo"]))
    source = (source or "")[:200]
    for item in parsed:
        defaults = {k: v for k, v in item.items() if k != "cvegeo"}
        defaults["source"] = source
        if item["kind"] == Jurisdiction.Kind.MUNICIPALITY:
            defaults["parent"] = Jurisdiction.objects.filter(
                cvegeo=item["cve_ent"], kind=Jurisdiction.Kind.STATE
            ).first()
        else:
            defaults["parent"] = None
        state, _created = Jurisdiction.objects.update_or_create(cvegeo=item["cvegeo"], defaults=defaults)
        if state.kind == Jurisdiction.Kind.STATE:
            Jurisdiction.objects.filter(
                kind=Jurisdiction.Kind.MUNICIPALITY, cve_ent=state.cve_ent, parent__isnull=True
            ).update(parent=state)
    # Drop the cache now (this thread) and again once other threads can see the change.
    locator.invalidate()
    transaction.on_commit(locator.invalidate)
    return len(parsed)


def import_geojson_file(*, path: Path | str, source: str | None = None) -> int:
    path = Path(path)
    return import_feature_collection(
        data=load_geojson_file(path), source=source or f"{INEGI_SOURCE} ({path.name})"
    )


# --- Localities (INEGI AGEEML) ---------------------------------------------------------------
SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "muestra"
AGEEML_SOURCE = "Fuente: INEGI, Catálogo Único de Claves de Áreas Geoestadísticas (AGEEML)"
# Column aliases: the current catalogue (upper case, CVEGEO) and older downloads (Mapa, Cve_Ent, …).
_AGEEML_COLUMNS = {
    "CVEGEO": ("CVEGEO", "MAPA"),
    "CVE_ENT": ("CVE_ENT",),
    "NOM_ENT": ("NOM_ENT",),
    "CVE_MUN": ("CVE_MUN",),
    "NOM_MUN": ("NOM_MUN",),
    "CVE_LOC": ("CVE_LOC",),
    "NOM_LOC": ("NOM_LOC",),
    "AMBITO": ("AMBITO",),
    "LAT_DECIMAL": ("LAT_DECIMAL",),
    "LON_DECIMAL": ("LON_DECIMAL",),
    "LATITUD": ("LATITUD",),
    "LONGITUD": ("LONGITUD",),
    "POB_TOTAL": ("POB_TOTAL",),
}
_REQUIRED = ("CVE_ENT", "NOM_ENT", "CVE_MUN", "NOM_MUN", "CVE_LOC", "NOM_LOC")
_DMS = re.compile(
    r"^\s*(\d{1,3})\s*°\s*(\d{1,2})\s*['´’′]\s*(\d{1,2}(?:\.\d+)?)\s*(?:\"|''|″)?\s*([NSEOW])\s*$", re.I
)
MAX_REPORTED_ROWS = 20


class LocalityImportError(DomainError):
    code = "invalid_ageeml"


def _decode(raw: bytes) -> str:
    """INEGI publishes the catalogue in Latin-1 (and a UTF-8 variant): accept both."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _header_key(name: str) -> str:
    return fold(name).strip().strip('"').upper().replace(" ", "_")


def _coordinate(decimal: str, dms: str, *, limit: float) -> float | None:
    """Decimal degrees from LAT/LON_DECIMAL, else from the DMS column («19°17´17.360" N»; W/O and S are
    negative); None when the row has no coordinate. ValueError when present but unreadable."""
    decimal, dms = (decimal or "").strip(), (dms or "").strip()
    if decimal:
        value = float(decimal)
    elif dms:
        match = _DMS.match(dms)
        if not match:
            raise ValueError(dms)
        degrees, minutes, seconds, hemisphere = match.groups()
        value = int(degrees) + int(minutes) / 60 + float(seconds) / 3600
        value = -value if hemisphere.upper() in "SWO" else value
    else:
        return None
    if not (math.isfinite(value) and -limit <= value <= limit):
        raise ValueError(decimal or dms)
    return value


def read_ageeml_csv(raw: bytes, *, states: set[str] | None = None) -> tuple[list[dict], int]:
    """Rows of an AGEEML localities CSV as Locality fields, and how many rows had no coordinates (those
    are skipped, as in INEGI's own files some do). Raises LocalityImportError naming the bad lines; then
    nothing is imported."""
    reader = csv.reader(io.StringIO(_decode(raw)))
    try:
        header = [_header_key(h) for h in next(reader)]
    except StopIteration:
        raise LocalityImportError(_("El archivo está vacío.")) from None
    index = {}
    for key, aliases in _AGEEML_COLUMNS.items():
        for alias in aliases:
            if alias in header:
                index[key] = header.index(alias)
                break
    missing = [k for k in _REQUIRED if k not in index]
    if missing or not (
        ("LAT_DECIMAL" in index and "LON_DECIMAL" in index) or ("LATITUD" in index and "LONGITUD" in index)
    ):
        raise LocalityImportError(
            _("No es un catálogo AGEEML de localidades: faltan columnas %(columns)s.")
            % {"columns": ", ".join(missing or ["LAT_DECIMAL/LON_DECIMAL"])}
        )
    rows, skipped, errors = [], 0, []
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue

        def col(key, values=values):
            position = index.get(key)
            return values[position].strip() if position is not None and position < len(values) else ""

        cve_ent, cve_mun, cve_loc = col("CVE_ENT").zfill(2), col("CVE_MUN").zfill(3), col("CVE_LOC").zfill(4)
        if states and cve_ent not in states:
            continue
        if not (
            cve_ent.isdigit()
            and cve_mun.isdigit()
            and cve_loc.isdigit()
            and len(cve_ent + cve_mun + cve_loc) == 9
        ):
            errors.append(_("línea %(line)s: claves inválidas") % {"line": line})
            continue
        try:
            lat = _coordinate(col("LAT_DECIMAL"), col("LATITUD"), limit=90)
            lon = _coordinate(col("LON_DECIMAL"), col("LONGITUD"), limit=180)
        except ValueError as exc:
            errors.append(_("línea %(line)s: coordenada ilegible «%(value)s»") % {"line": line, "value": exc})
            continue
        if lat is None or lon is None:
            skipped += 1
            continue
        name, municipality, state = col("NOM_LOC"), col("NOM_MUN"), col("NOM_ENT")
        population = col("POB_TOTAL").replace(",", "")
        rows.append(
            {
                "cvegeo": cve_ent + cve_mun + cve_loc,
                "cve_ent": cve_ent,
                "cve_mun": cve_mun,
                "cve_loc": cve_loc,
                "name": name[:200],
                "municipality_name": municipality[:160],
                "state_name": state[:80],
                "ambito": col("AMBITO")[:1].upper(),
                "lat": lat,
                "lon": lon,
                "population": int(population) if population.isdigit() else None,
                "search_text": fold(f"{name}|{municipality}|{state}")[:500],
            }
        )
        if len(errors) > MAX_REPORTED_ROWS:
            break
    if errors:
        raise LocalityImportError(
            _("Filas inválidas; no se importó nada: %(errors)s")
            % {"errors": "; ".join(errors[:MAX_REPORTED_ROWS])},
            fields={"rows": errors[:MAX_REPORTED_ROWS]},
        )
    return rows, skipped


@transaction.atomic
def import_localities(*, raw: bytes, source: str, states: set[str] | None = None) -> tuple[int, int]:
    """Upsert the localities of an AGEEML CSV by CVEGEO (all rows or none); returns (imported, skipped
    without coordinates)."""
    from geo.models import Locality

    rows, skipped = read_ageeml_csv(raw, states=states)
    fields = [k for k in rows[0] if k != "cvegeo"] + ["source"] if rows else []
    source = (source or AGEEML_SOURCE)[:200]
    for start in range(0, len(rows), 2000):
        Locality.objects.bulk_create(
            [Locality(**row, source=source) for row in rows[start : start + 2000]],
            update_conflicts=True,
            unique_fields=["cvegeo"],
            update_fields=fields,
        )
    return len(rows), skipped


def import_localities_file(*, path: Path | str, source: str | None = None, states: set[str] | None = None):
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LocalityImportError(
            _("No se pudo leer %(path)s: %(error)s") % {"path": path, "error": exc}
        ) from exc
    return import_localities(raw=raw, source=source or f"{AGEEML_SOURCE} ({path.name})", states=states)
