"""Bench 9: webhook ingest with django-tasks-db's database backend, and delivery → applied.

Part 1 (ingest): gunicorn (2 sync workers) serves bench.tasks_settings (bench.settings +
``TASKS`` = django-tasks-db's ``DatabaseBackend``) on a fresh PostgreSQL database. The
webhook view verifies the signature, stores the event ``received`` and, after commit,
enqueues ``process_webhook_event`` (one more INSERT, into django-tasks-db's table). No
worker runs: the tasks queue up. Against it, in the same run, the one-INSERT baseline view
(bench/baseline_urls.py), rounds alternating which side goes first, exactly as
bench/webhook_ingest.py does (its event maker and round loop are reused).

Part 2 (delivery → applied): two ``db_worker`` processes (``--interval`` 0.05 s) and a
standalone fake UniPost (bench/_tasks_fake.py, one completed session per event) are
started; the queued tasks of part 1 are deleted; then ``--latency-events`` completing
events are POSTed open-loop, paced at the rate part 1 measured for our view (or
``--latency-rate``), and each event's latency is its row's ``processed_at`` minus the
moment its POST began (same machine, same clock).

    scripts/with-postgres .venv/bin/python bench/webhook_ingest_tasks.py
    scripts/with-postgres .venv/bin/python bench/webhook_ingest_tasks.py --requests 400 --rounds 2 \
        --latency-events 200   # quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PYTHON,
    access_log_statuses,
    free_port,
    machine_note,
    median,
    migrate,
    ok,
    percentile,
    postgres_database,
    require_postgres,
    setup_django,
    spawn,
    spread,
    start_fake,
    start_gunicorn,
    stop,
    table,
    timed_post,
)
from bench.webhook_ingest import bench_kind, make_events

SETTINGS = "bench.tasks_settings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per side (split over rounds)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=8, help="load generator threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (sync)")
    parser.add_argument("--warmup", type=int, default=200, help="per side, not measured")
    parser.add_argument("--time-cap", type=float, default=120.0, help="seconds per phase")
    parser.add_argument("--latency-events", type=int, default=1000, help="0 skips part 2")
    parser.add_argument("--latency-rate", type=float, default=0.0, help="req/s; 0: part 1's median")
    parser.add_argument("--latency-extra-rates", type=float, nargs="*", default=[], help="more paced runs")
    parser.add_argument("--db-workers", type=int, default=2)
    parser.add_argument("--fake-latency-ms", type=float, default=0.0)
    parser.add_argument("--drain-cap", type=float, default=120.0, help="seconds to wait for the workers")
    args = parser.parse_args()
    args.worker_class, args.gthreads = "sync", 1
    server_url = require_postgres("webhook_ingest_tasks")

    per_round = args.requests // args.rounds
    with (
        tempfile.TemporaryDirectory(prefix="unipost-bench-") as tmp,
        postgres_database(server_url, "unipost_bench_ingest_tasks") as db_url,
    ):
        logdir = Path(tmp)
        setup_django(SETTINGS, DATABASE_URL=db_url, BENCH_CONN_MAX_AGE="0")
        migrate()
        from django.db import connections

        from unipost_connect import tasks

        assert not tasks.runs_inline(), "bench.tasks_settings must configure a worker backend"
        n = args.warmup + per_round * args.rounds
        ours_events = make_events("completing", n)
        base_events = make_events("unknown", n, prefix="bcompleting")
        rates = []
        connections.close_all()
        port = free_port()
        gunicorn = start_gunicorn(
            "bench.wsgi",
            port,
            workers=args.workers,
            env={"DATABASE_URL": db_url, "BENCH_CONN_MAX_AGE": "60", "DJANGO_SETTINGS_MODULE": SETTINGS},
            logdir=logdir,
            ready_path="/bench/done/",
        )
        latency: list[tuple[float, dict[str, Any]]] = []
        try:
            site = f"http://127.0.0.1:{port}"
            ratios, ours_tp, base_tp, ours_s, base_s = bench_kind(
                args, site, ours_events, base_events, per_round
            )
            audit = ingest_audit(n)
            print_ingest(args, per_round, ratios, ours_tp, base_tp, ours_s, base_s, audit, logdir)
            if args.latency_events > 0:
                rates = [args.latency_rate or median(ours_tp), *args.latency_extra_rates]
                latency = part2(args, site, db_url, logdir, rates)
        finally:
            stop(gunicorn)
            connections.close_all()
    if latency:
        print_latency(args, latency)
    print(machine_note())


def ingest_audit(n: int) -> dict[str, Any]:
    from django.db.models import Count
    from django_tasks_db.models import DBTaskResult

    from bench.models import BaselineEvent
    from unipost_connect.models import ConnectSession, WebhookEvent

    return {
        "sent per side": n,
        "events": dict(WebhookEvent.objects.values_list("result").annotate(c=Count("id")).order_by()),
        "tasks": dict(DBTaskResult.objects.values_list("status").annotate(c=Count("id")).order_by()),
        "sessions completed in the request": ConnectSession.objects.filter(status="completed").count(),
        "baseline rows": BaselineEvent.objects.count(),
    }


def print_ingest(args, per_round, ratios, ours_tp, base_tp, ours_s, base_s, audit, logdir) -> None:
    rows = [
        [r + 1, "ours first" if r % 2 == 0 else "baseline first", o, b, x, "≥ 0.7", ok(x >= 0.7)]
        for r, (o, b, x) in enumerate(zip(ours_tp, base_tp, ratios, strict=True))
    ]
    ratio = median(ratios)
    rows.append(["median", "", median(ours_tp), median(base_tp), ratio, "≥ 0.7", ok(ratio >= 0.7)])
    rows.append(["spread", "", spread(ours_tp), spread(base_tp), spread(ratios), "", ""])
    print(
        table(
            ["round", "order", "ours req/s", "baseline req/s", "ratio", "target", ""],
            rows,
            title=f"Webhook ingest with django-tasks-db (verify + store received + enqueue), gunicorn "
            f"{args.workers}xsync on PostgreSQL, {args.threads} client threads, {args.rounds} rounds x "
            f"{per_round} requests per side (+{args.warmup} warm-up), no worker running",
        )
    )
    lat = []
    for side, samples in (("ours", ours_s), ("baseline", base_s)):
        ms = [s.seconds * 1000 for s in samples]
        bad = sum(1 for s in samples if not 200 <= s.status < 300)
        lat.append(
            [side, len(samples), bad, percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), max(ms)]
        )
    print()
    print(table(["side", "requests", "non-2xx", "p50 ms", "p95 ms", "p99 ms", "max ms"], lat))
    print(f"after part 1: {audit}")
    statuses = dict(sorted(access_log_statuses(logdir / "access.log").items()))
    print(f"gunicorn access log status counts: {statuses}")
    print(flush=True)


def latency_events(n: int, offset: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """Users with a pending session ``cs_lat_{i}`` each, and their signed account.connected
    (bench 4's events, numbered from ``offset``), keyed by the account they connect."""
    events = make_events("completing", n, prefix="lat", offset=offset)
    return [(f"sa_lat_{i}", body, headers) for i, (body, headers) in enumerate(events, start=offset)]


def part2(args, site: str, db_url: str, logdir: Path, rates: list[float]) -> list[tuple[float, dict]]:
    from django.db import connections
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.all().delete()  # part 1's queue: not this part's work
    per_rate = args.latency_events
    warm = 20
    total = warm + per_rate * len(rates)
    events = latency_events(total, 0)
    connections.close_all()
    fake, base_url = start_fake(
        "--sessions", str(total), latency_ms=args.fake_latency_ms, module="bench._tasks_fake"
    )
    env = {
        "DATABASE_URL": db_url,
        "BENCH_CONN_MAX_AGE": "60",
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "BENCH_API_BASE_URL": base_url,
    }
    argv = [PYTHON, "-m", "django", "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05"]
    workers = [
        spawn([*argv, "--worker-id", f"bench-w{k}"], env=env, log=logdir / f"w{k}.log")
        for k in range(args.db_workers)
    ]
    out = []
    try:
        # Warm-up: the workers are up once these are applied.
        warm_run = paced(site, events[:warm], rate=20.0, threads=2)
        if not wait_processed([e[0] for e in events[:warm]], cap=60.0):
            raise SystemExit(
                f"the db workers did not apply the warm-up events:\n{(logdir / 'w0.log').read_text()[-3000:]}"
            )
        del warm_run
        for k, rate in enumerate(rates):
            chunk = events[warm + k * per_rate : warm + (k + 1) * per_rate]
            sends = paced(site, chunk, rate=rate, threads=args.threads)
            wait_processed([e[0] for e in chunk], cap=args.drain_cap)
            out.append((rate, collect(chunk, sends)))
            print(f"  paced at {rate:.0f}/s: done", file=sys.stderr, flush=True)
    finally:
        for w in workers:
            stop(w)
        stop(fake)
    for k in range(args.db_workers):
        log = (logdir / f"w{k}.log").read_text(errors="replace")
        if "Traceback" in log:
            print(f"worker {k} log has a traceback:\n{log[-2000:]}")
    return out


def paced(site: str, jobs: list[Any], *, rate: float, threads: int) -> dict[str, tuple[float, float, int]]:
    """POST ``jobs`` open-loop, job i at start + i / rate; {key: (wall send time, seconds, status)}."""
    import requests

    url = site + "/unipost/webhook/"
    lock = threading.Lock()
    source = iter(enumerate(jobs))
    sends: dict[str, tuple[float, float, int]] = {}
    start = time.monotonic() + 0.2
    deadline = start + len(jobs) / rate + 60

    def run() -> None:
        http = requests.Session()
        try:
            while time.monotonic() < deadline:
                with lock:
                    item = next(source, None)
                if item is None:
                    return
                i, (key, body, headers) = item
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                began = time.time()
                sample, _ = timed_post(http, "ours", url, data=body, headers=headers)
                with lock:
                    sends[key] = (began, sample.seconds, sample.status)
        finally:
            http.close()

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(len(jobs) / rate + 90)
    return sends


def wait_processed(keys: list[str], cap: float) -> bool:
    from unipost_connect.models import WebhookEvent

    deadline = time.monotonic() + cap
    want = set(keys)
    while time.monotonic() < deadline:
        done = WebhookEvent.objects.filter(
            payload__data__social_account_id__in=want, processed_at__isnull=False
        ).count()
        if done >= len(want):
            return True
        time.sleep(0.2)
    return False


def collect(chunk: list[Any], sends: dict[str, tuple[float, float, int]]) -> dict[str, Any]:
    from collections import Counter

    from unipost_connect.models import WebhookEvent

    keys = [c[0] for c in chunk]
    rows = WebhookEvent.objects.filter(payload__data__social_account_id__in=keys).values_list(
        "payload", "processed_at", "result"
    )
    processed = {p["data"]["social_account_id"]: (at, r) for p, at, r in rows}
    lat, post_ms = [], []
    for key in keys:
        if key in sends:
            began, seconds, status = sends[key]
            post_ms.append(seconds * 1000)
            at = processed.get(key, (None, ""))[0]
            if at is not None and 200 <= status < 300:
                lat.append((at.timestamp() - began) * 1000)
    first = min(s[0] for s in sends.values()) if sends else 0.0
    last_send = max(s[0] for s in sends.values()) if sends else 0.0
    last_done = max((at.timestamp() for at, _ in processed.values() if at), default=first)
    return {
        "events": len(keys),
        "posted": len(sends),
        "non-2xx": sum(1 for s in sends.values() if not 200 <= s[2] < 300),
        "sent rate": (len(sends) - 1) / (last_send - first) if len(sends) > 1 and last_send > first else 0.0,
        "applied rate": len(lat) / (last_done - first) if last_done > first else 0.0,
        "applied": len(lat),
        "results": dict(Counter(r for _, r in processed.values())),
        "lat": lat,
        "post": post_ms,
    }


def print_latency(args, latency: list[tuple[float, dict[str, Any]]]) -> None:
    rows = []
    for rate, r in latency:
        lat = r["lat"]
        p99 = percentile(lat, 99)
        rows.append(
            [
                f"{rate:.0f}",
                r["sent rate"],
                r["applied rate"],
                r["posted"],
                r["non-2xx"],
                r["applied"],
                percentile(r["post"], 50),
                percentile(lat, 50),
                percentile(lat, 95),
                p99,
                max(lat) if lat else float("nan"),
                ok(p99 <= 1000 and r["applied"] == r["events"]),
            ]
        )
    print(
        table(
            [
                "paced req/s",
                "sent/s",
                "applied/s",
                "posted",
                "non-2xx",
                "applied",
                "POST p50 ms",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "p99 ≤ 1 s",
            ],
            rows,
            title=f"Delivery → applied (POST start → processed_at), {args.db_workers} db_worker processes "
            f"(--interval 0.05), fake at {args.fake_latency_ms:g} ms, {args.latency_events} events per rate",
        )
    )
    for rate, r in latency:
        print(f"  at {rate:.0f}/s results: {r['results']}")


if __name__ == "__main__":
    main()
