"""``python -m unipost_connect.testing.server``: its ``--help`` names every default, and
what it prints on start is true: the address answers, the key is accepted, webhooks go
where it says, signed with the secret it prints, and its ``export`` line works."""

from __future__ import annotations

import hashlib
import hmac
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from unipost_connect.client import UniPostClient
from unipost_connect.errors import AuthenticationError
from unipost_connect.testing import FakeUniPost
from unipost_connect.testing.delivery import DELIVERY_DELAY
from unipost_connect.testing.fake import DEFAULT_API_KEY, DEFAULT_PROFILES, DEFAULT_WEBHOOK_SECRET
from unipost_connect.testing.server import FakeUniPostServer, _parser, banner

REPO = Path(__file__).resolve().parents[1]
LAST_LINE = "Ctrl-C stops it."


def _flat(text: str) -> str:
    """``text`` with its line wrapping undone (argparse wraps help to the terminal)."""
    return " ".join(text.split())


def test_every_option_names_its_default_in_help() -> None:
    parser = _parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} >= {"host", "port", "api_key", "webhook_secret", "webhook_url"}
    for action in options:
        assert "(default: " in (action.help or ""), f"{action.option_strings} does not say its default"
    shown = _flat(parser.format_help())
    for expected in (
        "(default: 127.0.0.1)",
        "(default: 8001)",
        f"(default: {DEFAULT_API_KEY})",
        f"(default: {DEFAULT_WEBHOOK_SECRET})",
        "(default: none, so no webhooks are sent)",
        f"(default: {DELIVERY_DELAY})",
        "(default: 0.0)",
        f"(default: {' '.join(DEFAULT_PROFILES)})",
        "(default: none is sent)",
    ):
        assert expected in shown, expected


def test_the_command_prints_its_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "unipost_connect.testing.server", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert f"(default: {DEFAULT_API_KEY})" in _flat(done.stdout)
    assert "prints its base URL, the API key it accepts, the webhook secret" in _flat(done.stdout)


@contextmanager
def _command(*args: str) -> Iterator[str]:
    """The command running on a free port; yields what it printed on start, then stops it
    (SIGTERM) and checks that it ended cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "unipost_connect.testing.server", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != LAST_LINE:
            line = process.stdout.readline()
            if not line:
                errors = process.stderr.read() if process.stderr else ""
                pytest.fail("the command ended before it was ready:\n" + "\n".join(lines) + errors)
            lines.append(line.rstrip("\n"))
        yield "\n".join(lines)
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert process.returncode == 0


def _exports(printed: str) -> dict[str, str]:
    (line,) = (line.strip() for line in printed.splitlines() if line.strip().startswith("export "))
    return dict(assignment.split("=", 1) for assignment in shlex.split(line)[1:])


def test_with_the_defaults_it_prints_the_key_the_secret_and_that_it_sends_no_webhooks() -> None:
    with _command() as printed:
        match = re.match(r"Fake UniPost listening on (http://127\.0\.0\.1:\d+)\n", printed)
        assert match, printed
        base_url = match[1]
        assert f"API key:         {DEFAULT_API_KEY}" in printed
        assert f"webhook secret:  {DEFAULT_WEBHOOK_SECRET}" in printed
        assert "webhooks:        none sent (--webhook-url http://<your site>/unipost/webhook/" in printed
        assert f"profiles:        {' '.join(DEFAULT_PROFILES)}" in printed
        env = _exports(printed)
        assert env == {
            "UNIPOST_API_BASE_URL": base_url,
            "UNIPOST_API_KEY": DEFAULT_API_KEY,
            "UNIPOST_WEBHOOK_SECRET": DEFAULT_WEBHOOK_SECRET,
        }
        # What it printed is what it accepts: the export line's key and URL work.
        client = UniPostClient(env["UNIPOST_API_KEY"], env["UNIPOST_API_BASE_URL"])
        created = client.create_session(platform="linkedin", external_user_id="7")
        assert created.status == "pending" and created.url.startswith(base_url + "/connect/")
        with pytest.raises(AuthenticationError):
            UniPostClient("up_test_other", base_url).create_session(platform="linkedin", external_user_id="7")


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]
    arrived: threading.Event

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_with_a_webhook_url_it_says_where_webhooks_go_and_they_go_there_signed() -> None:
    handler = type("Receiver", (_Receiver,), {"received": [], "arrived": threading.Event()})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{receiver.server_address[1]}/unipost/webhook/"
    try:
        options = ("--webhook-url", target, "--webhook-delay", "0", "--hosted-coop", "same-origin")
        with _command(*options) as printed:
            assert f"webhooks:        POSTed to {target}, 0 s after each event" in printed
            assert "hosted page:     Cross-Origin-Opener-Policy: same-origin" in printed
            env = _exports(printed)
            client = UniPostClient(env["UNIPOST_API_KEY"], env["UNIPOST_API_BASE_URL"])
            created = client.create_session(platform="linkedin", external_user_id="7")
            hosted = requests.get(created.url, timeout=5)
            assert hosted.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            fields = dict(re.findall(r"name='(session|state)' value='([^']*)'", hosted.text))
            approved = requests.post(created.url, data={**fields, "action": "approve"}, timeout=5)
            assert approved.status_code == 200, approved.text
            assert handler.arrived.wait(10), "no webhook arrived"
    finally:
        receiver.shutdown()
        receiver.server_close()
    headers, body = handler.received[0]
    assert headers["X-UniPost-Event"] == "account.connected"
    secret = env["UNIPOST_WEBHOOK_SECRET"].encode()
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-UniPost-Signature"], expected)


def test_a_key_or_secret_given_on_the_command_line_is_not_echoed() -> None:
    fake = FakeUniPost(api_key="up_test_given_key", webhook_secret="whsec_given_secret")
    server = FakeUniPostServer(fake, "127.0.0.1", 0)
    server.bind()
    try:
        printed = banner(server)
    finally:
        server.stop()
    assert "up_test_given_key" not in printed and "whsec_given_secret" not in printed
    assert "API key:         (the one given with --api-key; not echoed)" in printed
    assert "webhook secret:  (the one given with --webhook-secret; not echoed)" in printed
    env = _exports(printed)
    assert env["UNIPOST_API_KEY"] == "<your --api-key>"
    assert env["UNIPOST_WEBHOOK_SECRET"] == "<your --webhook-secret>"
    assert "hosted page:" not in printed  # no COOP asked for
