"""Bench 1: the start view's overhead over a bare view making the same upstream call.

Ours: ``POST unipost_connect:start`` (logged-in user) → reuse lookup, local row, the
client's ``POST /v1/connect/sessions``, row update, 302. Baseline
(bench/baseline_urls.py): the same middleware, one ``requests`` POST through a kept-alive
``requests.Session``, 302. The upstream is the project's fake UniPost served over real
HTTP by a separate process on loopback, once with 0 ms and once with 20 ms of added latency.
Requests go through Django's test Client in this process (no CSRF enforcement there).

Requests alternate ours/baseline one by one (which goes first flips every round);
each round's median is taken per side, and the table shows the median of the round
medians, their spread (min-max) and the ratio. Each of our sessions is marked expired
right after it is timed (outside the timing), so every request takes the create path
rather than reusing a pending session.

    .venv/bin/python bench/start_overhead.py                        # SQLite in memory
    scripts/with-postgres .venv/bin/python bench/start_overhead.py  # PostgreSQL
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine_note, median, ok, spread, start_fake, stop, table

TARGETS = {0.0: 1.3, 20.0: 1.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=60, help="per side per round at 0 ms")
    parser.add_argument("--requests-latent", type=int, default=30, help="per side per round with latency")
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 20.0], metavar="MS")
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()

    fakes = []
    try:
        for latency in args.latencies:
            fakes.append((latency, *start_fake(latency_ms=latency)))
        run(args, [(latency, url) for latency, _, url in fakes])
    finally:
        for _, proc, _ in fakes:
            stop(proc)


def run(args: argparse.Namespace, fakes: list[tuple[float, str]]) -> None:
    from bench._common import setup_django, test_database

    setup_django(BENCH_API_BASE_URL=fakes[0][1])
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client, override_settings

    from unipost_connect.models import ConnectSession

    rows = []
    with test_database():
        user = get_user_model().objects.create_user("bench", password="x")
        client = Client()
        client.force_login(user)
        ours_url, base_url = "/unipost/connect/", "/bench/baseline-start/"

        def once(url: str, fake_url: str) -> float:
            started = time.perf_counter()
            answer = client.post(url, {"platform": "linkedin"})
            took = time.perf_counter() - started
            location = answer.headers.get("Location", "")
            if answer.status_code != 302 or not location.startswith(fake_url + "/connect/"):
                raise SystemExit(f"{url} answered {answer.status_code} → {location[:60]!r}")
            if url == ours_url:  # outside the timing: no pending session to reuse next time
                ConnectSession.objects.filter(status="pending").update(status="expired")
            return took

        for latency, fake_url in fakes:
            conf = {**settings.UNIPOST_CONNECT, "API_BASE_URL": fake_url}
            n = args.requests if latency == 0 else args.requests_latent
            with override_settings(UNIPOST_CONNECT=conf):
                for _ in range(args.warmup):
                    once(ours_url, fake_url)
                    once(base_url, fake_url)
                ours_r, base_r, ratios = [], [], []
                for r in range(args.rounds):
                    order = (ours_url, base_url) if r % 2 == 0 else (base_url, ours_url)
                    times: dict[str, list[float]] = {ours_url: [], base_url: []}
                    for _ in range(n):
                        for url in order:
                            times[url].append(once(url, fake_url))
                    ours_r.append(median(times[ours_url]) * 1000)
                    base_r.append(median(times[base_url]) * 1000)
                    ratios.append(ours_r[-1] / base_r[-1])
                    ConnectSession.objects.all().delete()
            ratio = median(ratios)
            target = TARGETS.get(latency)
            rows.append(
                [
                    f"{latency:g} ms",
                    median(ours_r),
                    spread(ours_r),
                    median(base_r),
                    spread(base_r),
                    median(ours_r) - median(base_r),
                    ratio,
                    spread(ratios),
                    f"≤ {target}" if target else "-",
                    ok(ratio <= target) if target else "-",
                ]
            )
        vendor = connection.vendor
    print(
        table(
            [
                "upstream",
                "ours ms",
                "spread",
                "baseline ms",
                "spread",
                "overhead ms",
                "ratio",
                "spread",
                "target",
                "",
            ],
            rows,
            title=f"Start view vs bare view (in-process Client, {vendor}; {args.rounds} rounds x "
            f"{args.requests}/{args.requests_latent} requests per side; medians of round medians)",
        )
    )


if __name__ == "__main__":
    main()
    print(machine_note())
