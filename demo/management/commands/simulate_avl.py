"""Demo/ops tool: keep unit positions fresh by moving available units a little, as AVL devices would.

    python manage.py simulate_avl [--interval 5] [--once] [--center MEX] [--step-m 120]

Each round takes the centre's available units that have a position (or a station), moves each by a small
random step that is pulled back toward where the unit started (so fleets do not drift away over hours),
and posts the fixes through units.services.record_positions in batches, exactly as the AVL API does.
Recommendations skip positions older than CAD["AVL_STALE_SECONDS"]; run this in demos so they stay fresh.
"""

import math
import random
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import DomainError
from cad.models import Center
from units.models import Unit, UnitStatus
from units.services import record_positions

METERS_PER_DEGREE = 111_000.0


class Command(BaseCommand):
    help = _("Simula posiciones AVL de las unidades disponibles (demostración). Ctrl+C detiene.")

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=5.0, help=_("segundos entre rondas"))
        parser.add_argument("--once", action="store_true", help=_("una sola ronda y salir"))
        parser.add_argument(
            "--center", default=None, help=_("código del centro (predeterminado: CAD_CENTER_CODE)")
        )
        parser.add_argument("--step-m", type=float, default=120.0, help=_("paso máximo por ronda, en metros"))
        parser.add_argument("--batch", type=int, default=1000, help=_("posiciones por lote"))
        parser.add_argument("--seed", type=int, default=None, help=_("semilla aleatoria (reproducible)"))
        parser.add_argument("--quiet", action="store_true", help=_("una línea de progreso por minuto"))

    def handle(self, *args, **options):
        code = options["center"] or settings.CAD["CENTER_CODE"]
        center = Center.objects.filter(code=code).first()
        if center is None:
            raise CommandError(
                _("No existe el centro %(code)s; ejecute primero: python manage.py seed_demo")
                % {"code": code}
            )
        batch = max(1, min(options["batch"], settings.CAD["AVL_MAX_BATCH"]))
        simulator = AvlSimulator(
            center_id=center.id, step_m=options["step_m"], rng=random.Random(options["seed"])
        )
        interval = max(0.1, options["interval"])
        last_line = 0.0
        rounds = 0
        try:
            while True:
                started = time.monotonic()
                _drop_stale_connection()
                try:
                    sent, units = simulator.round(batch=batch)
                except (DomainError, DatabaseError) as exc:  # a unit deleted meanwhile, SQLite busy…
                    self.stderr.write(_("Ronda omitida: %(error)s") % {"error": exc})
                    sent, units = 0, 0
                rounds += 1
                elapsed_ms = (time.monotonic() - started) * 1000
                if not options["quiet"] or options["once"] or started - last_line >= 60:
                    last_line = started
                    self.stdout.write(
                        _("[%(time)s] ronda %(n)d: %(sent)d posiciones de %(units)d unidades en %(ms).0f ms")
                        % {
                            "time": timezone.localtime().strftime("%H:%M:%S"),
                            "n": rounds,
                            "sent": sent,
                            "units": units,
                            "ms": elapsed_ms,
                        }
                    )
                if options["once"]:
                    return
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            self.stdout.write(_("Simulador AVL detenido."))
        finally:
            _drop_stale_connection()


def _drop_stale_connection() -> None:
    """Between rounds of a long-running loop, as Django does between requests (never inside a caller's
    transaction, which closing the connection would roll back)."""
    if not connection.in_atomic_block:
        close_old_connections()


class AvlSimulator:
    """A mean-reverting random walk per unit, anchored where the unit was first seen."""

    def __init__(self, *, center_id: int, step_m: float, rng: random.Random):
        self.center_id = center_id
        self.step_m = step_m
        self.rng = rng
        self.anchors: dict[int, tuple[float, float]] = {}

    def next_fixes(self) -> list[dict]:
        now = timezone.now()
        rows = Unit.objects.filter(center_id=self.center_id, status=UnitStatus.AVAILABLE).values_list(
            "id", "lat", "lon", "station__lat", "station__lon"
        )
        fixes = []
        for unit_id, lat, lon, station_lat, station_lon in rows:
            if lat is None or lon is None:
                if station_lat is None:
                    continue  # no position and no station: nothing sensible to simulate
                lat, lon = station_lat, station_lon
            anchor_lat, anchor_lon = self.anchors.setdefault(unit_id, (lat, lon))
            step_deg = self.step_m / METERS_PER_DEGREE
            cos_lat = max(math.cos(math.radians(lat)), 0.2)
            new_lat = lat + self.rng.uniform(-step_deg, step_deg) + 0.1 * (anchor_lat - lat)
            new_lon = lon + self.rng.uniform(-step_deg, step_deg) / cos_lat + 0.1 * (anchor_lon - lon)
            fixes.append(
                {
                    "unit_id": unit_id,
                    "lat": round(new_lat, 6),
                    "lon": round(new_lon, 6),
                    "recorded_at": now,
                    "speed_kmh": round(self.rng.uniform(0, 40), 1),
                    "heading": round(self.rng.uniform(0, 360), 1),
                }
            )
        return fixes

    def round(self, *, batch: int) -> tuple[int, int]:
        """Post one fix per available unit; returns (positions stored, units)."""
        fixes = self.next_fixes()
        sent = 0
        for start in range(0, len(fixes), batch):
            sent += record_positions(center_id=self.center_id, positions=fixes[start : start + batch])
        return sent, len(fixes)
