"""Bench 6: a bounded load run of the whole flow, with an audit afterwards.

The example project (bench/demo_settings.py: the demo's settings plus a receiver that
records every completion / ended signal in a table) runs under gunicorn on a fresh
PostgreSQL database, pointed at the standalone fake UniPost (one process, so its state
is shared): UNIPOST_API_BASE_URL / UNIPOST_API_KEY / UNIPOST_WEBHOOK_SECRET, and the
fake's --webhook-url at the site. Everything listens on 127.0.0.1.

A bounded number of virtual users (threads, each with its own requests.Session and its
own login) loop until the time cap (or an iteration cap): start (POST with the CSRF
token) → the fake's hosted page (GET, then POST Approve) → the return (GET) → the
connections page. Platforms rotate over linkedin, twitter, bluesky; every 10th iteration
the user instead tries the platform just connected once more and denies. The fake POSTs
the signed ``account.connected`` webhook to the site after ``--webhook-delay`` seconds,
so webhooks and returns race on different workers.

Afterwards it waits for the webhooks, then audits: every session the generator started
exists in the database in the state the fake reports (GET /v1/connect/sessions/{id}),
every completed session has exactly one account and exactly one completion signal, and
no other session has one.

    scripts/with-postgres .venv/bin/python bench/load_run.py
    scripts/with-postgres .venv/bin/python bench/load_run.py --duration 10 --users 2   # quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    API_KEY,
    WEBHOOK_SECRET,
    Sample,
    free_port,
    machine_note,
    migrate,
    ok,
    percentile,
    postgres_database,
    require_postgres,
    setup_django,
    start_fake,
    start_gunicorn,
    stop,
    table,
)

PLATFORMS = ("linkedin", "twitter", "bluesky")
PASSWORD = "bench-pass-123"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (time cap)")
    parser.add_argument("--users", type=int, default=8, help="virtual users (threads)")
    parser.add_argument("--max-iterations", type=int, default=5000, help="per user (a hard bound)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (2-4)")
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--gthreads", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added by the fake to every answer")
    parser.add_argument("--webhook-delay", type=float, default=0.25, help="seconds before the fake delivers")
    parser.add_argument(
        "--deny-every",
        type=int,
        default=10,
        help="every Nth iteration retries the previous platform and denies (0: never)",
    )
    args = parser.parse_args()
    server_url = require_postgres("load_run")

    with (
        tempfile.TemporaryDirectory(prefix="unipost-load-") as tmp,
        postgres_database(server_url, "unipost_bench_load") as db_url,
    ):
        logdir = Path(tmp)
        setup_django(DATABASE_URL=db_url, BENCH_CONN_MAX_AGE="0")
        migrate()
        from django.contrib.auth import get_user_model
        from django.db import connections

        User = get_user_model()
        for i in range(args.users):
            User.objects.create_user(f"vu{i}", f"vu{i}@example.com", PASSWORD)
        connections.close_all()

        site_port = free_port()
        site = f"http://127.0.0.1:{site_port}"
        fake, fake_url = start_fake(
            "--webhook-url",
            f"{site}/unipost/webhook/",
            "--webhook-delay",
            str(args.webhook_delay),
            latency_ms=args.latency_ms,
            log=logdir / "fake.log",
        )
        gunicorn = None
        try:
            gunicorn = start_gunicorn(
                "bench.demo_wsgi",
                site_port,
                workers=args.workers,
                worker_class=args.worker_class,
                threads=args.gthreads if args.worker_class == "gthread" else 1,
                logdir=logdir,
                ready_path="/login/",
                env={
                    "DJANGO_SETTINGS_MODULE": "bench.demo_settings",
                    "DATABASE_URL": db_url,
                    "ENV_FILE": str(logdir / "no.env"),
                    "DEBUG": "False",
                    "SECRET_KEY": "bench-load-run-secret-key-not-for-production-0123456789",
                    "ALLOWED_HOSTS": "127.0.0.1,localhost",
                    "UNIPOST_API_BASE_URL": fake_url,
                    "UNIPOST_API_KEY": API_KEY,
                    "UNIPOST_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "UNIPOST_LOG_LEVEL": "WARNING",
                },
            )
            started, samples, wall, approvals = generate(args, site, fake_url)
            webhook_wait = wait_for_webhooks(approvals, timeout=args.webhook_delay + 20)
            stop(gunicorn)
            gunicorn = None
            access = parse_access_log(logdir / "access.log")
            audit = run_audit(started, fake_url)
        finally:
            stop(gunicorn)
            stop(fake)
        connections.close_all()
        errors_log = (logdir / "gunicorn.log").read_text(errors="replace")
        fake_log = (logdir / "fake.log").read_text(errors="replace")

    report(args, started, samples, wall, approvals, webhook_wait, access, audit, errors_log, fake_log)


# -- the virtual users ---------------------------------------------------------------------


def generate(
    args: argparse.Namespace, site: str, fake_url: str
) -> tuple[list[dict], list[Sample], float, int]:
    import requests

    deadline = time.monotonic() + args.duration
    lock = threading.Lock()
    started: list[dict] = []
    samples: list[Sample] = []
    approvals = [0]

    def timed(http: Any, kind: str, method: str, url: str, **kw: Any) -> tuple[Sample, Any]:
        t0 = time.perf_counter()
        try:
            answer = http.request(method, url, timeout=10, allow_redirects=False, **kw)
            status = answer.status_code
        except requests.RequestException:
            answer, status = None, 0
        return Sample(kind, time.perf_counter() - t0, status), answer

    def vu(index: int) -> None:
        http = requests.Session()
        mine: list[Sample] = []
        mine_started: list[dict] = []
        approved = 0
        try:
            s, _ = timed(http, "login page", "GET", site + "/login/")
            mine.append(s)
            s, answer = timed(
                http,
                "login",
                "POST",
                site + "/login/",
                data={
                    "username": f"vu{index}",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": http.cookies.get("csrftoken", ""),
                    "next": "/unipost/connections/",
                },
            )
            mine.append(s)
            if s.status != 302:
                raise RuntimeError(f"vu{index} could not log in ({s.status})")
            for i in range(args.max_iterations):
                if time.monotonic() >= deadline:
                    break
                deny = bool(args.deny_every) and i % args.deny_every == args.deny_every - 1
                action = "deny" if deny else "approve"
                # A deny is a second try on the platform just connected (the user changed their mind).
                platform = PLATFORMS[(index + i - deny) % len(PLATFORMS)]
                s, answer = timed(
                    http,
                    "start",
                    "POST",
                    site + "/unipost/connect/",
                    data={
                        "platform": platform,
                        "next": "/unipost/connections/",
                        "csrfmiddlewaretoken": http.cookies.get("csrftoken", ""),
                    },
                )
                mine.append(s)
                hosted = answer.headers.get("Location", "") if answer is not None else ""
                if s.status != 302 or not hosted.startswith(fake_url + "/connect/"):
                    continue
                query = parse_qs(urlsplit(hosted).query)
                sid, state = query["session"][0], query["state"][0]
                mine_started.append({"id": sid, "user": f"vu{index}", "platform": platform, "action": action})
                s, _ = timed(http, "fake: hosted page", "GET", hosted)
                mine.append(s)
                s, answer = timed(
                    http,
                    "fake: approve/deny",
                    "POST",
                    hosted,
                    data={
                        "session": sid,
                        "state": state,
                        "action": action,
                        "account_name": f"vu{index} {platform}",
                    },
                )
                mine.append(s)
                back = answer.headers.get("Location", "") if answer is not None else ""
                if s.status != 302 or not back.startswith(site):
                    continue
                approved += action == "approve"
                s, answer = timed(http, "return", "GET", back)
                mine.append(s)
                onward = answer.headers.get("Location", "") if answer is not None else ""
                if s.status == 302 and onward:
                    s, _ = timed(http, "connections page", "GET", urljoin(site, onward))
                    mine.append(s)
        finally:
            http.close()
            with lock:
                samples.extend(mine)
                started.extend(mine_started)
                approvals[0] += approved

    t0 = time.monotonic()
    threads = [threading.Thread(target=vu, args=(i,), daemon=True) for i in range(args.users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 120)
    return started, samples, time.monotonic() - t0, approvals[0]


def wait_for_webhooks(expected: int, timeout: float) -> str:
    """Wait until the site has stored an account.connected event per approval (or timeout)."""
    from unipost_connect.models import WebhookEvent

    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < timeout:
        n = WebhookEvent.objects.filter(event_type="account.connected").count()
        if n >= expected:
            break
        time.sleep(0.5)
    time.sleep(1.0)  # let the last transactions' signals land
    n = WebhookEvent.objects.filter(event_type="account.connected").count()
    return f"{n} of {expected} account.connected webhooks stored, {time.monotonic() - t0:.1f}s after the load"


def parse_access_log(path: Path) -> list[tuple[int, str, str, float]]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) >= 4 and parts[0].isdigit():
                rows.append((int(parts[0]), parts[1], parts[2], int(parts[3]) / 1000))
    return rows


# -- the audit -------------------------------------------------------------------------------


def run_audit(started: list[dict], fake_url: str) -> dict[str, Any]:
    import requests
    from django.utils.dateparse import parse_datetime

    from bench.models import SignalRecord
    from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent

    ids = sorted({s["id"] for s in started})
    local = {s.unipost_session_id: s for s in ConnectSession.objects.select_related("user")}
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {API_KEY}"

    def remote(sid: str) -> tuple[str, dict]:
        answer = http.get(f"{fake_url}/v1/connect/sessions/{sid}", timeout=30)
        return sid, answer.json().get("data", {}) if answer.status_code == 200 else {
            "status": f"HTTP {answer.status_code}"
        }

    with ThreadPoolExecutor(8) as pool:
        truth = dict(pool.map(remote, ids))
    http.close()
    completed_signals = Counter(
        SignalRecord.objects.filter(kind="completed").values_list("session_id", flat=True)
    )
    ended_signals = Counter(
        SignalRecord.objects.exclude(kind="completed").values_list("session_id", flat=True)
    )
    accounts = {a.managed_account_id: a for a in ConnectedAccount.objects.select_related("user")}

    audit: dict[str, Any] = Counter()
    problems: list[str] = []
    for sid in ids:
        want = truth[sid]
        row = local.get(sid)
        audit["started"] += 1
        audit[f"fake: {want.get('status')}"] += 1
        if row is None:
            audit["lost: not in the database"] += 1
            problems.append(f"{sid}: not in the database")
            continue
        if row.status != want.get("status"):
            audit["state differs from the fake"] += 1
            problems.append(f"{sid}: database {row.status}, fake {want.get('status')} (session {row.pk})")
        else:
            audit["state matches the fake"] += 1
        signals = completed_signals.get(str(row.pk), 0)
        if row.status == "completed":
            audit["completed (database)"] += 1
            account = accounts.get(row.managed_account_id)
            if account is not None and account.user_id == row.user_id:
                audit["completed with its one account"] += 1
            else:
                problems.append(f"{sid}: completed without its account ({row.managed_account_id!r})")
            remote_done = parse_datetime(want.get("completed_at") or "")
            if remote_done and row.completed_at and row.completed_at < remote_done:
                audit["completed before the user approved it (by an earlier event)"] += 1
                problems.append(
                    f"{sid}: completed locally at {row.completed_at:%H:%M:%S}, approved at "
                    f"UniPost at {remote_done:%H:%M:%S}"
                )
        # Signals are judged against the fake's truth: one for a session UniPost completed, none otherwise.
        if want.get("status") == "completed":
            if row.status == "completed" and row.managed_account_id != want.get("managed_account_id"):
                problems.append(
                    f"{sid}: account {row.managed_account_id!r}, UniPost says "
                    f"{want.get('managed_account_id')!r}"
                )
            if signals == 1:
                audit["completed at UniPost, exactly one completion signal"] += 1
            elif signals == 0:
                audit["lost: completed at UniPost, no completion signal"] += 1
                problems.append(f"{sid}: completed at UniPost, no completion signal")
            else:
                audit["duplicated: more than one completion signal"] += 1
                problems.append(f"{sid}: {signals} completion signals")
        elif signals:
            audit["spurious: completion signal, UniPost did not complete it"] += 1
            problems.append(f"{sid}: {want.get('status')} at UniPost but {signals} completion signal(s)")
        if row.status in ("cancelled", "expired") and ended_signals.get(str(row.pk), 0) != 1:
            problems.append(f"{sid}: {row.status} with {ended_signals.get(str(row.pk), 0)} ended signals")
    unknown = [s for s in local if s not in truth]
    audit["database sessions the generator did not start"] = len(unknown)
    audit["webhook results"] = dict(Counter(WebhookEvent.objects.values_list("result", flat=True)))
    audit["problems"] = problems
    return audit


# -- the report ----------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    started: list[dict],
    samples: list[Sample],
    wall: float,
    approvals: int,
    webhook_wait: str,
    access: list[tuple[int, str, str, float]],
    audit: dict[str, Any],
    errors_log: str,
    fake_log: str,
) -> None:
    kinds = sorted({s.kind for s in samples}, key=lambda k: (k.startswith("fake"), k))
    rows = []
    for kind in kinds:
        mine = [s for s in samples if s.kind == kind]
        ms = [s.seconds * 1000 for s in mine]
        rows.append(
            [
                kind,
                len(mine),
                sum(1 for s in mine if s.status >= 500 or s.status == 0),
                percentile(ms, 50),
                percentile(ms, 95),
                percentile(ms, 99),
                max(ms),
            ]
        )
    webhook_ms = [d for status, method, path, d in access if path == "/unipost/webhook/"]
    if webhook_ms:
        rows.append(
            [
                "webhook (server time, from the access log)",
                len(webhook_ms),
                sum(1 for status, _, path, _ in access if path == "/unipost/webhook/" and status >= 500),
                percentile(webhook_ms, 50),
                percentile(webhook_ms, 95),
                percentile(webhook_ms, 99),
                max(webhook_ms),
            ]
        )
    site = [s for s in samples if not s.kind.startswith("fake")]
    site_ms = [s.seconds * 1000 for s in site]
    site_5xx = sum(1 for status, *_ in access if status >= 500) + sum(1 for s in site if s.status == 0)
    title = (
        f"Load run: {args.users} users, {wall:.1f}s, gunicorn {args.workers}x{args.worker_class}"
        f"{f'x{args.gthreads}' if args.worker_class == 'gthread' else ''} on PostgreSQL, fake at "
        f"{args.latency_ms:g} ms, webhooks after {args.webhook_delay:g}s"
    )
    print(
        table(["request", "count", "5xx/failed", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows, title=title)
    )
    print()
    print(
        f"site requests: {len(access)} in the access log "
        f"(generator {len(site)} + webhooks {len(webhook_ms)}); "
        f"{len(access) / wall:.1f} req/s overall, generator site requests {len(site) / wall:.1f} req/s, "
        f"p50/p95/p99 {percentile(site_ms, 50):.1f}/{percentile(site_ms, 95):.1f}/"
        f"{percentile(site_ms, 99):.1f} ms"
    )
    print(f"flows started {len(started)}, approvals {approvals}; {webhook_wait}")
    print(f"status counts (access log): {dict(sorted(Counter(str(a[0]) for a in access).items()))}")
    print(f"5xx (site): {site_5xx} — target 0: {ok(site_5xx == 0)}")
    print()
    lost = sum(v for k, v in audit.items() if k.startswith("lost"))
    dup = sum(v for k, v in audit.items() if k.startswith(("duplicated", "spurious")))
    rows = [[k, v] for k, v in audit.items() if k not in ("problems", "webhook results")]
    print(
        table(
            ["audit", "sessions"], rows, title="Audit (database vs the fake's GET /v1/connect/sessions/{id})"
        )
    )
    print(f"webhook results: {audit['webhook results']}")
    print(
        f"lost: {lost}, duplicated or spurious: {dup}, "
        f"state mismatches: {audit.get('state differs from the fake', 0)} — "
        f"target 0/0/0: {ok(lost == 0 and dup == 0 and not audit.get('state differs from the fake', 0))}"
    )
    for line in audit["problems"][:20]:
        print("  problem:", line)
    if len(audit["problems"]) > 20:
        print(f"  … and {len(audit['problems']) - 20} more")
    tracebacks = errors_log.count("Traceback")
    if tracebacks:
        print(f"gunicorn error log: {tracebacks} tracebacks; last lines:\n{errors_log[-2000:]}")
    if "WARNING" in fake_log or "Traceback" in fake_log:
        print(f"fake log (last lines):\n{fake_log[-1500:]}")


if __name__ == "__main__":
    main()
    print(machine_note())
