"""Issue 11's acceptance test: a real task engine, django-tasks-db on PostgreSQL, under
the whole flow, with a worker SIGKILLed in the middle of a task.

Each its own process, on loopback:

- the standalone fake UniPost (``python -m unipost_connect.testing.server``), 20 ms per
  answer, POSTing its signed webhooks at once to a relay in this test;
- the example site (tests/worker_settings.py: the load run's settings, which record every
  completion / ended signal in a table, plus django-tasks-db) under gunicorn, on a fresh
  PostgreSQL database;
- two ``db_worker`` processes.

The relay forwards each webhook to the site, and for every other one a copy at the same
moment (UniPost's retry overlapping its first attempt). The webhooks of the sessions
chosen to be "approved, no webhook ever" it swallows (answering the fake 200), so only
reconcile can settle those.

The flow: 34 users log in and start 300 sessions through the site's start view. At the
fake's hosted page 100 are approved with their webhook delivered, 60 approved with it
lost, 40 denied (UniPost sends no webhook for that), 100 left pending; nobody comes back
through the return view. While the webhooks are being applied (once ten are), worker 1
is SIGKILLed in the middle of a webhook task: it is frozen with SIGSTOP until PostgreSQL
shows it inside one with its transaction open, just before the fake's confirming read,
so the kill lands there every time, not by luck of timing. (Not covered: a kill after
that transaction's COMMIT and before its on-commit signal. The session stays completed
and its event applied, but the completion signal is never sent: the app sends signals on
commit, at most once.)
``unipost_connect_reconcile --enqueue --older-than 0`` then enqueues one task per
pending session; worker 1 is started again; every delivery is POSTed once more (a late
replay). Once no task is ready and none runs but the killed one (django-tasks-db leaves
a killed task RUNNING for ever), ``unipost_connect_process_webhooks`` applies what the
killed worker left ``received``.

Then: one stored event per distinct delivery, each applied, and applied once (the task
return values and the replay command count one apply each); the killed task's event was
still ``received`` until the replay; every completed session has exactly one completion
signal, every cancelled one one ended signal, no other session any; every session's
status (and account) is the fake's ``GET /v1/connect/sessions/{id}``; the local accounts
are the fake's; no task failed; every webhook POST was answered 200, once as new.

PostgreSQL only (``scripts/with-postgres``): the workers and the site share the database.
Marked ``e2e`` (real processes): run once by scripts/test, not in the version matrix.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.example_site import cleanups, database_url, free_port, site_env, wait_until
from unipost_connect.platforms import ALL_PLATFORMS

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).with_name("gunicorn")
SETTINGS = "tests.worker_settings"


def _missing() -> str:
    """Why this machine cannot run the test ("" when it can)."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return (
            "needs PostgreSQL: the site and two db_worker processes share one database "
            "(run with scripts/with-postgres)"
        )
    if find_spec("django_tasks_db") is None:
        return "needs django-tasks-db (the test extra)"
    if not GUNICORN.exists():
        return "needs gunicorn (the bench extra)"
    if not (ROOT / "bench" / "demo_settings.py").exists():
        return "needs the repository's bench/ (its settings and signal recorder)"
    return ""


pytestmark = [
    pytest.mark.postgres,
    pytest.mark.e2e,  # real processes: run once, not in the version matrix
    pytest.mark.skipif(bool(_missing()), reason=_missing() or "-"),
]

USERS = 34
SESSIONS = 300  # USERS x the nine platforms, cut to 300
WITH_WEBHOOK, SILENT, DENIED = 100, 60, 40  # the other 100 stay pending
LATENCY_MS = 20  # the fake's, per answer: a webhook task waits that long in its transaction
API_KEY = "up_test_workers_" + secrets.token_hex(4)
WEBHOOK_SECRET = "whsec_workers_" + secrets.token_hex(4)
PASSWORD = "workers-pass-123"
CONNECTIONS = "/unipost/connections/"
TIMEOUT = 10.0  # any one HTTP request
WAIT = 60.0  # any one wait for the system to get somewhere
WEBHOOK_TASK = "unipost_connect.tasks.process_webhook_event"
RECONCILE_TASK = "unipost_connect.tasks.reconcile_session"
FINAL_RESULTS = {"applied", "ignored", "unknown_user"}
# Run as ``python -c SETUP <password> <users>`` with the site's settings: migrate, make the
# users, print {username: pk}.
SETUP = """
import json, sys, django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
call_command("migrate", run_syncdb=True, interactive=False, verbosity=0)
User = get_user_model()
password = make_password(sys.argv[1])
User.objects.bulk_create([User(username=f"w{i}", password=password) for i in range(int(sys.argv[2]))])
print(json.dumps(dict(User.objects.values_list("username", "pk"))))
"""


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Processes:
    """The processes this test starts, each in its own session, logging to ``tmp``."""

    tmp: Path
    env: dict[str, str]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running[name] = process
        return process

    def manage(self, *args: str, timeout: float = WAIT) -> str:
        """Run a management command to its end; its output (it must succeed)."""
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{args[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, name: str) -> bool:
        if self.running[name].poll() is None:
            return True
        pytest.fail(f"{name} exited with {self.running[name].returncode}:\n{self.log(name)[-3000:]}")

    def send(self, name: str, sig: int) -> None:
        os.killpg(self.running[name].pid, sig)

    def signal(self, name: str, sig: int, wait: float = 10.0) -> None:
        """Send ``sig`` and wait for the process to end (SIGKILL after ``wait`` seconds)."""
        process = self.running[name]
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
                os.killpg(process.pid, signal.SIGCONT)  # a stopped process acts on it too
            except ProcessLookupError:
                pass
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.signal(name, signal.SIGTERM)


@pytest.fixture
def finalizers() -> Iterator[list[Callable[[], None]]]:
    """Clean-ups run in reverse order, even after a failure (the first error is raised)."""
    with cleanups() as done:
        yield done


# -- the webhook relay ---------------------------------------------------------------------------


@dataclass
class Answer:
    """The site's answer to one POST of a delivery."""

    body: bytes
    status: int
    json: dict[str, Any] | None


class Relay:
    """Between the fake and the site: forwards each webhook (and for every other one a
    concurrent copy), swallows those of the ``lost`` (external user, platform) pairs."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.lost: set[tuple[str, str]] = set()
        self.forwarded: list[tuple[bytes, dict[str, str]]] = []
        self.swallowed = 0
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                status = relay.relay(body, headers)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1})
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def relay(self, body: bytes, headers: dict[str, str]) -> int:
        data = json.loads(body).get("data", {})
        with self._lock:
            if (str(data.get("external_user_id")), str(data.get("platform"))) in self.lost:
                self.swallowed += 1
                return 200
            self.forwarded.append((body, headers))
            overlap = len(self.forwarded) % 2 == 0
        copy = threading.Thread(target=self.post, args=(body, headers)) if overlap else None
        if copy is not None:
            copy.start()
        answer = self.post(body, headers)
        if copy is not None:
            copy.join(2 * TIMEOUT)
        return answer.status or 502

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """POST one delivery to the site's webhook URL, recording the answer."""
        try:
            response = requests.post(
                self.site + "/unipost/webhook/", data=body, headers=headers, timeout=TIMEOUT
            )
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            answer = Answer(body, response.status_code, parsed)
        except requests.RequestException:
            answer = Answer(body, 0, None)
        with self._lock:
            self.answers.append(answer)
        return answer


# -- the database ---------------------------------------------------------------------------------


class Database:
    """Reads of the site's database, in autocommit (each statement sees what is committed)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.connection = psycopg.connect(url, autocommit=True)

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.connection.execute(query, params).fetchall()

    def value(self, query: str, *params: Any) -> Any:
        return self.rows(query, *params)[0][0]

    def connected(self, application_name: str) -> bool:
        return bool(
            self.value("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", application_name)
        )

    def in_webhook_transaction(self, application_name: str, worker_id: str) -> bool:
        """The worker is inside a webhook task with its transaction open, just after reading
        the sessions it asks the fake about (then it waits for the fake's answer).

        Only a SELECT of sessions is accepted as the last statement: one the COMMIT follows
        (the event's UPDATE) might already be on its way to the server.
        """
        return bool(
            self.value(
                """
                SELECT count(*) FROM pg_stat_activity
                WHERE application_name = %s AND state = 'idle in transaction'
                  AND query LIKE 'SELECT "unipost_connect_connectsession".%%'
                  AND EXISTS (
                      SELECT 1 FROM django_tasks_database_dbtaskresult
                      WHERE status = 'RUNNING' AND task_path = %s AND worker_ids @> %s::jsonb
                  )
                """,
                application_name,
                WEBHOOK_TASK,
                json.dumps([worker_id]),
            )
        )

    def tasks(self) -> list[tuple[str, str, Any, list[str], dict[str, Any]]]:
        """(task_path, status, return_value, worker_ids, args_kwargs) of every task."""
        return self.rows(
            "SELECT task_path, status, return_value, worker_ids, args_kwargs "
            "FROM django_tasks_database_dbtaskresult"
        )

    def close(self) -> None:
        self.connection.close()


# -- the flow ---------------------------------------------------------------------------------------


@dataclass
class Started:
    """One session a user was sent to UniPost for, and what happens to it at the fake."""

    external_user_id: str
    platform: str
    unipost_id: str
    hosted_url: str
    plan: str = "pending"  # webhook, silent (approved, webhook lost), deny, pending


def start_sessions(
    site: str, fake_url: str, username: str, external_user_id: str, platforms: list[str]
) -> list[Started]:
    """Log in and start a session per platform through the site's start view."""
    http = requests.Session()
    try:
        http.get(site + "/login/", timeout=TIMEOUT)
        form = {"username": username, "password": PASSWORD, "next": CONNECTIONS}
        form["csrfmiddlewaretoken"] = http.cookies["csrftoken"]
        answer = http.post(site + "/login/", data=form, allow_redirects=False, timeout=TIMEOUT)
        assert answer.status_code == 302, f"{username} could not log in ({answer.status_code})"
        started = []
        for platform in platforms:
            form = {
                "platform": platform,
                "next": CONNECTIONS,
                "csrfmiddlewaretoken": http.cookies["csrftoken"],
            }
            answer = http.post(site + "/unipost/connect/", data=form, allow_redirects=False, timeout=TIMEOUT)
            hosted = answer.headers.get("Location", "")
            assert answer.status_code == 302 and hosted.startswith(fake_url + "/connect/"), (
                f"start {platform} for {username}: {answer.status_code} {hosted}"
            )
            unipost_id = parse_qs(urlsplit(hosted).query)["session"][0]
            started.append(Started(external_user_id, platform, unipost_id, hosted))
        return started
    finally:
        http.close()


def press(session: Started) -> int:
    """The user's button on the fake's hosted page; the browser does not come back."""
    action = "deny" if session.plan == "deny" else "approve"
    answer = requests.post(
        session.hosted_url, data={"action": action}, allow_redirects=False, timeout=TIMEOUT
    )
    return answer.status_code


def fake_get(fake_url: str, path: str) -> Any:
    answer = requests.get(fake_url + path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=TIMEOUT)
    assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text[:200]}"
    return answer.json()["data"]


def test_two_db_workers_one_killed_apply_everything_exactly_once(
    tmp_path: Path, finalizers: list[Callable[[], None]]
) -> None:
    began = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - began, 1)

    site_port, fake_port = free_port(), free_port()
    site, fake_url = f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{fake_port}"
    db_url = database_url(tmp_path, finalizers)  # a fresh database, dropped at the end
    assert db_url.startswith("postgres")
    env = site_env(
        tmp_path,
        site_port,
        db_url,
        {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "DEBUG": "false",
            "SECRET_KEY": "task-workers-test-" + secrets.token_hex(16),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "UNIPOST_API_BASE_URL": fake_url,
            "UNIPOST_API_KEY": API_KEY,
            "UNIPOST_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "UNIPOST_LOG_LEVEL": "WARNING",
        },
    )
    procs = Processes(tmp_path, env)
    finalizers.append(procs.stop_all)
    relay = Relay(site)
    relay.start()
    finalizers.append(relay.stop)

    # The database: migrated, with the users (the site sends UniPost a user's pk).
    done = subprocess.run(
        [sys.executable, "-c", SETUP, PASSWORD, str(USERS)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, f"migrate failed:\n{done.stdout}\n{done.stderr}"
    users: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    db = Database(db_url)
    finalizers.append(db.close)
    phase("migrated")

    # The fake, the site and two workers, started together.
    procs.start(
        "fake",
        [
            sys.executable,
            "-m",
            "unipost_connect.testing.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(fake_port),
            "--api-key",
            API_KEY,
            "--webhook-secret",
            WEBHOOK_SECRET,
            "--webhook-url",
            relay.url,
            "--webhook-delay",
            "0",
            "--latency-ms",
            str(LATENCY_MS),
        ],
    )
    procs.start(
        "gunicorn",
        [
            str(GUNICORN),
            "bench.demo_wsgi",
            "--bind",
            f"127.0.0.1:{site_port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--chdir",
            str(ROOT),
            "--log-level",
            "warning",
            "--timeout",
            "30",
            "--graceful-timeout",
            "5",
        ],
    )

    def start_worker(name: str, worker_id: str) -> None:
        argv = [sys.executable, "-m", "django", "db_worker", "--no-reload", "--no-startup-delay"]
        argv += ["--interval", "0.05", "--worker-id", worker_id, "-v", "1"]
        procs.start(name, argv, UNIPOST_DB_APPLICATION_NAME=f"unipost-{name}")

    start_worker("w1", "w1")
    start_worker("w2", "w2")

    def serving(url: str, name: str) -> bool:
        procs.alive(name)
        try:
            return (
                requests.get(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=2).status_code
                == 200
            )
        except requests.RequestException:
            return False

    assert wait_until(lambda: serving(fake_url + "/_fake/webhooks", "fake"), WAIT), "the fake did not start"
    assert wait_until(lambda: serving(site + "/login/", "gunicorn"), WAIT), procs.log("gunicorn")

    def ready(name: str) -> bool:
        return procs.alive(name) and db.connected(f"unipost-{name}")

    for name in ("w1", "w2"):
        assert wait_until(lambda: ready(name), WAIT), procs.log(name)  # noqa: B023 (called at once)
    phase("started")

    # 300 sessions started through the site, then a plan for each.
    pairs = [(u, p) for u in sorted(users, key=users.get) for p in ALL_PLATFORMS][:SESSIONS]
    by_user: dict[str, list[str]] = {}
    for username, platform in pairs:
        by_user.setdefault(username, []).append(platform)
    with ThreadPoolExecutor(6) as browsers:
        runs = [
            browsers.submit(start_sessions, site, fake_url, u, str(users[u]), platforms)
            for u, platforms in by_user.items()
        ]
        started = [session for run in runs for session in run.result(timeout=WAIT)]
    assert len({s.unipost_id for s in started}) == SESSIONS
    plans = ["webhook"] * WITH_WEBHOOK + ["silent"] * SILENT + ["deny"] * DENIED
    chosen = random.Random(11).sample(started, len(plans))
    for session, plan in zip(chosen, plans, strict=True):
        session.plan = plan
    relay.lost = {(s.external_user_id, s.platform) for s in started if s.plan == "silent"}
    phase("sessions started")

    # The users press their buttons; meanwhile, worker 1 dies inside a webhook task.
    pool = ThreadPoolExecutor(8)
    finalizers.append(lambda: pool.shutdown(cancel_futures=True))
    pressed = [pool.submit(press, s) for s in chosen]

    def frozen_mid_task() -> bool:
        """Once both workers are under way, stop worker 1 (SIGSTOP) and look: is it inside
        a webhook task? If not, let it go on."""
        if db.value("SELECT count(*) FROM unipost_connect_webhookevent WHERE result = 'applied'") < 10:
            return False
        procs.send("w1", signal.SIGSTOP)
        if db.in_webhook_transaction("unipost-w1", "w1"):
            return True
        procs.send("w1", signal.SIGCONT)
        return False

    caught = wait_until(frozen_mid_task, WAIT, interval=0.002)
    assert caught, f"worker 1 never ran a webhook task:\n{procs.log('w1')[-3000:]}"
    procs.signal("w1", signal.SIGKILL)  # stopped mid-transaction, it can have committed nothing more
    phase("worker 1 killed")
    # Its connection gone, PostgreSQL has rolled its transaction back.
    assert wait_until(lambda: not db.connected("unipost-w1"), WAIT)
    stranded = [
        int(args["args"][0])
        for path, status, _, workers, args in db.tasks()
        if status == "RUNNING" and workers == ["w1"] and path == WEBHOOK_TASK
    ]
    assert len(stranded) == 1, f"the kill left {stranded} webhook tasks running"
    stranded_results = db.rows("SELECT result FROM unipost_connect_webhookevent WHERE id = %s", stranded[0])
    assert stranded_results == [("received",)], "the killed task's event was applied after all"
    assert sorted(p.result(timeout=WAIT) for p in pressed) == [302] * len(chosen)
    phase("buttons pressed")

    # Reconcile fans out over the workers (worker 1 is still down, so worker 2 begins alone).
    out = procs.manage("unipost_connect_reconcile", "--enqueue", "--older-than", "0")
    match = re.search(r"Enqueued (\d+) sessions to reconcile", out)
    assert match, out
    enqueued = int(match.group(1))
    # At least every session no webhook can settle; at most all of them.
    assert SILENT + DENIED + (SESSIONS - len(plans)) <= enqueued <= SESSIONS, out
    phase("reconcile enqueued")
    start_worker("w1-restarted", "w1-restarted")
    assert wait_until(lambda: ready("w1-restarted"), WAIT), procs.log("w1-restarted")
    phase("worker 1 restarted")

    # Every delivery has ended; then each is POSTed once more, late.
    emitted = WITH_WEBHOOK + SILENT

    def deliveries_done() -> bool:
        sent = fake_get(fake_url, "/_fake/webhooks")
        return sent["emitted"] == emitted and sent["finished"] == sent["started"] == emitted

    assert wait_until(deliveries_done, WAIT, interval=0.1), fake_get(fake_url, "/_fake/webhooks")
    assert fake_get(fake_url, "/_fake/webhooks")["failed"] == 0
    late = list(pool.map(lambda d: relay.post(*d), list(relay.forwarded)))
    assert all(a.status == 200 for a in late)
    phase("deliveries and replays done")

    def drained() -> bool:
        for name in ("w2", "w1-restarted"):
            procs.alive(name)
        busy = db.value(
            "SELECT count(*) FROM django_tasks_database_dbtaskresult "
            "WHERE status = 'READY' OR (status = 'RUNNING' AND NOT worker_ids @> %s::jsonb)",
            json.dumps(["w1"]),
        )
        return busy == 0

    assert wait_until(drained, WAIT, interval=0.1), Counter((t[0], t[1]) for t in db.tasks())
    phase("tasks drained")

    # The replay: what the killed worker left received.
    out = procs.manage("unipost_connect_process_webhooks")
    assert f"Processed webhook events: {len(stranded)} applied; 0 failed." in out, out
    phase("replayed")

    # -- the audit
    tasks = db.tasks()
    by_kind = Counter((path, status) for path, status, *_ in tasks)
    assert by_kind[(WEBHOOK_TASK, "FAILED")] == by_kind[(RECONCILE_TASK, "FAILED")] == 0, by_kind
    running = [(path, workers) for path, status, _, workers, _ in tasks if status == "RUNNING"]
    assert running == [(WEBHOOK_TASK, ["w1"])], running  # the killed one, RUNNING for ever
    webhook_returns = Counter(
        r for path, status, r, *_ in tasks if path == WEBHOOK_TASK and status == "SUCCESSFUL"
    )
    reconcile_returns = Counter(r for path, status, r, *_ in tasks if path == RECONCILE_TASK)
    assert sum(reconcile_returns.values()) == enqueued, reconcile_returns

    # Webhooks: one event per distinct delivery, each applied once.
    assert len(relay.forwarded) == WITH_WEBHOOK and relay.swallowed == SILENT
    events = db.rows("SELECT id, result, detail FROM unipost_connect_webhookevent")
    results = Counter(result for _, result, _ in events)
    assert len(events) == WITH_WEBHOOK, results
    assert set(results) <= FINAL_RESULTS and results["applied"] == WITH_WEBHOOK, results
    assert sum(by_kind[(WEBHOOK_TASK, s)] for s in ("SUCCESSFUL", "RUNNING")) == WITH_WEBHOOK, by_kind
    assert webhook_returns == {"applied": WITH_WEBHOOK - len(stranded)}, webhook_returns  # + 1 by the replay
    answers_by_body: dict[bytes, list[Answer]] = {}
    for answer in relay.answers:
        answers_by_body.setdefault(answer.body, []).append(answer)
    assert len(answers_by_body) == WITH_WEBHOOK
    for got in answers_by_body.values():
        assert all(a.status == 200 and a.json is not None for a in got), got
        new = [a for a in got if a.json and not a.json["duplicate"]]
        # Stored once, and the request applied nothing: a worker did.
        assert [a.json for a in new] == [{"received": True, "duplicate": False, "result": "received"}], got

    # Sessions: the fake's state, with one signal per outcome.
    truth = dict(
        zip(
            [s.unipost_id for s in started],
            pool.map(lambda s: fake_get(fake_url, f"/v1/connect/sessions/{s.unipost_id}"), started),
            strict=True,
        )
    )
    assert len(fake_get(fake_url, "/_fake/sessions")) == SESSIONS  # no session made twice
    local = {
        usid: (str(pk), status, account)
        for pk, usid, status, account in db.rows(
            "SELECT id, unipost_session_id, status, managed_account_id FROM unipost_connect_connectsession"
        )
    }
    assert set(local) == set(truth)
    signals = Counter((kind, sid) for kind, sid in db.rows("SELECT kind, session_id FROM bench_signalrecord"))
    problems = []
    for session in started:
        pk, status, account = local[session.unipost_id]
        want = truth[session.unipost_id]
        expected = {"webhook": "completed", "silent": "completed", "deny": "cancelled", "pending": "pending"}
        assert want["status"] == expected[session.plan], (session, want)
        if status != want["status"] or account != (want.get("managed_account_id") or ""):
            problems.append(f"{session.plan} {session.unipost_id}: local {status} {account!r}, fake {want}")
        completions, ends = signals[("completed", pk)], signals[("ended:cancelled", pk)]
        if (completions, ends) != (status == "completed", status == "cancelled"):
            problems.append(
                f"{session.plan} {session.unipost_id} {status}: {completions} completion, {ends} ended"
            )
    assert sum(signals.values()) == WITH_WEBHOOK + SILENT + DENIED, signals
    assert not problems, "\n".join(problems[:20])

    # Accounts: the fake's, with the same owner and status.
    remote_accounts = {
        (a["id"], a["external_user_id"], a["status"]) for a in fake_get(fake_url, "/_fake/accounts")
    }
    local_accounts = set(
        db.rows("SELECT managed_account_id, external_user_id, status FROM unipost_connect_connectedaccount")
    )
    assert len(remote_accounts) == WITH_WEBHOOK + SILENT
    assert local_accounts == remote_accounts

    for name in ("gunicorn", "w2", "w1-restarted"):
        assert "Traceback" not in procs.log(name), f"{name}:\n{procs.log(name)[-3000:]}"
    # The fake's only traceback (if any): the killed worker's connection, gone under its
    # read or its answer.
    fake_log = procs.log("fake")
    gone = sum(fake_log.count(f"{error}: ") for error in ("ConnectionResetError", "BrokenPipeError"))
    assert fake_log.count("Traceback") == gone <= 1, fake_log[-3000:]
    phase("audited")
    print(
        f"\ntask workers: {phases}; enqueued {enqueued} reconciles, returns {dict(reconcile_returns)}; "
        f"webhook POSTs {len(relay.answers)} for {WITH_WEBHOOK} events; stranded event {stranded[0]} "
        f"applied by the replay"
    )
