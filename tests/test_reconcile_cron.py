"""The reconcile command as cron runs it: its own process, exit codes, Ctrl-C, no tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from unipost_connect.client import UniPostClient
from unipost_connect.testing import FakeUniPost
from unipost_connect.testing.server import FakeUniPostServer

pytestmark = pytest.mark.e2e  # starts real processes

ROOT = Path(__file__).resolve().parents[1]
KEY = "up_test_cron_key"
SETTINGS = """\
from tests.settings import *  # noqa: F403

DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
UNIPOST_CONNECT = {{**UNIPOST_CONNECT, "API_KEY": {key!r}, "API_BASE_URL": {url!r}, "MAX_RETRIES": 0}}
"""
SEED = """\
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from unipost_connect.models import ConnectSession
user = get_user_model().objects.create_user("cron")
for n, remote_id in enumerate({ids!r}):
    ConnectSession.objects.create(
        user=user, platform="linkedin", external_user_id="42", unipost_session_id=remote_id,
        created_at=timezone.now() - timedelta(minutes=20 - n / 10),
    )
"""


@pytest.fixture
def fake() -> FakeUniPost:  # real sockets here, not the responses-backed fixture
    return FakeUniPost(api_key=KEY)


@pytest.fixture
def server(fake: FakeUniPost) -> Iterator[FakeUniPostServer]:
    with FakeUniPostServer(fake) as running:
        yield running


@pytest.fixture
def site(tmp_path: Path, server: FakeUniPostServer) -> dict[str, str]:
    """The environment of a site whose settings point at the fake server, migrated."""
    settings = SETTINGS.format(db=str(tmp_path / "db.sqlite3"), key=KEY, url=server.base_url)
    (tmp_path / "cron_settings.py").write_text(settings)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DJANGO_SETTINGS_MODULE="cron_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
    )
    django(env, "migrate", "-v", "0").check_returncode()
    return env


def django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def seed(env: dict[str, str], fake: FakeUniPost, server: FakeUniPostServer, count: int) -> list[str]:
    """``count`` pending sessions, here and at the fake, each approved by its user."""
    client = UniPostClient(KEY, server.base_url)
    ids = [client.create_session(platform="linkedin", external_user_id="42").id for _ in range(count)]
    for remote_id in ids:
        fake.approve(remote_id)
    django(env, "shell", "-c", SEED.format(ids=ids)).check_returncode()
    return ids


def test_a_rejected_key_exits_non_zero_saying_what_to_fix(
    site: dict[str, str], fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    seed(site, fake, server, 3)
    fake.requests.clear()
    fake.api_key = "up_test_rotated"
    run = django(site, "unipost_connect_reconcile")
    assert run.returncode == 1
    assert "UNIPOST_CONNECT['API_KEY']" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("Reconciled: 1 checked, ")
    assert len(fake.requests) == 1


def test_a_full_run_exits_zero(site: dict[str, str], fake: FakeUniPost, server: FakeUniPostServer) -> None:
    seed(site, fake, server, 2)
    run = django(site, "unipost_connect_reconcile")
    assert (run.returncode, run.stderr) == (0, "")
    assert "Reconciled: 2 checked, 2 completed, " in run.stdout


def test_ctrl_c_prints_the_summary_without_a_traceback_and_exits_130(
    site: dict[str, str], fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    seed(site, fake, server, 5)
    # The third read is held at the fake until the test has pressed Ctrl-C.
    held, release = threading.Event(), threading.Event()
    real_handle = fake.handle
    reads = 0

    def handle(method: str, path: str, **kwargs: Any) -> Any:
        nonlocal reads
        if method == "GET":
            reads += 1
            if reads == 3:
                held.set()
                release.wait(30)
        return real_handle(method, path, **kwargs)

    fake.handle = handle  # type: ignore[method-assign]
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "unipost_connect_reconcile"],
        env=site,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.wait(30), "the command never reached its third read"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert "Traceback" not in err
    assert "Interrupted" in err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(
        "Reconciled: 2 checked, 2 completed, 0 expired, 0 cancelled, 0 unchanged, 0 unknown, 0 errors in "
    )
