"""Run a benchmark several times and print the median of each numeric key, with the load it ran under.

    python bench/repeat.py [-n 3] -- python bench/recommend.py --units 10000

Each run appends its own row to docs/benchmarks.md as usual; this prints, last, `key=median` for every
numeric key (and the values of the runs), plus `load_1min_before` / `load_1min_after` (from /proc/loadavg)
so a quoted median says how busy the machine was.
"""

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_1min() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=3, help="runs (default 3)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the benchmark command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the benchmark command after --")
    runs: list[dict[str, str]] = []
    loads = []
    for number in range(1, args.n + 1):
        before = load_1min()
        print(
            f"[repeat] run {number}/{args.n} (load {before:.2f}): {' '.join(command)}",
            file=sys.stderr,
            flush=True,
        )
        done = subprocess.run(command, cwd=ROOT, env=os.environ, capture_output=True, text=True)
        sys.stderr.write(done.stderr[-2000:])
        if done.returncode:
            sys.exit(f"run {number} failed with {done.returncode}:\n{done.stdout[-2000:]}")
        keys = dict(
            line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and " " not in line
        )
        runs.append(keys)
        loads.append((before, load_1min()))
        print(f"[repeat] run {number}: " + ", ".join(f"{k}={v}" for k, v in keys.items()), file=sys.stderr)
    for key in runs[0]:
        values = [run.get(key) for run in runs]
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            print(f"{key}={' / '.join(str(v) for v in values)}")
            continue
        print(f"{key}={statistics.median(numbers):.3f} (runs: {', '.join(values)})")
    print(f"load_1min_before={' / '.join(f'{b:.2f}' for b, _ in loads)}")
    print(f"load_1min_after={' / '.join(f'{a:.2f}' for _, a in loads)}")


if __name__ == "__main__":
    main()
