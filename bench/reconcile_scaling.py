"""Bench 5: ``unipost_connect_reconcile`` at 1,000 / 10,000 / 50,000 pending sessions.

The fake UniPost runs as its own process (bench/_seeded_fake.py) with 20 ms added to
every answer, pre-loaded with the sessions: a quarter completed, a quarter cancelled, half
still pending. For each run a fresh database (a new PostgreSQL database when
DATABASE_URL is set, else a SQLite file) is seeded by one child process, and the command
runs in another child whose only job is the command, so its ``ru_maxrss`` is the
command's peak RSS (Django's own footprint included, the same at every size).

Table 1: sizes at ``--workers 8`` (50,000 x 20 ms would be 1,000 s on one thread), with
the lower bound ``n x 20 ms / workers`` and the time per session relative to the
smallest size. Table 2: 1, 4 and 8 workers at 1,000 sessions.

    scripts/with-postgres .venv/bin/python bench/reconcile_scaling.py
    .venv/bin/python bench/reconcile_scaling.py --sizes 1000 10000 --worker-counts 1 8   # SQLite, quicker
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
    spread,
    start_fake,
    stop,
    table,
)

LATENCY_MS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--workers", type=int, default=8, help="for the size table")
    parser.add_argument("--worker-counts", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--worker-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="runs per point (the largest size: 1)")
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    parser.add_argument("--child", choices=["seed", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--created-at", help=argparse.SUPPRESS)
    parser.add_argument("--expires-at", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "seed":
        return child_seed(args)
    if args.child == "run":
        return child_run(args)

    now = datetime.now(UTC).replace(microsecond=0)
    created, expires = now - timedelta(minutes=10), now + timedelta(minutes=20)
    stamps = ["--created-at", created.isoformat(), "--expires-at", expires.isoformat()]
    biggest = max([*args.sizes, args.worker_size])
    fake, base_url = start_fake(
        "--sessions", str(biggest), *stamps, latency_ms=args.latency_ms, module="bench._seeded_fake"
    )
    try:
        sized = {}
        for n in args.sizes:
            rounds = 1 if n == max(args.sizes) and n > args.worker_size else args.rounds
            sized[n] = [one_run(n, args.workers, base_url, stamps) for _ in range(rounds)]
            print(f"  size {n}: {[round(r['wall'], 1) for r in sized[n]]} s", file=sys.stderr, flush=True)
        workers = {}
        for w in args.worker_counts:
            workers[w] = [one_run(args.worker_size, w, base_url, stamps) for _ in range(args.rounds)]
            print(
                f"  workers {w}: {[round(r['wall'], 1) for r in workers[w]]} s", file=sys.stderr, flush=True
            )
    finally:
        stop(fake)
    report_and_note(args, sized, workers)


def one_run(n: int, workers: int, base_url: str, stamps: list[str]) -> dict[str, float]:
    with database() as env:
        env = {**env, "BENCH_API_BASE_URL": base_url}
        child(["--child", "seed", "--n", str(n), *stamps], env)
        result = json.loads(child(["--child", "run", "--n", str(n)], {**env, "BENCH_WORKERS": str(workers)}))
    expected = {"completed": (n + 3) // 4, "cancelled": (n + 2) // 4}
    got = {k: result["counts"].get(k, 0) for k in expected}
    if got != expected or result["counts"].get("errors"):
        raise SystemExit(
            f"n={n} workers={workers}: expected {expected}, the command reported {result['counts']}"
        )
    return result


@contextlib.contextmanager
def database() -> Iterator[dict[str, str]]:
    server = os.environ.get("DATABASE_URL", "")
    if server.startswith("postgres"):
        with postgres_database(server, "unipost_bench_reconcile") as url:
            yield {"DATABASE_URL": url}
    else:
        with tempfile.TemporaryDirectory(prefix="unipost-bench-") as tmp:
            yield {"DATABASE_URL": "", "BENCH_SQLITE_PATH": str(Path(tmp) / "db.sqlite3")}


def child(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [PYTHON, __file__, *argv],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode:
        raise SystemExit(f"child {argv[:2]} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def child_seed(args: argparse.Namespace) -> None:
    from bench._common import migrate, setup_django

    setup_django()
    migrate()
    from django.contrib.auth import get_user_model

    from unipost_connect.models import ConnectSession

    created = datetime.fromisoformat(args.created_at)
    expires = datetime.fromisoformat(args.expires_at)
    User = get_user_model()
    users = User.objects.bulk_create(User(username=f"u{i}", password="!") for i in range(min(args.n, 1000)))
    batch = 5000
    for start in range(0, args.n, batch):
        ConnectSession.objects.bulk_create(
            ConnectSession(
                user=users[i % len(users)],
                platform="linkedin",
                external_user_id=f"ext_{i % 1000}",
                unipost_session_id=f"cs_bench_{i}",
                url=f"http://127.0.0.1/connect/linkedin?session={i}",
                status="pending",
                created_at=created + timedelta(microseconds=i),
                expires_at=expires,
            )
            for i in range(start, min(start + batch, args.n))
        )
    print("seeded")


def child_run(args: argparse.Namespace) -> None:
    from bench._common import rss_mb_of, setup_django

    setup_django()
    from django.core.management import call_command
    from django.db.models import Count

    from unipost_connect.models import ConnectedAccount, ConnectSession

    workers = int(os.environ["BENCH_WORKERS"])
    ConnectSession.objects.exists()  # connect before measuring
    rss_before = rss_mb_of(os.getpid())
    out = io.StringIO()
    started = time.monotonic()
    call_command("unipost_connect_reconcile", older_than=0, workers=workers, stdout=out, stderr=out)
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    statuses = dict(ConnectSession.objects.values_list("status").annotate(c=Count("id")).order_by())
    counts = {
        **statuses,
        "errors": out.getvalue().count("request_id="),
        "accounts": ConnectedAccount.objects.count(),
    }
    print(
        json.dumps(
            {
                "n": args.n,
                "workers": workers,
                "wall": wall,
                "peak_rss_mb": peak,
                "rss_before_mb": rss_before,
                "counts": counts,
            }
        )
    )


def report_and_note(
    args: argparse.Namespace, sized: dict[int, list[dict]], workers: dict[int, list[dict]]
) -> None:
    report(args, sized, workers)
    print(machine_note())


def report(args: argparse.Namespace, sized: dict[int, list[dict]], workers: dict[int, list[dict]]) -> None:
    vendor = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    smallest = min(sized)
    per_session0 = median([r["wall"] for r in sized[smallest]]) / smallest
    rss0 = median([r["peak_rss_mb"] for r in sized[smallest]])
    rows = []
    linear = flat = True
    for n, runs in sized.items():
        wall = median([r["wall"] for r in runs])
        rel = (wall / n) / per_session0
        rss = median([r["peak_rss_mb"] for r in runs])
        ideal = n * args.latency_ms / 1000 / args.workers
        linear &= rel <= 1.25
        flat &= rss - rss0 <= 30
        rows.append(
            [
                f"{n:,}",
                len(runs),
                wall,
                spread([r["wall"] for r in runs]),
                n / wall,
                rel,
                ideal,
                ideal / wall,
                rss,
                rss - rss0,
                median([r["rss_before_mb"] for r in runs]),
            ]
        )
    print(
        table(
            [
                "sessions",
                "runs",
                "wall s",
                "spread",
                "sessions/s",
                "s/session vs smallest",
                "ideal s",
                "efficiency",
                "peak RSS MB",
                "Δ RSS MB",
                "RSS before MB",
            ],
            rows,
            title=f"Reconcile scaling, --workers {args.workers}, fake at {args.latency_ms:g} ms, {vendor} "
            f"(a quarter completed, a quarter cancelled, half pending)",
        )
    )
    print(
        f"time linear (s/session within 1.25x of the smallest size's): {ok(linear)}; "
        f"peak RSS flat (within 30 MB): {ok(flat)}"
    )
    print()
    w1 = median([r["wall"] for r in workers[min(workers)]])
    rows = []
    for w, runs in workers.items():
        wall = median([r["wall"] for r in runs])
        ideal = args.worker_size * args.latency_ms / 1000 / w
        rows.append(
            [
                w,
                wall,
                spread([r["wall"] for r in runs]),
                args.worker_size / wall,
                w1 / wall,
                ideal,
                ideal / wall,
                median([r["peak_rss_mb"] for r in runs]),
            ]
        )
    print(
        table(
            ["workers", "wall s", "spread", "sessions/s", "speed-up", "ideal s", "efficiency", "peak RSS MB"],
            rows,
            title=f"Reconcile workers at {args.worker_size:,} sessions "
            f"({len(next(iter(workers.values())))} runs each)",
        )
    )


if __name__ == "__main__":
    main()
