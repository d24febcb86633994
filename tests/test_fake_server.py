"""The standalone fake UniPost server, over real HTTP on loopback, through our client."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from unipost_connect.client import UniPostClient
from unipost_connect.errors import (
    AuthenticationError,
    NotFoundError,
    PlanLimitError,
    RateLimitedError,
    UniPostConnectionError,
    UniPostError,
    UniPostValidationError,
)
from unipost_connect.redaction import redact_state
from unipost_connect.testing import FakeUniPost, build_webhook
from unipost_connect.testing.delivery import DELIVERY_PAUSES, WebhookSender, deliver_webhook
from unipost_connect.testing.server import FakeUniPostServer

_real_sleep = time.sleep  # tests/conftest.py makes time.sleep a no-op during tests

KEY = "up_test_server_key"
SECRET = "whsec_server_secret"


@pytest.fixture
def fake() -> FakeUniPost:  # overrides the responses-backed fixture: real sockets here
    return FakeUniPost(api_key=KEY, webhook_secret=SECRET)


@pytest.fixture
def server(fake: FakeUniPost) -> Iterator[FakeUniPostServer]:
    with FakeUniPostServer(fake) as running:
        yield running


@pytest.fixture
def client(server: FakeUniPostServer) -> UniPostClient:
    return UniPostClient(KEY, server.base_url, timeout=(2, 5), sleep=lambda seconds: None)


def _create(client: UniPostClient, user: str = "42", **kwargs: Any) -> Any:
    return client.create_session(platform="linkedin", external_user_id=user, **kwargs)


def test_create_and_get_over_http(
    client: UniPostClient, fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    created = _create(client, return_url="https://site.test/back/")
    assert created.status == "pending"
    assert str(uuid.UUID(created.id)) == created.id  # UUIDs, as on the live server
    assert created.url.startswith(server.base_url + "/connect/linkedin?session=")
    assert created.request_id == fake.request_ids[-1]
    read = client.get_session(created.id)
    assert (read.id, read.status, read.url) == (created.id, "pending", created.url)
    assert [(r.method, r.status, r.authorized) for r in server.log] == [
        ("POST", 201, True),
        ("GET", 200, True),
    ]


def test_hosted_page_approve_redirects_back_and_completes(
    client: UniPostClient, fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    created = _create(client, return_url="https://site.test/back/?ref=1")
    browser = requests.Session()
    page = browser.get(created.url)
    assert page.status_code == 200
    assert "Approve" in page.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(created.url).query).items()}
    answer = browser.post(
        server.base_url + "/connect/linkedin", data={**query, "action": "approve"}, allow_redirects=False
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://site.test/back/?ref=1&connect_status=success"
    done = client.get_session(created.id)
    assert done.status == "completed"
    assert done.managed_account_id == fake.sessions[created.id].managed_account_id
    assert done.managed_account_id in fake.accounts
    forged = browser.post(
        server.base_url + "/connect/linkedin",
        data={"session": created.id, "state": "guess", "action": "approve"},
        allow_redirects=False,
    )
    assert forged.status_code == 403


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (402, "PLAN_PLATFORM_NOT_ALLOWED", PlanLimitError),
        (422, "VALIDATION_ERROR", UniPostValidationError),
        (500, "INTERNAL_ERROR", Exception),
    ],
)
def test_error_envelopes_over_http(
    client: UniPostClient, fake: FakeUniPost, status: int, code: str, error_class: type[Exception]
) -> None:
    fake.fail_next("create", status, code=code, message="nope")
    with pytest.raises(error_class) as caught:
        _create(client)
    error: Any = caught.value
    assert (error.status, error.code, error.message) == (status, code, "nope")
    assert error.request_id == fake.request_ids[-1]


def test_wrong_key_is_401(server: FakeUniPostServer) -> None:
    other = UniPostClient("up_test_other", server.base_url, sleep=lambda seconds: None)
    with pytest.raises(AuthenticationError) as caught:
        _create(other)
    assert caught.value.status == 401
    assert server.log[-1].authorized is False


def test_unknown_session_is_404(client: UniPostClient) -> None:
    with pytest.raises(NotFoundError):
        client.get_session(str(uuid.uuid4()))


def test_unknown_route_over_http_is_a_plain_text_404(server: FakeUniPostServer) -> None:
    answer = requests.get(
        server.base_url + "/v2/connect/sessions", headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.text == "404 page not found\n"


def test_repeated_delete_over_http_answers_200_twice(
    client: UniPostClient, fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    created = _create(client)
    fake.approve(created.id)
    account_id = fake.sessions[created.id].managed_account_id
    url = f"{server.base_url}/v1/accounts/{account_id}"
    answers = [requests.delete(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5) for _ in range(2)]
    assert [(a.status_code, a.json()["data"]) for a in answers] == [(200, {"disconnected": True})] * 2
    assert [d.event for d in fake.outbox] == ["account.connected", "account.disconnected"]


@pytest.mark.parametrize(
    ("action", "status"), [("account_owned", 409), ("plan_limit", 402), ("expired", 410)]
)
def test_hosted_page_failure_over_http_stays_on_unipost(
    client: UniPostClient, server: FakeUniPostServer, action: str, status: int
) -> None:
    created = _create(client, return_url="https://site.test/back/")
    query = {k: v[0] for k, v in parse_qs(urlsplit(created.url).query).items()}
    answer = requests.post(
        server.base_url + "/connect/linkedin",
        data={**query, "action": action},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == status
    assert "Location" not in answer.headers
    assert "text/html" in answer.headers["Content-Type"]


def test_rate_limit_carries_retry_after(client: UniPostClient, fake: FakeUniPost) -> None:
    fake.rate_limit_next("create", retry_after=60)
    with pytest.raises(RateLimitedError) as caught:
        _create(client)
    assert caught.value.retry_after == 60


def test_html_502_from_a_proxy(client: UniPostClient, fake: FakeUniPost) -> None:
    fake.fail_next(
        "create", 502, body="<html><body>Bad gateway</body></html>", headers={"Content-Type": "text/html"}
    )
    with pytest.raises(UniPostError) as caught:
        _create(client)
    assert (caught.value.status, caught.value.code) == (502, "HTTP_502")


def test_keep_alive_reuses_one_connection(client: UniPostClient, server: FakeUniPostServer) -> None:
    for number in range(25):
        created = _create(client, user=str(number))
        client.get_session(created.id)
    assert len(server.log) == 50
    assert server.connections_accepted <= 2


def test_plain_requests_post_opens_a_connection_per_call(server: FakeUniPostServer) -> None:
    """The baseline the connection-reuse benchmark compares against."""
    for number in range(5):
        requests.post(
            server.base_url + "/v1/connect/sessions",
            json={"platform": "linkedin", "external_user_id": str(number)},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        ).raise_for_status()
    assert server.connections_accepted == 5


def test_injected_exception_resets_the_connection(
    client: UniPostClient, fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    _create(client)  # a kept-alive connection exists
    fake.fail_next("create", exception=requests.ConnectionError("injected"))
    with pytest.raises(UniPostConnectionError) as caught:
        _create(client)
    assert caught.value.code == "CONNECTION_ERROR"
    assert server.log[-1].status is None
    # The POST was not resent (no idempotency key), and the next call works on a new socket.
    assert [r.method for r in server.log] == ["POST", "POST"]
    assert _create(client).status == "pending"
    assert server.connections_accepted == 2


def test_reset_on_read_is_retried_then_reported(
    client: UniPostClient, fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    created = _create(client)
    fake.fail_next("get", exception=ConnectionResetError(), times=1)
    assert client.get_session(created.id).status == "pending"  # retried on a new connection
    fake.fail_next("get", exception=ConnectionResetError(), times=3)
    with pytest.raises(UniPostConnectionError):
        client.get_session(created.id)


def test_chunked_request_body(server: FakeUniPostServer) -> None:
    body = json.dumps({"platform": "bluesky", "external_user_id": "9"}).encode()
    answer = requests.post(
        server.base_url + "/v1/connect/sessions",
        data=iter([body[:10], body[10:]]),  # a generator is sent chunked
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["data"]["platform"] == "bluesky"


def test_latency_is_added(client: UniPostClient, fake: FakeUniPost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", _real_sleep)
    fake.latency = 0.05
    started = time.monotonic()
    _create(client)
    assert time.monotonic() - started >= 0.05


class _Receiver:
    """A tiny webhook endpoint on loopback that records what it receives."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    receiver.arrived.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/unipost/webhook/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> _Receiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextmanager
def _delivering(
    fake: FakeUniPost, answers: list[int], pauses: tuple[float, ...] = DELIVERY_PAUSES
) -> Iterator[tuple[FakeUniPostServer, WebhookSender, _Receiver]]:
    """A running server that delivers the fake's webhooks at once to a receiver."""
    with _Receiver(answers) as receiver:
        server = FakeUniPostServer(fake, webhook_url=receiver.url, webhook_delay=0)
        assert server.webhooks is not None
        server.webhooks.pauses = pauses
        with server:
            yield server, server.webhooks, receiver


def test_approve_delivers_a_signed_webhook_with_retries(fake: FakeUniPost) -> None:
    # The first attempt fails, the second succeeds.
    with _delivering(fake, answers=[500], pauses=(0.01,)) as (server, webhooks, receiver):
        client = UniPostClient(KEY, server.base_url)
        created = _create(client, user="u-7")
        fake.approve(created.id)
        assert receiver.arrived.wait(5)
        assert webhooks.wait(5)
    assert len(receiver.received) == 2
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-UniPost-Signature"] == expected
    assert headers["X-UniPost-Event"] == "account.connected"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["data"]["external_user_id"] == "u-7"
    assert list(payload) == ["event", "timestamp", "data"]  # account.* events carry no event_id
    [result] = webhooks.results
    assert (result.ok, result.attempts, result.status, result.event_id) == (True, 2, 200, "")


def test_token_refresh_failure_is_delivered_over_http(fake: FakeUniPost) -> None:
    with _delivering(fake, answers=[]) as (server, webhooks, receiver):
        created = _create(UniPostClient(KEY, server.base_url), user="u-8")
        fake.approve(created.id)
        account_id = fake.sessions[created.id].managed_account_id or ""
        fake.fail_token_refresh(account_id, reason="decrypt_failed")
        assert webhooks.wait(5)
    # Each delivery runs in its own thread: they may arrive in either order.
    payloads = {p["event"]: p for p in (json.loads(body) for _, body in receiver.received)}
    assert sorted(payloads) == ["account.connected", "account.disconnected"]
    assert payloads["account.disconnected"]["data"]["reason"] == "decrypt_failed"
    assert payloads["account.disconnected"]["data"]["external_user_id"] == "u-8"


def _control(server: FakeUniPostServer, method: str, path: str, key: str = KEY, **kwargs: Any) -> Any:
    return requests.request(
        method, server.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=5, **kwargs
    )


def test_control_fail_refresh_over_http(
    client: UniPostClient, fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    """The fake-only route behind the load run's token-refresh failures."""
    created = _create(client, user="u-9")
    fake.approve(created.id)
    account_id = fake.sessions[created.id].managed_account_id or ""
    path = f"/_fake/accounts/{account_id}/fail-refresh"
    assert _control(server, "POST", path, key="up_test_other").status_code == 401
    assert _control(server, "POST", path, data={"reason": "bogus"}).status_code == 422
    assert fake.accounts[account_id].status == "active"  # refused calls change nothing
    answer = _control(server, "POST", path, json={"reason": "decrypt_failed"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {
        "account": fake.accounts[account_id].as_json(),
        "event": "account.disconnected",
    }
    assert fake.accounts[account_id].status == "reconnect_required"
    assert fake.outbox[-1].payload["data"]["reason"] == "decrypt_failed"
    again = _control(server, "POST", path)  # no longer active: refused, no second webhook
    assert again.status_code == 409
    assert len(fake.outbox) == 2
    assert _control(server, "POST", f"/_fake/accounts/{uuid.uuid4()}/fail-refresh").status_code == 404
    # A reconnect brings the same account back; the control routes never reach the API's log.
    second = _create(client, user="u-9")
    fake.approve(second.id)
    assert fake.sessions[second.id].managed_account_id == account_id
    assert fake.accounts[account_id].status == "active"
    assert not any(path.startswith("/_fake/") for _, path in fake.requests)


def test_control_lists_accounts_sessions_and_webhooks(
    client: UniPostClient, fake: FakeUniPost, server: FakeUniPostServer
) -> None:
    first = _create(client, user="u-1")
    _create(client, user="u-2")
    fake.approve(first.id)
    account_id = fake.sessions[first.id].managed_account_id
    fake.disconnect(account_id or "")
    accounts = _control(server, "GET", "/_fake/accounts").json()["data"]
    assert [(a["id"], a["status"]) for a in accounts] == [(account_id, "disconnected")]
    sessions = _control(server, "GET", "/_fake/sessions", params={"external_user_id": "u-1"}).json()
    assert [(s["id"], s["status"]) for s in sessions["data"]] == [(first.id, "completed")]
    assert len(_control(server, "GET", "/_fake/sessions").json()["data"]) == 2
    assert _control(server, "GET", "/_fake/sessions", params={"platform": "twitter"}).json()["data"] == []
    # No webhook_url: the fake emitted two events and delivered none.
    assert _control(server, "GET", "/_fake/webhooks").json()["data"] == {"emitted": 2}
    assert _control(server, "GET", "/_fake/nothing").status_code == 404
    assert _control(server, "POST", "/_fake/accounts").status_code == 404  # reads are GET only
    assert _control(server, "GET", "/_fake/accounts", key="").status_code == 401


def test_control_webhooks_counts_deliveries(fake: FakeUniPost) -> None:
    with _delivering(fake, answers=[]) as (server, webhooks, _):
        created = _create(UniPostClient(KEY, server.base_url), user="u-3")
        fake.approve(created.id)
        assert webhooks.wait(5)
        summary = _control(server, "GET", "/_fake/webhooks").json()["data"]
    assert summary == {"emitted": 1, "started": 1, "finished": 1, "delivered": 1, "failed": 0, "in_flight": 0}


def test_delivery_policy_is_off_without_a_url_or_with_a_negative_delay() -> None:
    sent = build_webhook("account.connected", {"social_account_id": "sa_1"}, SECRET)
    assert WebhookSender("").send(sent) is False
    off = WebhookSender("http://127.0.0.1:9/unipost/webhook/", delay=-1)
    assert off.send(sent) is False
    assert off.wait(1)
    assert off.summary() == {"started": 0, "finished": 0, "delivered": 0, "failed": 0, "in_flight": 0}


def test_delivery_gives_up_after_three_attempts_with_the_pauses_between() -> None:
    pauses: list[float] = []
    sent = build_webhook("account.connected", {"social_account_id": "sa_1"}, SECRET)
    with _Receiver(answers=[500, 502, 503]) as receiver:
        result = deliver_webhook(sent, receiver.url, pauses=(0.5, 2.0), sleep=pauses.append)
    assert (result.ok, result.attempts, result.status, result.error) == (False, 3, 503, "")
    assert pauses == [0.5, 2.0]  # none after the last attempt
    assert len(receiver.received) == 3


def test_delivery_reports_a_transport_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/unipost/webhook/"
    sent = build_webhook("account.connected", {"social_account_id": "sa_1"}, SECRET, event_id="ev_1")
    result = deliver_webhook(sent, url, attempts=2, pauses=(), sleep=lambda seconds: None)
    assert (result.ok, result.attempts, result.status, result.error) == (False, 2, None, "ConnectionError")
    assert result.event_id == "ev_1"


def test_sender_counts_a_failed_delivery_and_takes_a_url_per_call() -> None:
    sender = WebhookSender(delay=0, attempts=1)  # no URL of its own: each send names one
    with _Receiver(answers=[500]) as receiver:
        assert sender.send(build_webhook("account.connected", {}, SECRET), receiver.url) is True
        assert sender.wait(5)
    assert sender.summary() == {"started": 1, "finished": 1, "delivered": 0, "failed": 1, "in_flight": 0}
    [result] = sender.results
    assert (result.url, result.status) == (receiver.url, 500)


def test_stop_closes_kept_alive_connections(fake: FakeUniPost) -> None:
    server = FakeUniPostServer(fake).start()
    client = UniPostClient(KEY, server.base_url, max_retries=0)
    _create(client)
    server.stop()
    with pytest.raises(UniPostConnectionError):
        _create(client)


def test_redact_hides_the_hosted_state() -> None:
    """The server's request log goes through the one redaction helper."""
    line = '"GET /connect/x?session=cs_1&state=s3cr3t-Value HTTP/1.1" 200'
    assert redact_state(line) == '"GET /connect/x?session=cs_1&state=[redacted] HTTP/1.1" 200'


def test_verbose_request_log_redacts_the_hosted_state(
    fake: FakeUniPost, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeUniPostServer(fake, verbose=True) as server:
        created = _create(UniPostClient(KEY, server.base_url))
        requests.get(created.url, timeout=5).raise_for_status()
    logged = capsys.readouterr().err
    state = parse_qs(urlsplit(created.url).query)["state"][0]
    assert "GET /connect/linkedin?session=" in logged
    assert "state=[redacted]" in logged
    assert state not in logged and KEY not in logged


@pytest.mark.e2e
def test_command_line_server() -> None:
    """``python -m unipost_connect.testing.server`` serves until SIGTERM and never prints the key."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unipost_connect.testing.server",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--webhook-secret",
            SECRET,
            "--latency-ms",
            "0",
            "--verbose",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert match, first
        client = UniPostClient(KEY, match.group(1))
        created = _create(client)
        requests.get(created.url, timeout=5).raise_for_status()
        assert client.get_session(created.id).status == "pending"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    output = first + out + err
    assert "POST /v1/connect/sessions" in output  # --verbose logs requests...
    assert KEY not in output and SECRET not in output
    state = parse_qs(urlsplit(created.url).query)["state"][0]
    assert state not in output  # ...with the hosted page's state redacted
