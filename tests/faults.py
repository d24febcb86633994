"""Every upstream fault, in one table shared by every place that talks to UniPost.

:data:`FAULTS` is run against the client (``test_client.py``, ``test_client_faults.py``),
the start view (create, ``test_start_view.py``, ``test_messages.py``), the return view
(read, ``test_return_view.py``), the reconcile command (read, ``test_reconcile_faults.py``)
and the disconnect button (``test_connections_page.py``). Each entry says how to inject the
fault and what each place must make of it: the calls and waits the retry policy asks for,
the error code kept on the row, and the message the user is told (never UniPost's words).
A new fault is added here, once, and every place is tested against it.

Also here: network faults as ``requests`` raises them, hosted urls no browser may be sent
to, and helpers to check what a fault left behind.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
import requests
from django.contrib.messages import get_messages
from django.utils import timezone
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from unipost_connect.client import get_client
from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

# -- network faults as requests raises them ------------------------------------------------------


def refused(url: str = "https://api.unipost.test/v1/connect/sessions") -> requests.ConnectionError:
    """What requests raises when the TCP connection is refused: nothing was sent."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, url, reason))  # type: ignore[arg-type]


def reset_after_headers() -> requests.ConnectionError:
    """A reset once the request was written: the server may have acted on it."""
    reason = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    return requests.ConnectionError(reason)


class _ResetMidBody(io.RawIOBase):
    """A body whose first chunk arrives, then the peer resets the connection."""

    def __init__(self, first: bytes) -> None:
        self.first: bytes | None = first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.first is None:
            raise ConnectionResetError(104, "Connection reset by peer")
        n = len(self.first)
        buffer[:n] = self.first
        self.first = None
        return n


def body_reset_after(first: bytes) -> io.BufferedReader:
    """A response body stream: ``first`` arrives, then the connection resets."""
    return io.BufferedReader(_ResetMidBody(first))


# -- hosted urls no browser may be sent to -------------------------------------------------------

NOT_HTTP_URLS = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://app.unipost.test/connect/linkedin",
    "//app.unipost.test/connect/linkedin",
    "/connect/linkedin?session=x",
    "https://",
    "https:///connect/linkedin",
    "https://app.unipost.test/connect\r\nSet-Cookie: a=b",
    "https://app.unipost.test/connect/linkedin?state=a\nb",
    "https://app.unipost.test/connect linkedin",
    "https://[::1/connect",
]

# -- what users are told -------------------------------------------------------------------------

UNAVAILABLE = "The connection service is not available right now. Please try again in a few minutes."
RATE_LIMITED = "Too many connection attempts right now. Please wait a minute and try again."
SUPPORT = "The connection service is misconfigured on this site. Please contact the site's support."
NOT_KNOWN = "This connection attempt is no longer known. Please start again."
CONNECTED = "Your LinkedIn account is connected."
NOT_FINISHED = (
    "Your LinkedIn connection is not finished yet. If you completed it, it will appear here shortly."
)
RAW_TEXT = "shard 7 exploded (UniPost's own words)"  # must never reach a user

# -- building the faults -------------------------------------------------------------------------

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


def literal(body: bytes) -> BodyFor:
    return lambda session: body


def with_extras(session: Session) -> bytes:
    data = {**session, "scopes_granted": ["w_member_social"], "risk": {"score": 0.1}, "v2_id": 7}
    return json.dumps({"data": data, "request_id": "req_extra", "api_version": "2099-01-01"}).encode()


class Tries(NamedTuple):
    """HTTP calls one read/create makes under a persistent fault, and the waits asked for."""

    calls: int
    sleeps: tuple[float, ...] = ()


ONCE = Tries(1)
RETRIED = Tries(3, (0.25, 0.5))  # max_retries=2, backoff 0.25 doubling
# The reconcile run retries a 429 itself (3 reads, each retried by the client), then stops.
RECONCILE_429_BACKOFF = Tries(9, (0.25, 0.5, 1.0, 0.25, 0.5, 1.0, 0.25, 0.5))
AS_READ = "as read"


@dataclass(frozen=True)
class Fault:
    """One fault, how to inject it, and what each place must make of it.

    ``create``, ``read`` and ``reconcile`` are the tries at each place; ``None``: the fault
    is not run there (a plan refusal is an answer to a create only). ``status=None`` is the
    endpoint's success status (201 create, 200 read) with a bad body. ``read_outcome`` is
    the outcome of a read of a session UniPost has completed: ``error`` (row unchanged,
    error kept), ``completed``, or ``pending`` (unknown status: left alone);
    ``reconcile_outcome`` when the reconcile run makes another of it: ``unchanged`` (left
    pending, no error, until it expires).
    """

    id: str
    create: Tries | None
    read: Tries | None
    reconcile: Tries | str | None = AS_READ
    status: int | None = None
    body: BodyFor | None = None
    headers: dict[str, str] = field(default_factory=dict)
    exception: Callable[[], BaseException] | None = None
    # An error envelope: UniPost's code (None: the usual one for the status) and its words.
    envelope: bool = False
    envelope_code: str | None = None
    said: str = RAW_TEXT
    code: str = "INVALID_RESPONSE"  # the error code kept on the row
    message: str = UNAVAILABLE  # what the user is told
    creates: bool = False  # the start view still redirects to the hosted page
    read_outcome: str = "error"
    reconcile_outcome: str | None = None  # None: as read_outcome

    @property
    def at_reconcile(self) -> Tries | None:
        if isinstance(self.reconcile, str):  # AS_READ
            return self.read
        return self.reconcile

    def tries_at(self, place: str) -> Tries:
        """The tries at ``place`` (``create``, ``read`` or ``reconcile``), for a fault run there."""
        tries = {"create": self.create, "read": self.read, "reconcile": self.at_reconcile}[place]
        assert tries is not None, f"{self.id} is not run at {place}"
        return tries

    @property
    def has_request_id(self) -> bool:
        # Every answer the fake sends carries X-Request-Id; a transport failure (even a
        # reset after the headers came) leaves no usable answer, so no request id.
        return self.code not in ("TIMEOUT", "CONNECTION_ERROR")

    @property
    def stops_reconcile(self) -> bool:
        # Rate limited throughout, or a key UniPost refuses: every further call would fail.
        return self.status in (401, 429)

    def inject(self, fake: FakeUniPost, endpoint: str, session: Session, calls: int) -> None:
        """Fail the next ``calls`` calls to ``endpoint``, each with a fresh exception or body."""
        for _ in range(calls):
            kwargs: dict[str, Any] = {"headers": self.headers}
            if self.exception is not None:
                kwargs["exception"] = self.exception()
            elif self.envelope:
                kwargs.update(code=self.envelope_code, message=self.said)
            else:
                assert self.body is not None
                kwargs["body"] = self.body(session)
            ok = 201 if endpoint == "create" else 200
            fake.fail_next(endpoint, self.status or ok, **kwargs)


def transport(id: str, exception: Callable[[], BaseException], code: str, *, create: Tries) -> Fault:
    """A fault of the connection: a read is always retried, a create only if never sent."""
    return Fault(id, create=create, read=RETRIED, exception=exception, code=code)


def error_answer(
    id: str,
    status: int,
    code: str,
    message: str = UNAVAILABLE,
    *,
    create: Tries | None = ONCE,
    read: Tries | None = ONCE,
    reconcile: Tries | str | None = AS_READ,
    **extra: Any,
) -> Fault:
    """UniPost's error envelope with ``status``; the row keeps ``code``, the user is told ``message``."""
    return Fault(
        id,
        create=create,
        read=read,
        reconcile=reconcile,
        status=status,
        envelope=True,
        code=code,
        message=message,
        **extra,
    )


def envelope_5xx(status: int) -> Fault:
    return error_answer(f"http-{status}", status, "INTERNAL_ERROR", read=RETRIED)


def refusal(id: str, status: int, code: str, said: str, message: str) -> Fault:
    """UniPost refusing to start a session for this site: a create only, never retried."""
    return error_answer(id, status, code, message, read=None, reconcile=None, envelope_code=code, said=said)


def bad_body(id: str, body: BodyFor, **expected: Any) -> Fault:
    """A success status whose body cannot be used (unless ``expected`` says otherwise)."""
    return Fault(id, create=ONCE, read=ONCE, body=body, **expected)


def rate_limited(id: str, retry_after: str | None, *, create: Tries, read: Tries, reconcile: Tries) -> Fault:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return error_answer(
        id, 429, "RATE_LIMITED", RATE_LIMITED, create=create, read=read, reconcile=reconcile, headers=headers
    )


FAULTS = [
    # -- the connection ---------------------------------------------------------------------------
    # Never reached UniPost: safe to resend the POST.
    transport(
        "connect-timeout", lambda: requests.ConnectTimeout("connect timed out"), "TIMEOUT", create=RETRIED
    ),
    transport("connection-refused", refused, "CONNECTION_ERROR", create=RETRIED),
    # May have been created: never resent.
    transport("read-timeout", lambda: requests.ReadTimeout("read timed out"), "TIMEOUT", create=ONCE),
    transport(
        "connection-reset",
        lambda: requests.ConnectionError("Connection reset by peer"),
        "CONNECTION_ERROR",
        create=ONCE,
    ),
    transport("reset-after-headers", reset_after_headers, "CONNECTION_ERROR", create=ONCE),
    transport(
        "chunked-encoding",
        lambda: requests.exceptions.ChunkedEncodingError("broken"),
        "CONNECTION_ERROR",
        create=ONCE,
    ),
    transport(
        "ssl-error", lambda: requests.exceptions.SSLError("bad record mac"), "CONNECTION_ERROR", create=ONCE
    ),
    # An exception from the fake would fail the send; a stream fails the read of the body.
    Fault("reset-mid-body", create=ONCE, read=RETRIED, body=reset_mid_body, code="CONNECTION_ERROR"),
    # -- error answers ----------------------------------------------------------------------------
    error_answer("http-401", 401, "UNAUTHORIZED", SUPPORT),
    refusal(
        "http-402-platform",
        402,
        "PLAN_PLATFORM_NOT_ALLOWED",
        "requires a paid plan",
        "Connecting LinkedIn accounts is not included in this site's plan. "
        "Please contact the site's support.",
    ),
    refusal(
        "http-402-feature",
        402,
        "PLAN_FEATURE_NOT_AVAILABLE",
        "managed user cap reached",
        "This site has reached a limit of its plan, so no new account can be connected right now. "
        "Please contact the site's support.",
    ),
    refusal(
        "http-422-credentials",
        422,
        "VALIDATION_ERROR",
        "workspace is missing linkedin platform credentials; upload them first",
        "LinkedIn is not set up for connections on this site yet. Please contact the site's support.",
    ),
    refusal(
        "http-422-other",
        422,
        "VALIDATION_ERROR",
        "Workspace has multiple profiles; include profile_id",
        "The connection could not be started. Please contact the site's support.",
    ),
    # The user is told; the reconcile run leaves a session UniPost does not know to expire.
    error_answer("http-404", 404, "NOT_FOUND", NOT_KNOWN, create=None, reconcile_outcome="unchanged"),
    envelope_5xx(500),
    Fault(
        "http-502-html-page",
        create=ONCE,
        read=RETRIED,
        status=502,
        body=literal(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        headers={"Content-Type": "text/html"},
        code="HTTP_502",
    ),
    envelope_5xx(503),
    envelope_5xx(504),
    # A 429 did no work: a POST may be resent.
    rate_limited(
        "429-retry-after-2s",
        "2",
        create=Tries(3, (2.0, 2.0)),
        read=Tries(3, (2.0, 2.0)),
        reconcile=Tries(9, (2.0,) * 8),
    ),
    rate_limited("429-no-retry-after", None, create=RETRIED, read=RETRIED, reconcile=RECONCILE_429_BACKOFF),
    rate_limited(
        "429-retry-after-1h",
        "3600",
        create=ONCE,  # beyond the client's 5 s cap: raised, never slept through
        read=ONCE,
        reconcile=Tries(3, (60.0, 60.0)),  # the run paces itself, capped at a minute
    ),
    # -- success statuses with bodies that cannot be used -----------------------------------------
    bad_body(
        "html-body",
        literal(b"<!doctype html><html><body>Welcome to nginx!</body></html>"),
        headers={"Content-Type": "text/html"},
    ),
    bad_body("html-body-said-to-be-json", literal(b"<html>hello</html>")),
    bad_body("empty-body", literal(b"")),
    bad_body("truncated-json", lambda s: json.dumps({"data": s}).encode()[:-40]),
    bad_body("json-list", lambda s: json.dumps([s]).encode()),
    bad_body("json-string", literal(b'"pending"')),
    bad_body("json-null", literal(b"null")),
    bad_body("missing-id", without("id")),
    # The hosted url is needed to start, not to read a session's outcome.
    bad_body("missing-url", without("url"), read_outcome="completed"),
    bad_body("missing-status", without("status")),
    bad_body("only-an-id", literal(json.dumps({"data": {"id": "cs_x"}}).encode())),
    bad_body(
        "completed-without-account",
        literal(json.dumps({"data": {"id": "cs_x", "status": "completed"}}).encode()),
    ),
    bad_body(
        "unknown-status",
        enveloped(lambda s: {**s, "status": "authorizing"}),
        creates=True,  # id and url are there; the status decides nothing until the read
        read_outcome="pending",
    ),
    bad_body("extra-unknown-fields", with_extras, creates=True, read_outcome="completed"),
    bad_body("hosted-url-not-http", enveloped(lambda s: {**s, "url": NOT_HTTP_URLS[0]})),
]

CREATE_FAULTS = [f for f in FAULTS if f.create is not None]
READ_FAULTS = [f for f in FAULTS if f.read is not None]
RECONCILE_FAULTS = [f for f in FAULTS if f.at_reconcile is not None]
TRANSPORT_FAULTS = [f for f in FAULTS if f.exception is not None]


def fault_id(fault: Fault) -> str:
    return fault.id


# Where a view sends the user after a fault: the page the start was asked from, else the default.
LANDINGS = pytest.mark.parametrize(
    ("next_url", "lands"), [(None, "/done/"), ("/settings/", "/settings/")], ids=["no-next", "next"]
)


# -- what a fault left behind --------------------------------------------------------------------


HOSTED = "https://app.unipost.test/connect/linkedin?session=cs_fault&state=s3cret"


def create_answer(user: Any) -> Session:
    """A create answer as UniPost sends it, for a fault to spoil."""
    now = timezone.now()
    return {
        "id": "cs_fault",
        "platform": "linkedin",
        "external_user_id": str(user.pk),
        "status": "pending",
        "url": HOSTED,
        "expires_at": (now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def client_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the waits the shared client asks for between retries (none actually taken)."""
    asked: list[float] = []
    monkeypatch.setattr("unipost_connect.client._sleep", asked.append)
    return asked


def calls_to(fake: FakeUniPost, method: str, path: str) -> int:
    return sum(1 for call in fake.requests if call == (method, path))


def user_messages(response: Any) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def remote_session(user: Any, *, minutes_ago: float, next_url: str = "") -> ConnectSession:
    """A pending local session whose UniPost session exists (still pending there)."""
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
        next_url=next_url,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def approved(fake: FakeUniPost, session: ConnectSession) -> Session:
    """Approve ``session`` at UniPost; the remote session as UniPost now answers it."""
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


def assert_told(response: Any, level: int, text: str, row: ConnectSession, fault: Fault) -> None:
    """The user was told ``text`` alone, in our words: never UniPost's, nor the row's error."""
    told = user_messages(response)
    assert told == [(level, text)]
    for _, shown in told:
        assert RAW_TEXT not in shown
        assert fault.said not in shown
        assert not row.error_message or row.error_message not in shown
