"""Bench 6: a bounded load run of the whole flow, with an audit afterwards.

The example project (bench/demo_settings.py: the demo's settings plus a receiver that
records every completion / ended signal in a table) runs under gunicorn on a fresh
PostgreSQL database, pointed at the standalone fake UniPost (one process, so its state
is shared): UNIPOST_API_BASE_URL / UNIPOST_API_KEY / UNIPOST_WEBHOOK_SECRET, and the
fake's --webhook-url at the site. Everything listens on 127.0.0.1.

A bounded number of virtual users (threads, each with its own requests.Session and its
own login) loop until the time cap (or an iteration cap): start (POST with the CSRF
token) → the fake's hosted page (GET, then POST Approve) → the return (GET) → the
connections page. Platforms rotate over linkedin, twitter, bluesky. Some iterations
differ (each kind on its own iterations):

- deny (every 10th): the user tries the platform just connected once more and denies;
- double click (every 10th, offset): two or three concurrent POSTs to the start view
  with the same cookies, released together; every click must be sent to the same hosted
  url, and the fake must have made one session at most (the test-control route
  ``GET /_fake/sessions`` counts them);
- second tab (every 10th, offset): after loading the hosted page the user starts the
  same platform again; the site must send it to the same hosted url;
- token-refresh failure (about one approval in 15, OAuth platforms only: there a
  reconnect reuses the account): after the approval and its return, the bench has the
  fake fail the account's token refresh (``POST /_fake/accounts/{id}/fail-refresh``),
  waits until the site's connections page shows it ``reconnect_required`` (the
  ``account.disconnected`` webhook), and the user's next approval of that platform must
  bring the same managed account back to ``active``.

The fake POSTs the signed webhooks to the site after ``--webhook-delay`` seconds, so
webhooks and returns race on different workers.

Afterwards it waits until the fake has no delivery in flight (``GET /_fake/webhooks``),
then audits: every session the generator started exists in the database in the state
the fake reports (GET /v1/connect/sessions/{id}), the fake made no session the generator
did not see, every completed session has exactly one account and exactly one
completion signal and no other session has one, and every local account has the status
the fake gives it (``GET /_fake/accounts``: the public list pages at 100 and Bluesky
makes an account per connect).

    scripts/with-postgres .venv/bin/python bench/load_run.py
    scripts/with-postgres .venv/bin/python bench/load_run.py --duration 10 --users 2   # quick
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
# A reconnect reuses the managed account on OAuth platforms only (Bluesky makes a new one),
# so token-refresh failures, whose point is the reconnect, are made on these.
OAUTH_PLATFORMS = ("linkedin", "twitter")
# The token-refresh worker's reasons (the contract); cycled over.
REFRESH_REASONS = ("refresh_failed", "missing_refresh_token", "decrypt_failed")
PASSWORD = "bench-pass-123"
CONNECTIONS = "/unipost/connections/"
TIMEOUT = 10.0  # per request: the site's START_WAIT is 5 s
POLL = 0.1  # seconds between looks while waiting for the site or the fake
_ACCOUNT_ROW = re.compile(r'<tr class="unipost-account unipost-status-([a-z_]+)">(.*?)</tr>', re.DOTALL)
_CODE = re.compile(r"<code>([^<]+)</code>")


def main() -> None:
    args = parse_args()
    server_url = require_postgres("load_run")
    with (
        tempfile.TemporaryDirectory(prefix="unipost-load-") as tmp,
        postgres_database(server_url, "unipost_bench_load") as db_url,
    ):
        logdir = Path(tmp)
        setup_django(DATABASE_URL=db_url, BENCH_CONN_MAX_AGE="0")
        migrate()
        users = make_users(args.users)
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
                env=site_env(db_url, fake_url, logdir),
            )
            load = generate(args, site, fake_url, users)
            # Delivery takes up to 3 attempts of 5 s plus the pauses between them.
            webhook_wait = wait_for_webhooks(fake_url, timeout=args.webhook_delay + 30)
            stop(gunicorn)
            gunicorn = None
            access = parse_access_log(logdir / "access.log")
            audit = run_audit(load.flows, fake_url)
        finally:
            stop(gunicorn)
            stop(fake)
        from django.db import connections

        connections.close_all()
        errors_log = (logdir / "gunicorn.log").read_text(errors="replace")
        fake_log = (logdir / "fake.log").read_text(errors="replace")

    report(args, load, webhook_wait, access, audit, errors_log, fake_log)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
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
    parser.add_argument(
        "--double-click-every", type=int, default=10, help="every Nth iteration double-clicks (0: never)"
    )
    parser.add_argument(
        "--second-tab-every", type=int, default=10, help="every Nth iteration opens a second tab (0: never)"
    )
    parser.add_argument(
        "--refresh-fail-every",
        type=int,
        default=15,
        help="every Nth approval (OAuth platforms) is followed by a token-refresh failure (0: never)",
    )
    args = parser.parse_args()
    args.refresh_wait = args.webhook_delay + 10.0  # how long a user waits to see the failure
    return args


def make_users(count: int) -> list[tuple[str, str]]:
    """(username, external_user_id) per virtual user: the site sends UniPost the user's pk."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    User = get_user_model()
    users = [
        (f"vu{i}", str(User.objects.create_user(f"vu{i}", f"vu{i}@example.com", PASSWORD).pk))
        for i in range(count)
    ]
    connections.close_all()
    return users


def site_env(db_url: str, fake_url: str, logdir: Path) -> dict[str, str]:
    return {
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
    }


# -- what the virtual users record ------------------------------------------------------------


@dataclass
class Flow:
    """One session a user was sent to (or was made for one of its clicks)."""

    id: str
    user: str
    platform: str
    action: str  # approve, deny, or left (a double click's extra session, left pending)
    kind: str  # plain, deny, double click, second tab


@dataclass
class DoubleClick:
    clicks: int
    statuses: list[int]
    urls: int  # distinct hosted urls among the answers
    created: int  # sessions the fake made for this user and platform meanwhile

    @property
    def agreed(self) -> bool:
        return self.urls == 1 and all(status == 302 for status in self.statuses)


@dataclass
class SecondTab:
    status: int
    same_url: bool


@dataclass
class RefreshFailure:
    account_id: str
    user: str
    platform: str
    reason: str
    status: int  # the control route's answer (200: applied)
    seen_after: float | None = None  # seconds until the site's connections page showed it
    active_early: bool = False  # the site showed it active again before any reconnect
    reconnected: str = ""  # "same account", "other account" or "" (none before the end)
    active_after_reconnect: bool | None = None


@dataclass
class LoadResult:
    flows: list[Flow] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    double_clicks: list[DoubleClick] = field(default_factory=list)
    second_tabs: list[SecondTab] = field(default_factory=list)
    refresh_failures: list[RefreshFailure] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    approvals: int = 0
    wall: float = 0.0

    def merge(self, other: LoadResult) -> None:
        self.flows += other.flows
        self.samples += other.samples
        self.double_clicks += other.double_clicks
        self.second_tabs += other.second_tabs
        self.refresh_failures += other.refresh_failures
        self.kinds.update(other.kinds)
        self.approvals += other.approvals


def iteration_kind(i: int, args: argparse.Namespace) -> str:
    """What iteration ``i`` of a user does; the kinds never share an iteration."""
    if args.deny_every and i % args.deny_every == args.deny_every - 1:
        return "deny"
    if args.double_click_every and i % args.double_click_every == 3 % args.double_click_every:
        return "double click"
    if args.second_tab_every and i % args.second_tab_every == 6 % args.second_tab_every:
        return "second tab"
    return "plain"


def account_statuses(html: str) -> dict[str, str]:
    """managed account id -> status, as the connections page shows them."""
    statuses = {}
    for status, row in _ACCOUNT_ROW.findall(html):
        code = _CODE.search(row)
        if code:
            statuses[code.group(1)] = status
    return statuses


def hosted_parts(url: str) -> tuple[str, str]:
    query = parse_qs(urlsplit(url).query)
    return query["session"][0], query["state"][0]


# -- the virtual users -----------------------------------------------------------------------


class VirtualUser:
    """One logged-in browser looping over the flow; records into its own LoadResult."""

    def __init__(
        self,
        index: int,
        user: tuple[str, str],
        args: argparse.Namespace,
        site: str,
        fake_url: str,
        deadline: float,
    ) -> None:
        import requests

        self.index = index
        self.name, self.external_user_id = user
        self.args = args
        self.site = site
        self.fake_url = fake_url
        self.deadline = deadline
        self.http = requests.Session()
        # The bench's own calls to the fake (the truth, the test-control routes): the API key.
        self.control = requests.Session()
        self.control.headers["Authorization"] = f"Bearer {API_KEY}"
        self.out = LoadResult()
        self.approved = 0  # counts towards the next token-refresh failure
        self.awaiting: dict[str, RefreshFailure] = {}  # platform -> failure not reconnected yet
        self.last_statuses: dict[str, str] = {}  # the last connections page's accounts

    # -- requests

    def timed(self, http: Any, kind: str, method: str, url: str, **kw: Any) -> tuple[int, Any]:
        import requests

        t0 = time.perf_counter()
        try:
            answer = http.request(method, url, timeout=TIMEOUT, allow_redirects=False, **kw)
            status = answer.status_code
        except requests.RequestException:
            answer, status = None, 0
        self.out.samples.append(Sample(kind, time.perf_counter() - t0, status))
        return status, answer

    def csrf(self, http: Any = None) -> str:
        return str((http or self.http).cookies.get("csrftoken", ""))

    def start_form(self, platform: str, http: Any = None) -> dict[str, str]:
        return {"platform": platform, "next": CONNECTIONS, "csrfmiddlewaretoken": self.csrf(http)}

    def hosted_url(self, answer: Any) -> str:
        location = answer.headers.get("Location", "") if answer is not None else ""
        return location if location.startswith(self.fake_url + "/connect/") else ""

    def fake_json(self, method: str, path: str, **kw: Any) -> Any:
        """``data`` of the fake's answer, None when it is not a 200."""
        status, answer = self.timed(
            self.control, "fake: bench's own calls", method, self.fake_url + path, **kw
        )
        return answer.json().get("data") if status == 200 else None

    # -- the loop

    def run(self) -> LoadResult:
        try:
            self.login()
            for i in range(self.args.max_iterations):
                if time.monotonic() >= self.deadline:
                    break
                self.iterate(i)
        finally:
            self.http.close()
            self.control.close()
        return self.out

    def login(self) -> None:
        self.timed(self.http, "login page", "GET", self.site + "/login/")
        form = {"username": self.name, "password": PASSWORD, "csrfmiddlewaretoken": self.csrf()}
        status, _ = self.timed(
            self.http, "login", "POST", self.site + "/login/", data={**form, "next": CONNECTIONS}
        )
        if status != 302:
            raise RuntimeError(f"{self.name} could not log in ({status})")

    def iterate(self, i: int) -> None:
        kind = iteration_kind(i, self.args)
        deny = kind == "deny"
        action = "deny" if deny else "approve"
        # A deny is a second try on the platform just connected (the user changed their mind).
        platform = PLATFORMS[(self.index + i - deny) % len(PLATFORMS)]
        self.out.kinds[kind] += 1
        if kind == "double click":
            hosted = self.double_click(platform, clicks=2 + len(self.out.double_clicks) % 2)
        else:
            status, answer = self.timed(
                self.http, "start", "POST", self.site + "/unipost/connect/", data=self.start_form(platform)
            )
            hosted = self.hosted_url(answer) if status == 302 else ""
        if not hosted:
            return
        sid, state = hosted_parts(hosted)
        self.out.flows.append(Flow(sid, self.name, platform, action, kind))
        self.timed(self.http, "fake: hosted page", "GET", hosted)
        if kind == "second tab":
            self.second_tab(platform, hosted)
        if self.finish(hosted, sid, state, platform, action) and action == "approve":
            self.after_approval(platform, sid)

    def double_click(self, platform: str, clicks: int) -> str:
        """``clicks`` POSTs to the start view at once, with this browser's cookies."""
        import requests

        before = self.fake_sessions(platform)
        barrier = threading.Barrier(clicks)
        answers: list[tuple[int, Any]] = [(0, None)] * clicks
        tabs = [requests.Session() for _ in range(clicks)]

        def click(n: int) -> None:
            tabs[n].cookies.update(self.http.cookies)
            form = self.start_form(platform, tabs[n])
            try:
                barrier.wait(TIMEOUT)  # released together, as the clicks of a double click
            except threading.BrokenBarrierError:
                pass
            answers[n] = self.timed(
                tabs[n], "start (double click)", "POST", self.site + "/unipost/connect/", data=form
            )

        threads = [threading.Thread(target=click, args=(n,), daemon=True) for n in range(clicks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * TIMEOUT)
        for tab in tabs:  # what the browser keeps: every answer's cookies
            self.http.cookies.update(tab.cookies)
            tab.close()
        urls = [self.hosted_url(answer) for _, answer in answers]
        after = self.fake_sessions(platform)
        created = len(after - before) if before is not None and after is not None else -1
        self.out.double_clicks.append(
            DoubleClick(clicks, [status for status, _ in answers], len(set(urls)), created)
        )
        hosted = next((url for url in urls if url), "")
        # Sessions made for the other clicks (if any) stay pending; the audit still checks them.
        for other in {url for url in urls if url and url != hosted}:
            self.out.flows.append(Flow(hosted_parts(other)[0], self.name, platform, "left", "double click"))
        return hosted

    def fake_sessions(self, platform: str) -> set[str] | None:
        """Ids of the sessions the fake holds for this user and platform (test control)."""
        data = self.fake_json(
            "GET", "/_fake/sessions", params={"external_user_id": self.external_user_id, "platform": platform}
        )
        return {s["id"] for s in data} if data is not None else None

    def second_tab(self, platform: str, hosted: str) -> None:
        """Start the same platform again before finishing: the same hosted url must come back."""
        status, answer = self.timed(
            self.http,
            "start (second tab)",
            "POST",
            self.site + "/unipost/connect/",
            data=self.start_form(platform),
        )
        again = self.hosted_url(answer) if status == 302 else ""
        self.out.second_tabs.append(SecondTab(status, again == hosted))
        if again:
            self.timed(self.http, "fake: hosted page", "GET", again)

    def finish(self, hosted: str, sid: str, state: str, platform: str, action: str) -> bool:
        """Approve or deny, follow the way back and load the connections page; True if back."""
        form = {"session": sid, "state": state, "action": action, "account_name": f"{self.name} {platform}"}
        status, answer = self.timed(self.http, "fake: approve/deny", "POST", hosted, data=form)
        back = answer.headers.get("Location", "") if answer is not None else ""
        if status != 302 or not back.startswith(self.site):
            return False
        self.out.approvals += action == "approve"
        status, answer = self.timed(self.http, "return", "GET", back)
        onward = answer.headers.get("Location", "") if answer is not None else ""
        if status == 302 and onward:
            self.connections_page(connecting=platform if action == "approve" else None)
        return True

    def connections_page(
        self, connecting: str | None = None, kind: str = "connections page"
    ) -> dict[str, str]:
        """The page's account statuses; checks that no refresh-failed account came back by itself."""
        status, answer = self.timed(self.http, kind, "GET", urljoin(self.site, CONNECTIONS))
        statuses = account_statuses(answer.text) if status == 200 else {}
        for platform, failure in self.awaiting.items():
            seen = failure.seen_after is not None
            if platform != connecting and seen and statuses.get(failure.account_id) == "active":
                failure.active_early = True
        self.last_statuses = statuses
        return statuses

    def after_approval(self, platform: str, sid: str) -> None:
        """Check a pending reconnect, or make a token-refresh failure when one is due."""
        self.approved += 1
        failure = self.awaiting.pop(platform, None)
        due = (
            bool(self.args.refresh_fail_every)
            and self.approved >= self.args.refresh_fail_every
            and platform in OAUTH_PLATFORMS
        )
        if failure is None and not due:
            return
        session = self.fake_json("GET", f"/v1/connect/sessions/{sid}") or {}
        account_id = str(session.get("managed_account_id") or "")
        if failure is not None:
            failure.reconnected = "same account" if account_id == failure.account_id else "other account"
            failure.active_after_reconnect = self.last_statuses.get(failure.account_id) == "active"
        elif account_id:
            self.approved = 0
            self.fail_refresh(platform, account_id)

    def fail_refresh(self, platform: str, account_id: str) -> None:
        """UniPost cannot refresh the token; wait (bounded) until the site shows it."""
        reason = REFRESH_REASONS[len(self.out.refresh_failures) % len(REFRESH_REASONS)]
        status, _ = self.timed(
            self.control,
            "fake: bench's own calls",
            "POST",
            f"{self.fake_url}/_fake/accounts/{account_id}/fail-refresh",
            data={"reason": reason},
        )
        failure = RefreshFailure(account_id, self.name, platform, reason, status)
        self.out.refresh_failures.append(failure)
        if status != 200:
            return
        t0 = time.monotonic()
        for _ in range(int(self.args.refresh_wait / POLL) + 1):
            kind = "connections page (waiting for reconnect_required)"
            if self.connections_page(kind=kind).get(account_id) == "reconnect_required":
                failure.seen_after = time.monotonic() - t0
                break
            time.sleep(POLL)
        self.awaiting[platform] = failure


def generate(args: argparse.Namespace, site: str, fake_url: str, users: list[tuple[str, str]]) -> LoadResult:
    deadline = time.monotonic() + args.duration
    result = LoadResult()
    lock = threading.Lock()

    def run(index: int) -> None:
        user = VirtualUser(index, users[index], args, site, fake_url, deadline)
        try:
            user.run()
        finally:
            with lock:
                result.merge(user.out)

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(args.users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 120)
    result.wall = time.monotonic() - t0
    return result


def wait_for_webhooks(fake_url: str, timeout: float) -> str:
    """Wait until the fake has no webhook delivery in flight (or timeout)."""
    import requests

    t0 = time.monotonic()
    summary: dict[str, int] = {}
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {API_KEY}"
        while time.monotonic() - t0 < timeout:
            summary = http.get(f"{fake_url}/_fake/webhooks", timeout=TIMEOUT).json()["data"]
            if summary.get("in_flight") == 0 and summary.get("finished") == summary.get("emitted"):
                break
            time.sleep(POLL * 5)
    return (
        f"webhooks: {summary.get('emitted')} emitted, {summary.get('delivered')} delivered (2xx), "
        f"{summary.get('failed')} failed, {summary.get('in_flight')} in flight, "
        f"{time.monotonic() - t0:.1f}s after the load"
    )


def parse_access_log(path: Path) -> list[tuple[int, str, str, float]]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) >= 4 and parts[0].isdigit():
                rows.append((int(parts[0]), parts[1], parts[2], int(parts[3]) / 1000))
    return rows


# -- the audit -------------------------------------------------------------------------------


def fake_truth(fake_url: str, ids: list[str]) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """The fake's sessions by id (public API), all its sessions and accounts (test control)."""
    import requests

    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {API_KEY}"

    def remote(sid: str) -> tuple[str, dict]:
        answer = http.get(f"{fake_url}/v1/connect/sessions/{sid}", timeout=30)
        if answer.status_code != 200:
            return sid, {"status": f"HTTP {answer.status_code}"}
        return sid, answer.json().get("data", {})

    with ThreadPoolExecutor(8) as pool:
        truth = dict(pool.map(remote, ids))
    every_session = http.get(f"{fake_url}/_fake/sessions", timeout=30).json()["data"]
    accounts = http.get(f"{fake_url}/_fake/accounts", timeout=30).json()["data"]
    http.close()
    return truth, every_session, accounts


def run_audit(flows: list[Flow], fake_url: str) -> dict[str, Any]:
    from unipost_connect.models import WebhookEvent

    ids = sorted({f.id for f in flows})
    truth, every_session, fake_accounts = fake_truth(fake_url, ids)
    sessions, problems = audit_sessions(ids, truth)
    unseen = [s for s in every_session if s["id"] not in truth]
    sessions["duplicated: made at UniPost, never sent to a user"] = len(unseen)
    problems += [
        f"{s['id']}: made at UniPost ({s['platform']}, user {s['external_user_id']}), never sent"
        for s in unseen
    ]
    accounts, account_problems = audit_accounts(fake_accounts)
    events = Counter(WebhookEvent.objects.values_list("event_type", "result"))
    return {
        "sessions": sessions,
        "accounts": accounts,
        "problems": problems + account_problems,
        "webhook results": {f"{kind} {result}": n for (kind, result), n in sorted(events.items())},
    }


def audit_sessions(ids: list[str], truth: dict[str, dict]) -> tuple[Counter[str], list[str]]:
    from django.utils.dateparse import parse_datetime

    from bench.models import SignalRecord
    from unipost_connect.models import ConnectedAccount, ConnectSession

    local = {s.unipost_session_id: s for s in ConnectSession.objects.select_related("user")}
    completed_signals = Counter(
        SignalRecord.objects.filter(kind="completed").values_list("session_id", flat=True)
    )
    ended_signals = Counter(
        SignalRecord.objects.exclude(kind="completed").values_list("session_id", flat=True)
    )
    accounts = {a.managed_account_id: a for a in ConnectedAccount.objects.all()}
    audit: Counter[str] = Counter()
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
        if row.status == "completed":
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
        judge_signals(sid, row, want, completed_signals.get(str(row.pk), 0), audit, problems)
        if row.status in ("cancelled", "expired") and ended_signals.get(str(row.pk), 0) != 1:
            problems.append(f"{sid}: {row.status} with {ended_signals.get(str(row.pk), 0)} ended signals")
    unknown = [s for s in local if s not in truth]
    audit["database sessions the generator did not start"] = len(unknown)
    problems += [f"{s}: in the database, not started by the generator" for s in unknown]
    return audit, problems


def judge_signals(
    sid: str, row: Any, want: dict, signals: int, audit: Counter[str], problems: list[str]
) -> None:
    """Signals are judged against the fake's truth: one for a session UniPost completed, none otherwise."""
    if want.get("status") == "completed":
        if row.status == "completed" and row.managed_account_id != want.get("managed_account_id"):
            problems.append(
                f"{sid}: account {row.managed_account_id!r}, UniPost says {want.get('managed_account_id')!r}"
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


def audit_accounts(fake_accounts: list[dict]) -> tuple[Counter[str], list[str]]:
    """Every local account against the fake's: same owner (external user id), same status."""
    from unipost_connect.models import ConnectedAccount

    remote = {a["id"]: a for a in fake_accounts}
    local = {a.managed_account_id: a for a in ConnectedAccount.objects.all()}
    audit: Counter[str] = Counter()
    problems: list[str] = []
    for account_id, row in local.items():
        want = remote.get(account_id)
        audit["local accounts"] += 1
        audit[f"fake: {want['status'] if want else 'unknown'}"] += 1
        if want is None:
            audit["spurious: local account the fake does not have"] += 1
            problems.append(f"account {account_id}: local {row.status}, unknown to the fake")
        elif row.status != want["status"] or row.external_user_id != want["external_user_id"]:
            audit["status differs from the fake"] += 1
            problems.append(
                f"account {account_id} ({row.platform}, user {row.external_user_id}): local {row.status}, "
                f"fake {want['status']} (user {want['external_user_id']})"
            )
        else:
            audit["status matches the fake"] += 1
    missing = [a for a in remote if a not in local]
    audit["lost: fake account without a local one"] = len(missing)
    problems += [f"account {a}: {remote[a]['status']} at the fake, not in the database" for a in missing]
    return audit, problems


# -- the report ----------------------------------------------------------------------------


def latency_rows(load: LoadResult, access: list[tuple[int, str, str, float]]) -> list[list[Any]]:
    kinds = sorted({s.kind for s in load.samples}, key=lambda k: (k.startswith("fake"), k))
    rows = []
    for kind in kinds:
        mine = [s for s in load.samples if s.kind == kind]
        rows.append(
            latency_row(
                kind,
                [s.seconds * 1000 for s in mine],
                sum(1 for s in mine if s.status >= 500 or s.status == 0),
            )
        )
    webhooks = [(status, ms) for status, _, path, ms in access if path == "/unipost/webhook/"]
    if webhooks:
        failed = sum(1 for status, _ in webhooks if status >= 500)
        rows.append(
            latency_row("webhook (server time, from the access log)", [ms for _, ms in webhooks], failed)
        )
    return rows


def latency_row(kind: str, ms: list[float], failed: int) -> list[Any]:
    return [kind, len(ms), failed, percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), max(ms)]


def print_traffic(
    args: argparse.Namespace, load: LoadResult, webhook_wait: str, access: list[tuple[int, str, str, float]]
) -> int:
    """The latency table and the site's totals; returns the site's 5xx (and failed requests)."""
    title = (
        f"Load run: {args.users} users, {load.wall:.1f}s, gunicorn {args.workers}x{args.worker_class}"
        f"{f'x{args.gthreads}' if args.worker_class == 'gthread' else ''} on PostgreSQL, fake at "
        f"{args.latency_ms:g} ms, webhooks after {args.webhook_delay:g}s"
    )
    headers = ["request", "count", "5xx/failed", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    print(table(headers, latency_rows(load, access), title=title))
    site = [s for s in load.samples if not s.kind.startswith("fake")]
    site_ms = [s.seconds * 1000 for s in site]
    webhooks = sum(1 for _, _, path, _ in access if path == "/unipost/webhook/")
    site_5xx = sum(1 for status, *_ in access if status >= 500) + sum(1 for s in site if s.status == 0)
    print(
        f"\nsite requests: {len(access)} in the access log (generator {len(site)} + webhooks {webhooks}); "
        f"{len(access) / load.wall:.1f} req/s overall, generator site requests "
        f"{len(site) / load.wall:.1f} req/s, p50/p95/p99 {percentile(site_ms, 50):.1f}/"
        f"{percentile(site_ms, 95):.1f}/{percentile(site_ms, 99):.1f} ms"
    )
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(load.kinds.items()))
    print(f"iterations: {kinds}; sessions {len({f.id for f in load.flows})}, approvals {load.approvals}")
    print(webhook_wait)
    print(f"status counts (access log): {dict(sorted(Counter(str(a[0]) for a in access).items()))}")
    print(f"5xx (site): {site_5xx} — target 0: {ok(site_5xx == 0)}")
    return site_5xx


def print_clicks(load: LoadResult) -> int:
    """Double clicks and second tabs; returns how many went wrong."""
    clicks = load.double_clicks
    created = Counter(c.created for c in clicks)
    tabs = load.second_tabs
    rows = [
        ["double clicks (2 or 3 concurrent starts)", len(clicks)],
        ["  of them with 3 clicks", sum(1 for c in clicks if c.clicks == 3)],
        ["  every click 302 to the same hosted url", sum(1 for c in clicks if c.agreed)],
        ["  differing urls or a click not sent to UniPost", sum(1 for c in clicks if not c.agreed)],
        *[[f"  {n} remote session(s) made by it", k] for n, k in sorted(created.items())],
        ["second tabs", len(tabs)],
        ["  sent to the same hosted url", sum(1 for t in tabs if t.same_url)],
        ["  sent elsewhere", sum(1 for t in tabs if not t.same_url)],
    ]
    print(table(["double clicks and second tabs", "count"], rows, title="\nDouble clicks and second tabs"))
    bad = sum(1 for c in clicks if not c.agreed or c.created > 1) + sum(1 for t in tabs if not t.same_url)
    print(f"problems: {bad} — target 0: {ok(bad == 0)}")
    return bad


def print_refresh_failures(load: LoadResult) -> int:
    failures = load.refresh_failures
    applied = [f for f in failures if f.status == 200]
    seen = [f.seen_after * 1000 for f in applied if f.seen_after is not None]
    reconnected = [f for f in applied if f.reconnected]
    rows = [
        ["token-refresh failures applied at the fake", len(applied)],
        ["  refused by the fake (not active)", len(failures) - len(applied)],
        ["  shown reconnect_required by the site", len(seen)],
        ["  active again on the site before a reconnect", sum(f.active_early for f in applied)],
        ["  reconnected by the user", len(reconnected)],
        ["    same managed account", sum(1 for f in reconnected if f.reconnected == "same account")],
        ["    active again on the site", sum(1 for f in reconnected if f.active_after_reconnect)],
        ["  not reconnected before the end", len(applied) - len(reconnected)],
    ]
    print(table(["token-refresh failures", "count"], rows, title="\nToken-refresh failures"))
    print(
        f"from the failure to the site's page showing it (webhook delay included): p50 "
        f"{percentile(seen, 50):.0f} ms, max {max(seen, default=0):.0f} ms"
    )
    bad = (
        (len(failures) - len(applied))
        + (len(applied) - len(seen))
        + sum(f.active_early for f in applied)
        + sum(1 for f in reconnected if f.reconnected != "same account" or not f.active_after_reconnect)
    )
    print(f"problems: {bad} — target 0: {ok(bad == 0)}")
    return bad


def print_audit(audit: dict[str, Any]) -> tuple[int, int, int, int, int]:
    sessions, accounts = audit["sessions"], audit["accounts"]
    title = "\nAudit: sessions (database vs the fake's GET /v1/connect/sessions/{id}, and /_fake/sessions)"
    print(table(["sessions", "count"], sessions.items(), title=title))
    title = "\nAudit: accounts (database vs the fake's /_fake/accounts)"
    print(table(["accounts", "count"], accounts.items(), title=title))
    print(f"webhook events stored: {audit['webhook results']}")
    both = list(sessions.items()) + list(accounts.items())
    lost = sum(v for k, v in both if k.startswith("lost"))
    dup = sum(v for k, v in both if k.startswith("duplicated"))
    spurious = sum(v for k, v in both if k.startswith("spurious"))
    session_mismatch = sessions.get("state differs from the fake", 0)
    account_mismatch = accounts.get("status differs from the fake", 0)
    return lost, dup, spurious, session_mismatch, account_mismatch


def report(
    args: argparse.Namespace,
    load: LoadResult,
    webhook_wait: str,
    access: list[tuple[int, str, str, float]],
    audit: dict[str, Any],
    errors_log: str,
    fake_log: str,
) -> None:
    site_5xx = print_traffic(args, load, webhook_wait, access)
    clicks_bad = print_clicks(load)
    refresh_bad = print_refresh_failures(load)
    lost, dup, spurious, session_mismatch, account_mismatch = print_audit(audit)
    clean = not any(
        (site_5xx, clicks_bad, refresh_bad, lost, dup, spurious, session_mismatch, account_mismatch)
    )
    print(
        f"\n5xx {site_5xx}, lost {lost}, duplicated {dup}, spurious {spurious}, state mismatches "
        f"{session_mismatch} (sessions) / {account_mismatch} (accounts), double-click/second-tab problems "
        f"{clicks_bad}, refresh-failure problems {refresh_bad} — target all 0: {ok(clean)}"
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
