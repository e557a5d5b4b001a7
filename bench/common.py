"""Shared plumbing for benchmarks: Django setup, percentiles, and the results table in docs/benchmarks.md.

Every benchmark prints its `key=value` results last and appends one dated row to docs/benchmarks.md.
"""

import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Rows are appended by the scripts in `bench/` (newest last). Machines are shared and noisy: compare\n"
    "medians and the ratio against the baseline measured in the same run, not absolute numbers across rows.\n\n"
    "| date (UTC) | benchmark | backend | parameters | results |\n|---|---|---|---|---|\n"
)


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")
    import django

    django.setup()


def backend() -> str:
    db = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    layer = "redis" if os.environ.get("REDIS_URL") else "in-memory"
    return (
        f"{db}+{layer} ({platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpu)"
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def progress(message: str) -> None:
    print(f"[{datetime.now(tz=UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def report(name: str, parameters: dict, results: dict) -> None:
    """Print `key=value` lines (last in the output) and append a dated row to docs/benchmarks.md."""
    RESULTS.parent.mkdir(exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text(HEADER, encoding="utf-8")
    params = ", ".join(f"{k}={v}" for k, v in parameters.items())
    values = ", ".join(f"{k}={_fmt(v)}" for k, v in results.items())
    row = f"| {datetime.now(tz=UTC):%Y-%m-%d %H:%M} | {name} | {backend()} | {params} | {values} |\n"
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(row)
    for key, value in results.items():
        print(f"{key}={_fmt(value)}", flush=True)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
