"""Shared helpers for the benches: statistics, tables, processes, databases, load.

Everything here talks only to loopback (127.0.0.1). Every process a bench starts is
started in its own session and stopped (SIGTERM, then SIGKILL) by its own id.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
API_KEY = "up_test_bench"
WEBHOOK_SECRET = "whsec_bench"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- statistics and tables ------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def spread(values: Sequence[float]) -> str:
    """min-max of a small set of per-round figures."""
    if not values:
        return "-"
    return f"{min(values):.3g}-{max(values):.3g}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    rows = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [title] if title else []
    out.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    out.append(line)
    out.extend(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


# -- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    args: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None, stdout: Any = None
) -> subprocess.Popen[Any]:
    """Start a process in its own session (so its children can be stopped with it)."""
    out = stdout if stdout is not None else (open(log, "ab") if log else subprocess.DEVNULL)
    return subprocess.Popen(
        list(args),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT if log or stdout is not None else subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def start_fake(
    *args: str,
    latency_ms: float = 0.0,
    module: str = "unipost_connect.testing.server",
    log: Path | None = None,
) -> tuple[subprocess.Popen[Any], str]:
    """The standalone fake UniPost on a free loopback port; returns (process, base_url)."""
    argv = [
        PYTHON,
        "-m",
        module,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--api-key",
        API_KEY,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--latency-ms",
        str(latency_ms),
        *args,
    ]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(log, "ab") if log else subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on (http://\S+?)(,|\s|$)", line)
        if match:
            return proc, match.group(1)
    stop(proc)
    raise RuntimeError(f"fake UniPost did not start: {' '.join(argv)}")


def wait_http(url: str, timeout: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout}s ({last})")


def start_gunicorn(
    app: str,
    port: int,
    *,
    workers: int,
    worker_class: str = "sync",
    threads: int = 1,
    env: dict[str, str],
    logdir: Path,
    ready_path: str,
) -> subprocess.Popen[Any]:
    args = [
        GUNICORN,
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--chdir",
        str(ROOT),
        "--access-logfile",
        str(logdir / "access.log"),
        "--access-logformat",
        "%(s)s %(m)s %(U)s %(D)s",
        "--error-logfile",
        str(logdir / "gunicorn.log"),
        "--log-level",
        "warning",
        "--backlog",
        "256",
        "--timeout",
        "30",
        "--graceful-timeout",
        "5",
    ]
    proc = spawn(args, env=env, log=logdir / "gunicorn.out")
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}")
    except Exception:
        stop(proc)
        raise
    return proc


def access_log_statuses(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            status = line.split(" ", 1)[0]
            counts[status] = counts.get(status, 0) + 1
    return counts


def rss_mb_of(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


# -- databases ------------------------------------------------------------------------


def require_postgres(bench: str) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit(
            f"{bench} needs PostgreSQL: run it as  scripts/with-postgres .venv/bin/python bench/{bench}.py"
        )
    return url


@contextlib.contextmanager
def postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """A fresh database on the server of ``server_url`` (dropped afterwards); yields its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(settings_module: str = "bench.settings", **env: str) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()


@contextlib.contextmanager
def test_database() -> Iterator[None]:
    """A fresh test database (SQLite in memory, or test_<name> on PostgreSQL)."""
    from django.db import connection

    old = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


# -- a bounded load generator ------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    seconds: float
    status: int  # 0: transport error


def run_load(
    jobs: Iterable[Any],
    worker: Callable[[Any, Any], list[Sample]],
    *,
    threads: int,
    time_cap: float,
    session_factory: Callable[[], Any] | None = None,
) -> tuple[list[Sample], float]:
    """Hand ``jobs`` to ``threads`` threads (each with its own requests.Session) until
    they run out or ``time_cap`` seconds pass. Returns the samples and the wall time."""
    import requests

    source = iter(jobs)
    lock = threading.Lock()
    samples: list[Sample] = []
    deadline = time.monotonic() + time_cap

    def run() -> None:
        http = session_factory() if session_factory else requests.Session()
        mine: list[Sample] = []
        try:
            while time.monotonic() < deadline:
                with lock:
                    job = next(source, None)
                if job is None:
                    break
                mine.extend(worker(http, job))
        finally:
            http.close()
            with lock:
                samples.extend(mine)

    started = time.monotonic()
    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(time_cap + 60)
    return samples, time.monotonic() - started


def timed_post(http: Any, kind: str, url: str, **kwargs: Any) -> tuple[Sample, Any]:
    import requests

    started = time.perf_counter()
    try:
        answer = http.post(url, timeout=10, **kwargs)
        status = answer.status_code
    except requests.RequestException:
        answer, status = None, 0
    return Sample(kind, time.perf_counter() - started, status), answer


# -- the machine ----------------------------------------------------------------------------

_LOAD_AT_IMPORT = os.getloadavg()[0]


def machine_note() -> str:
    """The 1-minute load average when the bench started and now (other work skews figures)."""
    return (
        f"machine: {os.cpu_count()} CPUs, 1-min load average {_LOAD_AT_IMPORT:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
