"""Bench 10: ``unipost_connect_reconcile --enqueue`` drained by 2 db_worker processes vs 1.

The fake UniPost runs as its own process (bench/_seeded_fake.py, as bench 5 seeds it) with
20 ms added to every answer, pre-loaded with N sessions: a quarter completed, a quarter
cancelled, half pending. Each run gets a fresh PostgreSQL database, seeded with the N
local pending sessions by bench/reconcile_scaling.py's seed child, migrated for
django-tasks-db (bench.tasks_settings); then ``unipost_connect_reconcile --enqueue
--older-than 0`` enqueues one ``reconcile_session`` task per session, and K ``db_worker``
processes (``--interval 0.05``) are started and drain the queue. The drain time is the
last task's ``finished_at`` minus the first one's ``started_at`` (worker start-up, about
a second of Django set-up, left out; the wall time from the workers' start is shown
too). Runs alternate 1, 2, 2, 1, ... so both counts see the same machine.

    scripts/with-postgres .venv/bin/python bench/reconcile_enqueue.py
    scripts/with-postgres .venv/bin/python bench/reconcile_enqueue.py --sessions 400 --rounds 1   # quick
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PYTHON,
    ROOT,
    machine_note,
    median,
    ok,
    postgres_database,
    require_postgres,
    spawn,
    spread,
    start_fake,
    stop,
    table,
)

SETTINGS = "bench.tasks_settings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="runs per worker count")
    parser.add_argument("--worker-counts", type=int, nargs=2, default=[1, 2])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--drain-cap", type=float, default=300.0, help="seconds per run")
    args = parser.parse_args()
    server_url = require_postgres("reconcile_enqueue")

    now = datetime.now(UTC).replace(microsecond=0)
    created, expires = now - timedelta(minutes=10), now + timedelta(minutes=30)
    stamps = ["--created-at", created.isoformat(), "--expires-at", expires.isoformat()]
    fake, base_url = start_fake(
        "--sessions", str(args.sessions), *stamps, latency_ms=args.latency_ms, module="bench._seeded_fake"
    )
    a, b = args.worker_counts
    order = [w for r in range(args.rounds) for w in ((a, b) if r % 2 == 0 else (b, a))]
    runs: dict[int, list[dict[str, float]]] = {a: [], b: []}
    try:
        with tempfile.TemporaryDirectory(prefix="unipost-bench-") as tmp:
            for k, workers in enumerate(order):
                result = one_run(args, server_url, base_url, stamps, workers, Path(tmp) / f"run{k}")
                runs[workers].append(result)
                print(
                    f"  run {k + 1}: {workers} worker(s), drain {result['drain']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        stop(fake)
    report(args, runs, order)
    print(machine_note())


def one_run(
    args: argparse.Namespace, server_url: str, base_url: str, stamps: list[str], workers: int, logdir: Path
) -> dict[str, float]:
    import psycopg

    logdir.mkdir()
    n = args.sessions
    with postgres_database(server_url, "unipost_bench_reconcile_enqueue") as db_url:
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "BENCH_API_BASE_URL": base_url,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
        }
        seed = [
            PYTHON,
            str(ROOT / "bench" / "reconcile_scaling.py"),
            "--child",
            "seed",
            "--n",
            str(n),
            *stamps,
        ]
        run(seed, {**env, "DJANGO_SETTINGS_MODULE": "bench.settings"})
        run([PYTHON, "-m", "django", "migrate", "--run-syncdb", "-v", "0"], env)
        started = time.monotonic()
        out = run(
            [PYTHON, "-m", "django", "unipost_connect_reconcile", "--enqueue", "--older-than", "0"], env
        )
        enqueue_s = time.monotonic() - started
        match = re.search(r"Enqueued (\d+) sessions", out)
        enqueued = int(match.group(1)) if match else -1
        if enqueued != n:
            raise SystemExit(f"enqueued {enqueued} of {n}:\n{out}")
        argv = [
            PYTHON,
            "-m",
            "django",
            "db_worker",
            "--no-reload",
            "--no-startup-delay",
            "--interval",
            "0.05",
        ]
        procs = [
            spawn([*argv, "--worker-id", f"bench-w{k}"], env=env, log=logdir / f"w{k}.log")
            for k in range(workers)
        ]
        try:
            with psycopg.connect(db_url, autocommit=True) as db:
                started = time.monotonic()
                deadline = started + args.drain_cap
                while time.monotonic() < deadline:
                    left = db.execute(
                        "SELECT count(*) FROM django_tasks_database_dbtaskresult "
                        "WHERE status IN ('READY', 'RUNNING')"
                    ).fetchone()[0]
                    if left == 0:
                        break
                    for p in procs:
                        if p.poll() is not None:
                            raise SystemExit(f"a db_worker exited {p.returncode}")
                    time.sleep(0.1)
                wall = time.monotonic() - started
                first, last = db.execute(
                    "SELECT min(started_at), max(finished_at) FROM django_tasks_database_dbtaskresult"
                ).fetchone()
                tasks = dict(
                    db.execute(
                        "SELECT status, count(*) FROM django_tasks_database_dbtaskresult GROUP BY status"
                    ).fetchall()
                )
                per_worker = db.execute(
                    "SELECT worker_ids->>0, count(*) FROM django_tasks_database_dbtaskresult GROUP BY 1"
                ).fetchall()
                statuses = dict(
                    db.execute(
                        "SELECT status, count(*) FROM unipost_connect_connectsession GROUP BY status"
                    ).fetchall()
                )
        finally:
            for p in procs:
                stop(p)
    expected = {
        "completed": (n + 3) // 4,
        "cancelled": (n + 2) // 4,
        "pending": n - (n + 3) // 4 - (n + 2) // 4,
    }
    if statuses != expected or tasks != {"SUCCESSFUL": n}:
        raise SystemExit(f"{workers} workers: sessions {statuses} (want {expected}), tasks {tasks}")
    return {
        "workers": workers,
        "drain": (last - first).total_seconds(),
        "wall": wall,
        "enqueue": enqueue_s,
        "per_worker": sorted(c for _, c in per_worker),
    }


def run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"{argv[2:5]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def report(args: argparse.Namespace, runs: dict[int, list[dict]], order: list[int]) -> None:
    n = args.sessions
    rows = []
    for k, w in enumerate(order):
        r = runs[w][sum(1 for x in order[:k] if x == w)]
        rows.append([k + 1, w, r["drain"], r["wall"], n / r["drain"], r["enqueue"], str(r["per_worker"])])
    print(
        table(
            ["run", "workers", "drain s", "wall s", "sessions/s", "enqueue s", "tasks per worker"],
            rows,
            title=f"reconcile --enqueue, {n:,} pending sessions, fake at {args.latency_ms:g} ms, "
            f"db_worker --interval 0.05, PostgreSQL",
        )
    )
    a, b = args.worker_counts
    da, db = median([r["drain"] for r in runs[a]]), median([r["drain"] for r in runs[b]])
    pairs = [x["drain"] / y["drain"] for x, y in zip(runs[a], runs[b], strict=True)]
    ideal = n * args.latency_ms / 1000
    print()
    print(
        table(
            [
                "workers",
                "median drain s",
                "spread",
                "ideal s",
                "efficiency",
                "speed-up",
                "per pair",
                "target",
                "",
            ],
            [
                [a, da, spread([r["drain"] for r in runs[a]]), ideal / a, ideal / a / da, 1.0, "", "", ""],
                [
                    b,
                    db,
                    spread([r["drain"] for r in runs[b]]),
                    ideal / b,
                    ideal / b / db,
                    da / db,
                    spread(pairs),
                    "≥ 1.8",
                    ok(da / db >= 1.8),
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
