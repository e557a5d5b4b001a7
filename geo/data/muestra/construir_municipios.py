"""Builds municipios-15-aproximados.geojson: APPROXIMATE municipal areas of the Estado de México for the
demo and tests, NOT INEGI's municipal boundaries (see SOURCE.md). Each area is the Voronoi cell of the
municipal seat listed in localidades-muestra.csv, clipped to INEGI's state boundary.

    .venv/bin/python geo/data/muestra/construir_municipios.py
"""

import csv
import json
from pathlib import Path

import shapely
from shapely.geometry import MultiPoint, mapping, shape

HERE = Path(__file__).resolve().parent
STATE = HERE.parent / "inegi-entidades" / "15-estado-de-mexico.geojson"


def main() -> None:
    state = shape(json.loads(STATE.read_text(encoding="utf-8"))["features"][0]["geometry"])
    with open(HERE / "localidades-muestra.csv", encoding="utf-8") as handle:
        seats = [r for r in csv.DictReader(handle) if r["CVE_ENT"] == "15" and r["CVE_LOC"] == "0001"]
    points = [shapely.Point(float(r["LON_DECIMAL"]), float(r["LAT_DECIMAL"])) for r in seats]
    cells = shapely.voronoi_polygons(MultiPoint(points), extend_to=state.envelope.buffer(1.0))
    features = []
    for row, point in zip(seats, points, strict=True):
        cell = next(c for c in cells.geoms if c.contains(point))
        area = shapely.set_precision(cell.intersection(state), 0.0001)
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "cvegeo": row["CVE_ENT"] + row["CVE_MUN"],
                    "cve_ent": row["CVE_ENT"],
                    "cve_mun": row["CVE_MUN"],
                    "nomgeo": row["NOM_MUN"],
                    "aproximado": True,
                },
                "geometry": mapping(area),
            }
        )
    features.sort(key=lambda f: f["properties"]["cvegeo"])
    out = HERE / "municipios-15-aproximados.geojson"
    out.write_text(
        json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), encoding="utf-8"
    )
    print(f"{len(features)} áreas → {out.name}")


if __name__ == "__main__":
    main()
