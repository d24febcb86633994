"""Every upstream fault of issue 5, at every place that talks to UniPost.

One table (:data:`FAULTS`) is run against the three callers: the start view (create),
the return view (read) and the reconcile command (read, two sessions, only the first
faulted). For each: no 5xx, a clear message of our own (never UniPost's text), the
error kept on the row, and the exact calls and waits the retry policy asks for.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO
from typing import Any, NamedTuple

import pytest
import requests
from django.contrib import messages
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone

from tests.faults import body_reset_after, refused
from unipost_connect.client import get_client
from unipost_connect.management.commands import unipost_connect_reconcile as command_module
from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

UNAVAILABLE = "The connection service is not available right now. Please try again in a few minutes."
RATE_LIMITED = "Too many connection attempts right now. Please wait a minute and try again."
CONNECTED = "Your LinkedIn account is connected."
NOT_FINISHED = (
    "Your LinkedIn connection is not finished yet. If you completed it, it will appear here shortly."
)
RAW_TEXT = "shard 7 exploded (UniPost's own words)"  # must never reach a user
HOSTED = "https://app.unipost.test/connect/linkedin?session=cs_fault&state=s3cret"

# -- building the faults ------------------------------------------------------------------------

Session = dict[str, Any]
BodyFor = Callable[[Session], Any]  # the remote session as UniPost would send it -> the body sent


def reset_mid_body(session: Session) -> io.BufferedReader:
    # A stream, not bytes: responses serves it as the body, so the reset happens while
    # the client reads the answer (after the status line and headers came).
    return body_reset_after(json.dumps({"data": session}).encode()[:25])


def enveloped(change: Callable[[Session], Any]) -> BodyFor:
    return lambda session: json.dumps({"data": change(dict(session))}).encode()


def without(name: str) -> BodyFor:
    return enveloped(lambda s: {k: v for k, v in s.items() if k != name})


def with_extras(session: Session) -> bytes:
    data = {**session, "scopes_granted": ["w_member_social"], "risk": {"score": 0.1}, "v2_id": 7}
    return json.dumps({"data": data, "request_id": "req_extra", "api_version": "2099-01-01"}).encode()


class Tries(NamedTuple):
    """HTTP calls one read/create makes under a persistent fault, and the waits asked for."""

    calls: int
    sleeps: tuple[float, ...] = ()


ONCE = Tries(1)
RETRIED = Tries(3, (0.25, 0.5))  # max_retries=2, backoff 0.25 doubling
# The command retries a 429 itself (3 reads, each retried by the client), then stops the run.
RECONCILE_429_BACKOFF = Tries(9, (0.25, 0.5, 1.0, 0.25, 0.5, 1.0, 0.25, 0.5))


@dataclass(frozen=True)
class Fault:
    """One fault, how to inject it, and what each place must make of it.

    ``status=None`` is the endpoint's success status (201 create, 200 read) with a bad body.
    ``read`` is the outcome of a read of a session UniPost has completed: ``error`` (row
    unchanged, error kept), ``completed``, or ``pending`` (unknown status: left alone).
    """

    id: str
    create: Tries
    read: Tries
    reconcile: Tries | None = None  # None: as ``read``
    status: int | None = None
    body: BodyFor | None = None
    headers: dict[str, str] = field(default_factory=dict)
    exception: Callable[[], BaseException] | None = None
    envelope: bool = False  # an error envelope carrying RAW_TEXT
    code: str = "INVALID_RESPONSE"
    message: str = UNAVAILABLE
    creates: bool = False  # the start view still redirects to the hosted page
    read_outcome: str = "error"

    @property
    def has_request_id(self) -> bool:
        # Every answer the fake sends carries X-Request-Id; a transport failure (even a
        # reset after the headers came) leaves no usable answer, so no request id.
        return self.code not in ("TIMEOUT", "CONNECTION_ERROR")

    @property
    def stops_reconcile(self) -> bool:
        return self.status == 429

    def inject(self, fake: FakeUniPost, endpoint: str, session: Session, calls: int) -> None:
        """Fail the next ``calls`` calls to ``endpoint``, each with a fresh exception or body."""
        for _ in range(calls):
            kwargs: dict[str, Any] = {"headers": self.headers}
            if self.exception is not None:
                kwargs["exception"] = self.exception()
            elif self.envelope:
                kwargs["message"] = RAW_TEXT
            else:
                assert self.body is not None
                kwargs["body"] = self.body(session)
            ok = 201 if endpoint == "create" else 200
            fake.fail_next(endpoint, self.status or ok, **kwargs)


def envelope_5xx(status: int) -> Fault:
    return Fault(
        f"http-{status}", create=ONCE, read=RETRIED, status=status, envelope=True, code="INTERNAL_ERROR"
    )


FAULTS = [
    Fault(
        "connect-timeout",
        create=RETRIED,  # never reached UniPost: safe to resend the POST
        read=RETRIED,
        exception=lambda: requests.ConnectTimeout("connect timed out"),
        code="TIMEOUT",
    ),
    Fault(
        "read-timeout",
        create=ONCE,  # may have been created: not resent
        read=RETRIED,
        exception=lambda: requests.ReadTimeout("read timed out"),
        code="TIMEOUT",
    ),
    Fault("connection-refused", create=RETRIED, read=RETRIED, exception=refused, code="CONNECTION_ERROR"),
    # An exception from the fake would fail the send; a stream fails the read of the body.
    Fault("reset-mid-body", create=ONCE, read=RETRIED, body=reset_mid_body, code="CONNECTION_ERROR"),
    envelope_5xx(500),
    Fault(
        "http-502-html-page",
        create=ONCE,
        read=RETRIED,
        status=502,
        body=lambda s: b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        headers={"Content-Type": "text/html"},
        code="HTTP_502",
    ),
    envelope_5xx(503),
    envelope_5xx(504),
    Fault(
        "429-retry-after-2s",
        create=Tries(3, (2.0, 2.0)),  # a 429 did no work: a POST may be resent
        read=Tries(3, (2.0, 2.0)),
        reconcile=Tries(9, (2.0,) * 8),
        status=429,
        envelope=True,
        headers={"Retry-After": "2"},
        code="RATE_LIMITED",
        message=RATE_LIMITED,
    ),
    Fault(
        "429-no-retry-after",
        create=RETRIED,
        read=RETRIED,
        reconcile=RECONCILE_429_BACKOFF,
        status=429,
        envelope=True,
        code="RATE_LIMITED",
        message=RATE_LIMITED,
    ),
    Fault(
        "429-retry-after-1h",
        create=ONCE,  # beyond the client's 5 s cap: raised, never slept through
        read=ONCE,
        reconcile=Tries(3, (60.0, 60.0)),  # the command paces, capped at a minute
        status=429,
        envelope=True,
        headers={"Retry-After": "3600"},
        code="RATE_LIMITED",
        message=RATE_LIMITED,
    ),
    Fault(
        "html-body",
        create=ONCE,
        read=ONCE,
        body=lambda s: b"<!doctype html><html><body>Welcome to nginx!</body></html>",
        headers={"Content-Type": "text/html"},
    ),
    Fault("empty-body", create=ONCE, read=ONCE, body=lambda s: b""),
    Fault("truncated-json", create=ONCE, read=ONCE, body=lambda s: json.dumps({"data": s}).encode()[:-40]),
    Fault("json-list", create=ONCE, read=ONCE, body=lambda s: json.dumps([s]).encode()),
    Fault("json-string", create=ONCE, read=ONCE, body=lambda s: json.dumps("pending").encode()),
    Fault("missing-id", create=ONCE, read=ONCE, body=without("id")),
    # The hosted url is needed to start, not to read a session's outcome.
    Fault("missing-url", create=ONCE, read=ONCE, body=without("url"), read_outcome="completed"),
    Fault("missing-status", create=ONCE, read=ONCE, body=without("status")),
    Fault(
        "unknown-status",
        create=ONCE,
        read=ONCE,
        body=enveloped(lambda s: {**s, "status": "authorizing"}),
        creates=True,  # id and url are there; the status decides nothing until the read
        read_outcome="pending",
    ),
    Fault(
        "extra-unknown-fields",
        create=ONCE,
        read=ONCE,
        body=with_extras,
        creates=True,
        read_outcome="completed",
    ),
    Fault(
        "hosted-url-not-http",
        create=ONCE,
        read=ONCE,
        body=enveloped(lambda s: {**s, "url": "javascript:alert(document.cookie)"}),
    ),
]

# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def client_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Waits the shared client asks for between retries (none actually taken)."""
    asked: list[float] = []
    monkeypatch.setattr("unipost_connect.client._sleep", asked.append)
    return asked


@pytest.fixture
def command_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Waits the reconcile command (and its own clients' retries) asks for."""
    asked: list[float] = []
    monkeypatch.setattr(command_module, "sleep", asked.append)
    return asked


def user_messages(response: Any) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def calls_to(fake: FakeUniPost, method: str, path: str) -> int:
    return sum(1 for call in fake.requests if call == (method, path))


def remote_session(user: Any, *, minutes_ago: float) -> ConnectSession:
    """A pending local session whose UniPost session the user has completed (approved)."""
    answer = get_client().create_session(
        platform="linkedin", external_user_id=str(user.pk), return_url="https://site.test/back"
    )
    return ConnectSession.objects.create(
        user=user,
        platform="linkedin",
        external_user_id=str(user.pk),
        unipost_session_id=answer.id,
        url=answer.url,
        expires_at=answer.expires_at,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def approved(fake: FakeUniPost, session: ConnectSession) -> Session:
    assert session.unipost_session_id
    fake.approve(session.unipost_session_id)
    return fake.sessions[session.unipost_session_id].as_json()


def assert_error_kept(row: ConnectSession, fault: Fault, fake: FakeUniPost) -> None:
    assert row.error_code == fault.code
    assert row.error_message
    if fault.has_request_id:
        assert row.request_id in fake.request_ids
    else:
        assert row.request_id == ""


def assert_told(response: Any, level: int, text: str, row: ConnectSession) -> None:
    told = user_messages(response)
    assert told == [(level, text)]
    for _, shown in told:
        assert RAW_TEXT not in shown
        assert not row.error_message or row.error_message not in shown


# -- create: the start view ---------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
def test_create(
    fault: Fault, fake: FakeUniPost, user_client: Client, user: Any, client_sleeps: list[float]
) -> None:
    now = timezone.now()
    answer: Session = {
        "id": "cs_fault",
        "platform": "linkedin",
        "external_user_id": str(user.pk),
        "status": "pending",
        "url": HOSTED,
        "expires_at": (now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    fault.inject(fake, "create", answer, fault.create.calls)

    response = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})

    assert response.status_code == 302
    assert calls_to(fake, "POST", "/v1/connect/sessions") == fault.create.calls
    assert tuple(client_sleeps) == fault.create.sleeps
    row = ConnectSession.objects.get(user=user)
    if fault.creates:
        assert response["Location"] == HOSTED
        assert user_messages(response) == []
        assert (row.status, row.unipost_session_id, row.url) == ("pending", "cs_fault", HOSTED)
        assert row.error_code == ""
        return
    assert response["Location"] == "/done/"  # never UniPost's url, whatever it was
    assert row.status == ConnectSession.Status.FAILED
    assert row.url == ""
    assert_error_kept(row, fault, fake)
    assert_told(response, messages.ERROR, fault.message, row)


# -- read: the return view ----------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
def test_read(
    fault: Fault, fake: FakeUniPost, user_client: Client, user: Any, client_sleeps: list[float]
) -> None:
    session = remote_session(user, minutes_ago=1)
    fault.inject(fake, "get", approved(fake, session), fault.read.calls)

    url = reverse("unipost_connect:return", kwargs={"session_id": session.pk})
    response = user_client.get(url + "?connect_status=success")  # a claim, never trusted

    assert response.status_code == 302
    assert response["Location"] == "/done/"
    assert calls_to(fake, "GET", f"/v1/connect/sessions/{session.unipost_session_id}") == fault.read.calls
    assert tuple(client_sleeps) == fault.read.sleeps
    row = ConnectSession.objects.get(pk=session.pk)
    assert row.return_status == "success"  # the hint is kept whatever happened
    if fault.read_outcome == "completed":
        assert row.status == ConnectSession.Status.COMPLETED
        assert row.managed_account_id
        assert row.error_code == ""
        assert_told(response, messages.SUCCESS, CONNECTED, row)
    elif fault.read_outcome == "pending":
        assert row.status == ConnectSession.Status.PENDING
        assert row.error_code == ""
        assert_told(response, messages.INFO, NOT_FINISHED, row)
    else:
        assert row.status == ConnectSession.Status.PENDING  # unchanged: UniPost was not heard
        assert row.managed_account_id == ""
        assert_error_kept(row, fault, fake)
        assert_told(response, messages.ERROR, fault.message, row)


# -- read: the reconcile command ----------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
def test_reconcile(
    fault: Fault,
    fake: FakeUniPost,
    user: Any,
    client_sleeps: list[float],
    command_sleeps: list[float],
) -> None:
    first = remote_session(user, minutes_ago=10)  # oldest: read first, and the only one faulted
    second = remote_session(user, minutes_ago=5)
    expected = fault.reconcile or fault.read
    fault.inject(fake, "get", approved(fake, first), expected.calls)
    approved(fake, second)

    out, err = StringIO(), StringIO()
    stopped: pytest.ExceptionInfo[CommandError] | None = None
    with TestCase.captureOnCommitCallbacks(execute=True):
        if fault.stops_reconcile:
            with pytest.raises(CommandError) as stopped:
                call_command("unipost_connect_reconcile", "--older-than", "0", stdout=out, stderr=err)
        else:
            call_command("unipost_connect_reconcile", "--older-than", "0", stdout=out, stderr=err)

    assert calls_to(fake, "GET", f"/v1/connect/sessions/{first.unipost_session_id}") == expected.calls
    assert tuple(command_sleeps) == expected.sleeps
    assert client_sleeps == []  # the command's clients wait through the command's sleep
    assert max(command_sleeps, default=0) <= command_module.MAX_RATE_LIMIT_WAIT
    first.refresh_from_db()
    second.refresh_from_db()
    errors = err.getvalue()
    summary = out.getvalue()
    assert str(second.pk) not in errors

    if fault.read_outcome != "error":
        assert errors == ""
        assert "0 errors" in summary
        assert first.error_code == ""
        assert first.status == (
            ConnectSession.Status.COMPLETED if fault.read_outcome == "completed" else "pending"
        )
        if fault.read_outcome == "pending":
            assert "1 unknown" in summary
    else:
        assert first.status == ConnectSession.Status.PENDING
        assert_error_kept(first, fault, fake)
        report = [line for line in errors.splitlines() if str(first.pk) in line]
        assert len(report) == 1 and fault.code in report[0]
        assert "1 errors" in summary

    if fault.stops_reconcile:
        # UniPost keeps asking to be left alone: the run stops (exit 1, so cron notices), the
        # rest waits for the next one.
        assert stopped is not None
        assert "stopped early" in str(stopped.value)
        assert stopped.value.returncode == 1
        assert calls_to(fake, "GET", f"/v1/connect/sessions/{second.unipost_session_id}") == 0
        assert second.status == ConnectSession.Status.PENDING
        assert second.error_code == ""
    else:
        # It carried on: the next session was read and applied.
        assert calls_to(fake, "GET", f"/v1/connect/sessions/{second.unipost_session_id}") == 1
        assert second.status == ConnectSession.Status.COMPLETED
        assert "2 checked" in summary
