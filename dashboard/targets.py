"""Response-time targets the dashboard reports compliance against.

Each target: the interval it measures, a threshold in seconds (an interval complies when it is <= the
threshold) and the share of intervals that must comply. Defaults:

* NENA STA-020 (call answering): 90 % of calls answered within 15 s, 95 % within 20 s.
* NFPA 1225 (alarm processing): 90 % processed within 60 s (answer → incident opened).
* Mexican 9-1-1 norm (Lineamientos / Norma Técnica del servicio 9-1-1): minimum data captured within 90 s
  (measured as processing), dispatch within 120 s (opened → first dispatch), first unit on scene within
  600 s of the call (total response). The norm states the times; the 90 % goal is this deployment's choice.
  The norm says "< 120 s"; elapsed times are continuous, so "<= 120 s" is the same figure in practice.

The Mexican thresholds come from `settings.CAD["TARGET_*_S"]`. A deployment overrides anything with a
`CAD_KPI_TARGETS` dict in Django settings: `{"answer_15s": {"goal": 0.92}}` changes one field,
`{"answer_15s": None}` drops a target, a new key adds one. Thresholds that fall on a histogram bucket edge
(every default does) are answered exactly from rollups; others are interpolated within one bucket.
"""

from django.conf import settings
from django.utils.translation import gettext_lazy as _


def _defaults() -> dict[str, dict]:
    cad = getattr(settings, "CAD", {})
    return {
        "answer_15s": {
            "metric": "answer",
            "seconds": 15,
            "goal": 0.90,
            "label": _("Contestadas en 15 s (NENA STA-020)"),
        },
        "answer_20s": {
            "metric": "answer",
            "seconds": 20,
            "goal": 0.95,
            "label": _("Contestadas en 20 s (NENA STA-020)"),
        },
        "processing_60s": {
            "metric": "processing",
            "seconds": 60,
            "goal": 0.90,
            "label": _("Procesamiento en 60 s (NFPA 1225)"),
        },
        "minimum_data": {
            "metric": "processing",
            "seconds": cad.get("TARGET_MINIMUM_DATA_S", 90),
            "goal": 0.90,
            "label": _("Datos mínimos capturados (norma 9-1-1)"),
        },
        "dispatch": {
            "metric": "dispatch",
            "seconds": cad.get("TARGET_DISPATCH_S", 120),
            "goal": 0.90,
            "label": _("Despacho (norma 9-1-1)"),
        },
        "on_scene": {
            "metric": "total",
            "seconds": cad.get("TARGET_ON_SCENE_S", 600),
            "goal": 0.90,
            "label": _("Arribo al lugar (norma 9-1-1)"),
        },
    }


def kpi_targets() -> dict[str, dict]:
    """The effective targets: defaults merged with `settings.CAD_KPI_TARGETS` (read on every call)."""
    targets = _defaults()
    for key, override in (getattr(settings, "CAD_KPI_TARGETS", None) or {}).items():
        if override is None:
            targets.pop(key, None)
        else:
            targets[key] = {**targets.get(key, {}), **override}
    return targets


class _LazyTargets(dict):
    """`CAD_KPI_TARGETS` as a mapping that always reflects current settings."""

    def _current(self):
        return kpi_targets()

    def __getitem__(self, key):
        return self._current()[key]

    def __iter__(self):
        return iter(self._current())

    def __len__(self):
        return len(self._current())

    def items(self):
        return self._current().items()

    def keys(self):
        return self._current().keys()

    def values(self):
        return self._current().values()

    def get(self, key, default=None):
        return self._current().get(key, default)

    def __contains__(self, key):
        return key in self._current()

    def __repr__(self):
        return repr(self._current())


CAD_KPI_TARGETS = _LazyTargets()
