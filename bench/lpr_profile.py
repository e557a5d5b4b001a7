"""Where the time of one LPR ingest POST goes, in-process (load-insensitive evidence for bench/lpr.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cad_x REDIS_URL=redis://127.0.0.1:6379/N \\
        python bench/lpr_profile.py [--hotlist 200000] [--batch 5000] [--posts 20] [--profile out.prof]

Recreates `<db>_bench_lpr_profile`, seeds what bench/lpr.py seeds, loads `--hotlist` plates straight
through `sensors.hotlists.upsert_entries`, then posts `--posts` prepared batches through Django's test
client (the whole request path minus the ASGI server): per POST wall time, SQL queries, and the time
spent in the stages of `sensors.lpr.ingest_reads` (parse/validate, membership, hit transaction, bulk
storage, heartbeats). `--profile` writes a cProfile of the posts (top functions printed). Drops the
database at the end.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import bench_database, drop_bench_database, median, progress  # noqa: E402
from bench.lpr import READERS, _plate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hotlist", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--profile", default="")
    args = parser.parse_args()
    url = bench_database("lpr_profile")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "profile-only-" + "x" * 40)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    try:
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        drop_bench_database(url)


def run(args) -> None:
    from django.core.management import call_command
    from django.db import connection, reset_queries, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from accounts.models import Role, User
    from cad.events import broadcaster
    from cad.models import Center, EventStream
    from sensors import lpr
    from sensors.hotlists import upsert_entries
    from sensors.models import Hotlist, HotlistEntry, LprReader
    from sensors.plates import plate_key

    call_command("migrate", verbosity=0)
    center = Center.objects.create(code="MEX", name="Estado de México C5", cve_ent="15")
    for name in EventStream.Name.values:
        EventStream.objects.get_or_create(center=center, name=name)
    LprReader.objects.bulk_create(
        [
            LprReader(
                center=center, code=f"ARCO-{i:03d}", name=f"Arco {i}", lat=19.0, lon=-99.0, direction="E"
            )
            for i in range(READERS)
        ]
    )
    device = User.objects.create(username="lpr-prof", role=Role.DEVICE, center=center)
    owner = User.objects.create(username="sup-prof", role=Role.SUPERVISOR, center=center)
    hotlist = Hotlist.objects.create(
        center=center, kind="stolen", name="Robados", source="bench", owner=owner
    )
    token = Token.objects.create(user=device).key
    rng = random.Random(7)
    plates: set[str] = set()
    while len(plates) < args.hotlist:
        plates.add(_plate(rng))
    progress(f"loading {args.hotlist:,} plates")
    now = timezone.now()
    ordered = sorted(plates)
    for start in range(0, len(ordered), 50_000):
        with transaction.atomic():  # the staging table empties at commit
            upsert_entries(
                [
                    HotlistEntry(
                        hotlist=hotlist,
                        plate=p,
                        plate_key=plate_key(p),
                        reason="robo",
                        valid_from=now,
                        vehicle={},
                    )
                    for p in ordered[start : start + 50_000]
                ]
            )
    connection.cursor().execute("ANALYZE")
    listed = rng.sample(ordered, args.posts + 5)
    stamp = timezone.now().isoformat()
    bodies = []
    for _ in range(args.posts + 2):
        reads = [
            {"reader": f"ARCO-{rng.randrange(READERS):03d}", "plate": _plate(rng), "read_at": stamp}
            for _ in range(args.batch)
        ]
        reads[rng.randrange(args.batch)]["plate"] = listed.pop()
        bodies.append(json.dumps({"reads": reads}).encode())
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")

    stages: dict[str, list[float]] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            began = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                stages.setdefault(name, []).append((time.perf_counter() - began) * 1000)

        return wrapper

    for name in (
        "_parse_batch",
        "_parse",
        "_active_entries",
        "_insert_returning",
        "_record_hits",
        "_store_reads",
        "_insert_reads",
        "mark_readers_seen",
    ):
        if hasattr(lpr, name):
            setattr(lpr, name, timed(name, getattr(lpr, name)))
    for body in bodies[:2]:  # warm-up (temp tables, caches)
        assert client.post("/api/v1/lpr/reads", body, content_type="application/json").status_code == 202
    stages.clear()
    walls, queries, parses, hits, cpus, sql = [], [], [], [], [], []
    profiler = cProfile.Profile() if args.profile else None
    for body in bodies[2:]:
        began = time.perf_counter()
        json.loads(body)
        parses.append((time.perf_counter() - began) * 1000)
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            began, cpu_began = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            response = client.post("/api/v1/lpr/reads", body, content_type="application/json")
            if profiler:
                profiler.disable()
            walls.append((time.perf_counter() - began) * 1000)
            cpus.append((time.process_time() - cpu_began) * 1000)
        assert response.status_code == 202, response.content[:300]
        hits.append(response.json()["hits"])
        queries.append(len(captured))
        sql.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
    broadcaster.drain()
    print(f"posts={len(walls)} batch={args.batch} hotlist={args.hotlist}")
    print(
        f"post_ms_median={median(walls):.1f} reads_per_s_one_thread={args.batch / median(walls) * 1000:.0f}"
    )
    print(f"python_cpu_ms_median={median(cpus):.1f} sql_ms_median={median(sql):.1f} (excl. COPY)")
    print(f"json_loads_ms_median={median(parses):.1f}")
    print(f"queries_per_post={sorted(set(queries))} hits_per_post={sorted(set(hits))}")
    for name, values in stages.items():
        per_post = sum(values) / len(walls)
        print(f"stage_{name}_ms_per_post={per_post:.1f} (calls/post={len(values) / len(walls):.0f})")
    if profiler:
        profiler.dump_stats(args.profile)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
