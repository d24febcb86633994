"""Bench 4: webhook ingest under gunicorn on PostgreSQL, ours vs a bare baseline view.

gunicorn (2 workers, sync by default) serves bench.settings on loopback against a fresh
PostgreSQL database. A bounded load generator (threads, each with its own
``requests.Session``; a fixed number of requests and a time cap) POSTs validly signed,
distinct ``account.connected`` events:

* ours: ``unipost_connect:webhook`` — verify, store the event once, apply it (by default
  each event completes a different pending session and records its account), answer;
* baseline: a view that reads the body and inserts one row (bench/baseline_urls.py).

Two kinds of event: ``completing`` (the real work) and ``unknown`` (no local user:
stored and marked, nothing else). Rounds alternate which side goes first; throughput is
per round (requests / wall time), latency percentiles are over all requests of a side.

    scripts/with-postgres .venv/bin/python bench/webhook_ingest.py
    scripts/with-postgres .venv/bin/python bench/webhook_ingest.py --requests 500 --rounds 2  # quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    WEBHOOK_SECRET,
    Sample,
    access_log_statuses,
    free_port,
    machine_note,
    median,
    migrate,
    ok,
    percentile,
    postgres_database,
    require_postgres,
    run_load,
    setup_django,
    spread,
    start_gunicorn,
    stop,
    table,
    timed_post,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per side per kind (split over rounds)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8, help="load generator threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--gthreads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--warmup", type=int, default=200, help="per side, not measured")
    parser.add_argument("--time-cap", type=float, default=120.0, help="seconds per phase")
    parser.add_argument(
        "--kinds", nargs="+", default=["completing", "unknown"], choices=["completing", "unknown"]
    )
    args = parser.parse_args()
    server_url = require_postgres("webhook_ingest")

    per_round = args.requests // args.rounds
    with (
        tempfile.TemporaryDirectory(prefix="unipost-bench-") as tmp,
        postgres_database(server_url, "unipost_bench_ingest") as db_url,
    ):
        logdir = Path(tmp)
        setup_django(DATABASE_URL=db_url, BENCH_CONN_MAX_AGE="0")
        migrate()
        events = {kind: make_events(kind, args.warmup + per_round * args.rounds) for kind in args.kinds}
        baseline_events = {
            kind: make_events("unknown", args.warmup + per_round * args.rounds, prefix=f"b{kind}")
            for kind in args.kinds
        }
        from django.db import connections

        connections.close_all()
        port = free_port()
        gunicorn = start_gunicorn(
            "bench.wsgi",
            port,
            workers=args.workers,
            worker_class=args.worker_class,
            threads=args.gthreads if args.worker_class == "gthread" else 1,
            env={"DATABASE_URL": db_url, "BENCH_CONN_MAX_AGE": "60"},
            logdir=logdir,
            ready_path="/bench/done/",
        )
        try:
            site = f"http://127.0.0.1:{port}"
            results = {
                kind: bench_kind(args, site, events[kind], baseline_events[kind], per_round)
                for kind in args.kinds
            }
        finally:
            stop(gunicorn)
        statuses = access_log_statuses(logdir / "access.log")
        audit = verify(args, events, per_round)
        connections.close_all()

    rows, latency_rows = [], []
    for kind, (ratios, ours_tp, base_tp, ours_s, base_s) in results.items():
        ratio = median(ratios)
        rows.append(
            [
                kind,
                median(ours_tp),
                spread(ours_tp),
                median(base_tp),
                spread(base_tp),
                ratio,
                spread(ratios),
                "≥ 0.7",
                ok(ratio >= 0.7),
            ]
        )
        for side, samples in (("ours", ours_s), ("baseline", base_s)):
            ms = [s.seconds * 1000 for s in samples]
            bad = sum(1 for s in samples if not 200 <= s.status < 300)
            p99 = percentile(ms, 99)
            latency_rows.append(
                [
                    f"{kind} / {side}",
                    len(samples),
                    bad,
                    percentile(ms, 50),
                    percentile(ms, 95),
                    p99,
                    max(ms),
                    ok(p99 < 1000) if side == "ours" else "-",
                ]
            )
    title = (
        f"Webhook ingest, gunicorn {args.workers}x{args.worker_class} on PostgreSQL, {args.threads} client "
        f"threads, {args.rounds} rounds x {per_round} requests per side (+{args.warmup} warm-up)"
    )
    print(
        table(
            ["events", "ours req/s", "spread", "baseline req/s", "spread", "ratio", "spread", "target", ""],
            rows,
            title=title,
        )
    )
    print()
    print(
        table(
            ["side", "requests", "non-2xx", "p50 ms", "p95 ms", "p99 ms", "max ms", "p99 < 1 s"],
            latency_rows,
            title="Latency (all measured requests)",
        )
    )
    print()
    print(f"gunicorn access log status counts: {dict(sorted(statuses.items()))}")
    print(f"after the run: {audit}")


def make_events(kind: str, n: int, prefix: str = "", offset: int = 0) -> list[tuple[bytes, dict[str, str]]]:
    """``n`` distinct signed events (numbered from ``offset``); for ``completing`` also
    ``n`` users with a pending session each."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from unipost_connect.models import ConnectSession
    from unipost_connect.testing import build_webhook

    now = timezone.now()
    tag = prefix or kind
    if kind == "completing":
        User = get_user_model()
        users = User.objects.bulk_create(
            User(username=f"{tag}{i}", password="!") for i in range(offset, offset + n)
        )
        ConnectSession.objects.bulk_create(
            ConnectSession(
                user=u,
                platform="linkedin",
                external_user_id=f"ext_{tag}_{i}",
                status="pending",
                unipost_session_id=f"cs_{tag}_{i}",
                url="http://127.0.0.1/x",
                created_at=now - timedelta(minutes=1),
                expires_at=now + timedelta(minutes=29),
            )
            for i, u in enumerate(users, start=offset)
        )
    out = []
    for i in range(offset, offset + n):
        delivery = build_webhook(
            "account.connected",
            {
                "social_account_id": f"sa_{tag}_{i}",
                "profile_id": "pr_default",
                "platform": "linkedin",
                "account_name": f"LinkedIn user {i}",
                "external_user_id": f"ext_{tag}_{i}",
                "connection_type": "managed",
            },
            WEBHOOK_SECRET,
            event_id=f"evt_{tag}_{i}",
            timestamp=now,
        )
        out.append((delivery.body, {**delivery.headers, "Content-Type": "application/json"}))
    return out


def bench_kind(args: argparse.Namespace, site: str, ours: list[Any], base: list[Any], per_round: int) -> Any:
    urls = {"ours": site + "/unipost/webhook/", "baseline": site + "/bench/baseline-webhook/"}
    pools = {"ours": iter(ours), "baseline": iter(base)}

    def phase(side: str, n: int) -> tuple[list[Sample], float]:
        jobs = [next(pools[side]) for _ in range(n)]

        def worker(http: Any, job: Any) -> list[Sample]:
            body, headers = job
            sample, _ = timed_post(http, side, urls[side], data=body, headers=headers)
            return [sample]

        return run_load(jobs, worker, threads=args.threads, time_cap=args.time_cap)

    phase("ours", args.warmup)
    phase("baseline", args.warmup)
    ratios, ours_tp, base_tp = [], [], []
    ours_s: list[Sample] = []
    base_s: list[Sample] = []
    for r in range(args.rounds):
        tp = {}
        for side in ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours"):
            samples, wall = phase(side, per_round)
            done = sum(1 for s in samples if 200 <= s.status < 300)
            tp[side] = done / wall
            (ours_s if side == "ours" else base_s).extend(samples)
        ours_tp.append(tp["ours"])
        base_tp.append(tp["baseline"])
        ratios.append(tp["ours"] / tp["baseline"])
    return ratios, ours_tp, base_tp, ours_s, base_s


def verify(args: argparse.Namespace, events: dict[str, Any], per_round: int) -> str:
    from django.db.models import Count

    from bench.models import BaselineEvent
    from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent

    sent = args.warmup + per_round * args.rounds
    results = dict(WebhookEvent.objects.values_list("result").annotate(n=Count("id")).order_by())
    completed = ConnectSession.objects.filter(status="completed").count()
    return (
        f"{WebhookEvent.objects.count()} webhook events stored "
        f"(sent {sent * len(events)}; results {results}), "
        f"{completed} sessions completed, {ConnectedAccount.objects.count()} accounts, "
        f"{BaselineEvent.objects.count()} baseline rows"
    )


if __name__ == "__main__":
    main()
    print(machine_note())
