"""Memory and time of ``unipost_connect_reconcile`` at 1,000 and 20,000 pending sessions.

Run by hand (not part of the test suite)::

    cd /work/main && .venv/bin/python bench/reconcile_memory.py
    .venv/bin/python bench/reconcile_memory.py --sizes 1000 20000 50000 --workers 1 4 --latency 0.02
    scripts/with-postgres .venv/bin/python bench/reconcile_memory.py   # PostgreSQL (DATABASE_URL)

In one process it makes a throwaway database (a SQLite file in a temporary directory,
or a fresh database on the PostgreSQL server of ``DATABASE_URL``), then for each size:
creates that many sessions at an in-memory FakeUniPost (a quarter approved, a quarter
denied, a quarter still pending, and locally a quarter that never reached UniPost and
is past its deadline), bulk-inserts the local rows, and runs the command against the
fake (mocked with ``responses``). Each size is run twice on fresh data: once timed
plainly (wall time, ``ru_maxrss`` growth, and the peak of the current RSS sampled every
10 ms, minus the RSS before), once under ``tracemalloc`` for the peak of Python
allocations made during the command. Prints a table and the large/small ratios.

The fake and ``responses`` would otherwise keep every request they served (a few KB
each); the bench bounds those records so that what is measured is the command.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API_KEY = "up_test_bench"
BASE_URL = "https://api.unipost.bench"


def configure(tmp: str) -> str:
    import django
    from django.conf import settings

    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import environ

        database = environ.Env.db_url_config(url)
        database["TEST"] = {"NAME": f"unipost_bench_{os.getpid()}"}
        label = f"PostgreSQL ({database.get('HOST')}:{database.get('PORT')})"
    else:
        path = os.path.join(tmp, "bench.sqlite3")
        # WAL with synchronous=NORMAL, as a production SQLite site would run: otherwise
        # every commit waits for two fsyncs and the bench measures this VM's disk.
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "TEST": {"NAME": path},
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
        label = "SQLite file (WAL)"
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "unipost_connect"],
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ROOT_URLCONF="unipost_connect.urls",
        UNIPOST_CONNECT={"API_KEY": API_KEY, "API_BASE_URL": BASE_URL, "WEBHOOK_SECRET": "whsec_bench"},
        LOGGING_CONFIG=None,
    )
    django.setup()
    return label


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class RssSampler:
    """The highest current RSS seen while running (every 10 ms)."""

    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def make_dataset(size: int, latency: float) -> Any:
    """A fresh fake with ``size`` sessions in mixed states, and the matching local rows."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent
    from unipost_connect.testing import FakeUniPost

    ConnectSession.objects.all().delete()
    ConnectedAccount.objects.all().delete()
    WebhookEvent.objects.all().delete()
    User = get_user_model()
    user, _ = User.objects.get_or_create(username="bench")
    fake = FakeUniPost(api_key=API_KEY, base_url=BASE_URL, latency=latency)
    fake.requests = deque(maxlen=1)  # type: ignore[assignment]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    base = timezone.now() - timedelta(hours=1)
    rows = []
    for i in range(size):
        kind = i % 4
        # Ten rows share each created_at, so the keyset pages through ties.
        created = base + timedelta(milliseconds=i // 10)
        row = ConnectSession(user=user, platform="linkedin", external_user_id=f"u{i}", created_at=created)
        if kind != 3:  # kind 3 never reached UniPost and is past its deadline
            body = json.dumps(
                {"platform": "linkedin", "external_user_id": f"u{i}", "return_url": "https://site.bench/back"}
            ).encode()
            answer = json.loads(fake.handle("POST", "/v1/connect/sessions", headers=headers, body=body).body)
            remote = answer["data"]
            row.unipost_session_id = remote["id"]
            row.url = remote["url"]
            row.expires_at = timezone.now() + timedelta(minutes=30)
            if kind == 0:
                fake.approve(remote["id"])
            elif kind == 1:
                fake.deny(remote["id"])
        rows.append(row)
    fake.outbox.clear()
    ConnectSession.objects.bulk_create(rows, batch_size=1000)
    return fake


def expected_counts(size: int) -> dict[str, int]:
    per = [len(range(k, size, 4)) for k in range(4)]
    return {"completed": per[0], "cancelled": per[1], "pending": per[2], "expired": per[3]}


def run_command(fake: Any, workers: int, traced: bool) -> dict[str, float]:
    from django.core.management import call_command

    out = io.StringIO()
    with fake.mock() as rsps:
        # responses keeps every call (request and response objects) for assertions:
        # bound that record so the bench measures the command, not the mock.
        rsps._calls._calls = deque(maxlen=1)
        for registered in rsps.registered():
            registered.calls._calls = deque(maxlen=1)
        gc.collect()
        rss_before, maxrss_before = rss_bytes(), maxrss_bytes()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        with RssSampler() as sampler:
            call_command(
                "unipost_connect_reconcile",
                "--older-than",
                "0",
                "--workers",
                str(workers),
                stdout=out,
                stderr=out,
            )
        wall = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1] if traced else 0
        if traced:
            tracemalloc.stop()
    return {
        "wall": wall,
        "traced_peak": traced_peak,
        "maxrss_delta": maxrss_bytes() - maxrss_before,
        "rss_peak_delta": sampler.peak - rss_before,
        "output": out.getvalue(),  # type: ignore[dict-item]
    }


def check_outcome(size: int) -> None:
    from django.db.models import Count

    from unipost_connect.models import ConnectedAccount, ConnectSession

    found = dict(ConnectSession.objects.values_list("status").annotate(n=Count("id")))
    want = expected_counts(size)
    if found != want:
        raise SystemExit(f"wrong outcome at {size}: {found} != {want}")
    if ConnectedAccount.objects.count() != want["completed"]:
        raise SystemExit("wrong number of accounts")


def mb(value: float) -> str:
    return f"{value / 2**20:7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fake waits per call")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="unipost-bench-") as tmp:
        label = configure(tmp)
        from django.db import connection

        old_name = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        try:
            print(
                f"reconcile bench on {label}, Python {sys.version.split()[0]}, "
                f"fake latency {args.latency * 1000:.0f} ms"
            )
            header = (
                f"{'sessions':>8} {'workers':>7} {'wall s':>8} {'per s':>8} "
                f"{'tracemalloc peak MB':>20} {'ru_maxrss delta MB':>19} {'RSS peak delta MB':>18}"
            )
            print(header)
            print("-" * len(header))
            results: dict[tuple[int, int], dict[str, float]] = {}
            for workers in args.workers:
                for size in args.sizes:
                    fake = make_dataset(size, args.latency)
                    plain = run_command(fake, workers, traced=False)
                    check_outcome(size)
                    fake = make_dataset(size, args.latency)
                    traced = run_command(fake, workers, traced=True)
                    check_outcome(size)
                    result = {**plain, "traced_peak": traced["traced_peak"]}
                    results[(size, workers)] = result
                    print(
                        f"{size:>8} {workers:>7} {result['wall']:>8.2f} {size / result['wall']:>8.0f} "
                        f"{mb(result['traced_peak']):>20} {mb(result['maxrss_delta']):>19} "
                        f"{mb(result['rss_peak_delta']):>18}"
                    )
                small, large = min(args.sizes), max(args.sizes)
                a, b = results[(small, workers)], results[(large, workers)]
                print(
                    f"ratio {large}/{small} (workers {workers}): sessions x{large / small:.0f}, "
                    f"wall x{b['wall'] / a['wall']:.1f}, "
                    f"tracemalloc peak x{b['traced_peak'] / a['traced_peak']:.2f} "
                    f"({mb(b['traced_peak'] - a['traced_peak']).strip()} MB more), "
                    f"RSS peak delta {mb(a['rss_peak_delta']).strip()} -> "
                    f"{mb(b['rss_peak_delta']).strip()} MB"
                )
            if len(args.workers) > 1:
                for size in args.sizes:
                    base = results[(size, args.workers[0])]["wall"]
                    speedups = ", ".join(
                        f"{w} workers x{base / results[(size, w)]['wall']:.2f}" for w in args.workers[1:]
                    )
                    print(f"speed-up at {size} vs {args.workers[0]} worker(s): {speedups}")
            last = results[(max(args.sizes), args.workers[-1])]["output"]
            print("command summary (last run):", str(last).strip().splitlines()[-1])
            _ = statistics  # medians are for the multi-round benches in bench/README.md
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
