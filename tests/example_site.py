"""The example project as a running process, for the end-to-end and browser tests.

``start_site`` migrates and seeds (``demo_setup``) a fresh database (SQLite, or a
throwaway PostgreSQL database when DATABASE_URL names a PostgreSQL server), starts
``manage.py runserver`` on a loopback port, waits until it answers, and registers its
clean-ups on the caller's ``finalizers`` list.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

EXAMPLE_PROJECT = Path(__file__).resolve().parents[1] / "example_project"
# Inherited settings that must not leak into the example project from the caller.
_SCRUB = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "ENV_FILE",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def stop(process: subprocess.Popen[Any]) -> None:
    """End ``process``: ask, then kill it if it has not ended within 5 seconds."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def cleanups() -> Iterator[list[Callable[[], None]]]:
    """A list to append clean-ups to; run in reverse order on leaving, even after a
    failure, each one whatever the others did (the first error is raised)."""
    done: list[Callable[[], None]] = []
    try:
        yield done
    finally:
        errors = []
        for finalize in reversed(done):
            try:
                finalize()
            except Exception as exc:  # keep cleaning up
                errors.append(exc)
        if errors:
            raise errors[0]


@dataclass
class Site:
    """The example project running under ``runserver``."""

    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    secrets: list[str] = field(default_factory=list)  # must never appear in the log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def database_url(tmp: Path, finalizers: list[Callable[[], None]]) -> str:
    """A fresh database for one example project: SQLite, or PostgreSQL when configured."""
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith("postgres"):
        return f"sqlite:///{tmp / 'db.sqlite3'}"
    import psycopg

    name = "unipost_example_" + secrets.token_hex(4)
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    finalizers.append(drop)
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


def site_env(tmp: Path, port: int, database_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("UNIPOST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="demo.settings",
        ENV_FILE=str(tmp / "absent.env"),  # a developer's example_project/.env stays out of it
        DATABASE_URL=database_url,
        UNIPOST_DEMO_ADDR=f"127.0.0.1:{port}",
        UNIPOST_FAKE_WEBHOOK_DELAY="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_site(tmp: Path, port: int, extra_env: dict[str, str], finalizers: list[Callable[[], None]]) -> Site:
    env = site_env(tmp, port, database_url(tmp, finalizers), extra_env)
    log_path = tmp / "site.log"
    log = open(log_path, "ab")
    finalizers.append(log.close)
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput", "-v", "0"], ["demo_setup"]):
        done = subprocess.run(
            manage + command, cwd=EXAMPLE_PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120
        )
        assert done.returncode == 0, f"manage.py {command[0]} failed:\n{log_path.read_text()}"
    process = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=EXAMPLE_PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    finalizers.append(partial(stop, process))
    site = Site(f"http://127.0.0.1:{port}", log_path, process)

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"runserver exited with {process.returncode}:\n{site.tail()}")
        try:
            return requests.get(site.base_url + "/login/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    if not wait_until(answers, timeout=20):
        pytest.fail(f"runserver did not answer on {site.base_url} within 20 s:\n{site.tail()}")
    return site
