"""A fake UniPost: the Connect state machine and its HTTP surface, in memory.

One :class:`FakeUniPost` answers API calls and serves the hosted page through
:meth:`FakeUniPost.handle`. The same object backs ``responses`` mocks in tests
(:meth:`FakeUniPost.mock`), the live fake inside the example project
(:mod:`unipost_connect.testing.live`) and a standalone HTTP server
(:mod:`unipost_connect.testing.server`), so tests and demo tell one story.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from ..conf import ALL_PLATFORMS, PLATFORM_LABELS
from ..webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, compute_signature

SESSION_LIFETIME = timedelta(minutes=30)
OAUTH_FREE_PLATFORMS = {"bluesky"}  # app passwords: no platform credentials involved


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@dataclass
class FakeSession:
    id: str
    platform: str
    external_user_id: str
    state: str
    url: str
    created_at: datetime
    expires_at: datetime
    external_user_email: str | None = None
    return_url: str | None = None
    profile_id: str | None = None
    allow_quickstart_creds: bool = False
    status: str = "pending"
    completed_at: datetime | None = None
    managed_account_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "platform": self.platform,
            "external_user_id": self.external_user_id,
            "allow_quickstart_creds": self.allow_quickstart_creds,
            "status": self.status,
            "url": self.url,
            "expires_at": _iso(self.expires_at),
            "created_at": _iso(self.created_at),
        }
        if self.external_user_email:
            data["external_user_email"] = self.external_user_email
        if self.return_url:
            data["return_url"] = self.return_url
        if self.status == "completed":
            data["completed_at"] = _iso(self.completed_at)
            data["completed_social_account_id"] = self.managed_account_id
            data["managed_account_id"] = self.managed_account_id
        return data


@dataclass
class FakeAccount:
    id: str
    platform: str
    external_user_id: str
    account_name: str
    profile_id: str
    connected_at: datetime
    status: str = "active"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "account_name": self.account_name,
            "status": self.status,
            "connection_type": "managed",
            "external_user_id": self.external_user_id,
            "connected_at": _iso(self.connected_at),
        }


@dataclass(frozen=True)
class FakeResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookDelivery:
    """A signed webhook as UniPost would POST it."""

    event: str
    body: bytes
    headers: Mapping[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result

    def django_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``django.test.Client.post(url, **kwargs)``."""
        return {"data": self.body, "content_type": "application/json", "headers": dict(self.headers)}


def build_webhook(
    event: str,
    data: Mapping[str, Any],
    secret: str,
    *,
    event_id: str | None = None,
    timestamp: datetime | None = None,
    delivery_id: str | None = None,
) -> WebhookDelivery:
    """Build a webhook body and its headers, signed with ``secret`` as UniPost signs it.

    Pass ``event_id=""`` to build an older-style delivery without one.
    """
    payload: dict[str, Any] = {"event": event}
    if event_id is None:
        event_id = "evt_" + secrets.token_hex(8)
    if event_id:
        payload["event_id"] = event_id
    payload["timestamp"] = _iso(timestamp or datetime.now(UTC))
    payload["data"] = dict(data)
    body = json.dumps(payload).encode()
    headers = {
        SIGNATURE_HEADER: compute_signature(body, secret),
        EVENT_HEADER: event,
    }
    if delivery_id:
        headers[DELIVERY_HEADER] = delivery_id
    return WebhookDelivery(event=event, body=body, headers=headers)


@dataclass
class _Fault:
    endpoint: str | None
    status: int
    body: bytes | None
    headers: dict[str, str]
    exception: BaseException | None
    remaining: int


class FakeUniPost:
    """UniPost's Connect API as the contract describes it, in memory and thread-safe.

    Endpoints (``endpoint`` names used by :meth:`fail_next`): ``create``
    (``POST /v1/connect/sessions``), ``get`` (``GET /v1/connect/sessions/{id}``),
    ``accounts`` (``GET /v1/accounts``), ``delete`` (``DELETE /v1/accounts/{id}``),
    and the hosted page under ``/connect/<platform>``.
    """

    def __init__(
        self,
        *,
        api_key: str = "up_test_fake",
        base_url: str = "https://api.unipost.test",
        hosted_base_url: str | None = None,
        webhook_secret: str = "whsec_fake",
        profiles: tuple[str, ...] = ("pr_default",),
        platform_credentials: tuple[str, ...] | None = ALL_PLATFORMS,
        plan_platforms: tuple[str, ...] = ALL_PLATFORMS,
        envelope: bool = True,
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.hosted_base_url = (hosted_base_url or base_url).rstrip("/")
        self.webhook_secret = webhook_secret
        self.profiles = profiles
        self.platform_credentials = set(platform_credentials or ())
        self.plan_platforms = set(plan_platforms)
        self.envelope = envelope
        self.latency = latency
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta(0)
        self.sessions: dict[str, FakeSession] = {}
        self.accounts: dict[str, FakeAccount] = {}
        self.outbox: list[WebhookDelivery] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API call
        self.on_webhook: Callable[[WebhookDelivery], None] | None = None
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # -- time --------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, **delta: float) -> None:
        """Move the fake's clock forward, e.g. ``advance(minutes=31)``."""
        with self._lock:
            self._offset += timedelta(**delta)

    # -- fault injection -----------------------------------------------------------

    def fail_next(
        self,
        endpoint: str | None = None,
        status: int = 500,
        *,
        code: str | None = None,
        message: str | None = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        exception: BaseException | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls to ``endpoint`` (any when None) with a failure.

        Give ``exception`` (e.g. ``requests.ConnectTimeout()``) to fail the transport,
        ``body`` for a raw body (an HTML 502 page), or ``code``/``message`` for an error
        envelope (the default, built from ``status``).
        """
        raw: bytes | None
        if body is not None:
            raw = body.encode() if isinstance(body, str) else body
        elif exception is None:
            raw = None
            code = code or _default_code(status)
            envelope = {
                "error": {
                    "code": code,
                    "normalized_code": code.lower(),
                    "message": message or f"Injected {status}",
                },
            }
            raw = json.dumps(envelope).encode()
        else:
            raw = None
        with self._lock:
            self._faults.append(_Fault(endpoint, status, raw, dict(headers or {}), exception, times))

    def rate_limit_next(
        self, endpoint: str | None = None, retry_after: int | None = 1, times: int = 1
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.fail_next(
            endpoint, 429, code="RATE_LIMITED", message="Rate limit exceeded", headers=headers, times=times
        )

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (None, endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- the HTTP surface ------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> FakeResponse:
        """Answer one HTTP request (path without the base URL's path prefix)."""
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        if self.latency:
            time.sleep(self.latency)
        if path.startswith("/connect/"):
            return self._hosted_page(method, path, query, body)
        endpoint, arg = _route(method, path)
        request_id = "req_" + secrets.token_hex(6)
        self.requests.append((method, path))
        fault = self._take_fault(endpoint) if endpoint else None
        if fault is not None:
            if fault.exception is not None:
                raise fault.exception
            headers = {"X-Request-Id": request_id, **fault.headers}
            return FakeResponse(fault.status, fault.body or b"", headers)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "UNAUTHORIZED", "Missing or invalid API key.", request_id)
        if endpoint == "create":
            return self._create(body, request_id)
        if endpoint == "get":
            return self._get(arg, request_id)
        if endpoint == "accounts":
            ext = parse_qs(query).get("external_user_id", [None])[0]
            return self._list_accounts(ext, request_id)
        if endpoint == "delete":
            return self._delete_account(arg, request_id)
        return self._error(404, "NOT_FOUND", "No such endpoint.", request_id)

    def _ok(self, status: int, data: Any, request_id: str) -> FakeResponse:
        payload = {"data": data, "request_id": request_id} if self.envelope else data
        return FakeResponse(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", "X-Request-Id": request_id},
        )

    def _error(self, status: int, code: str, message: str, request_id: str, **extra: Any) -> FakeResponse:
        payload = {
            "error": {"code": code, "normalized_code": code.lower(), "message": message, **extra},
            "request_id": request_id,
        }
        return FakeResponse(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", "X-Request-Id": request_id},
        )

    def _create(self, body: bytes, request_id: str) -> FakeResponse:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self._error(422, "VALIDATION_ERROR", "Request body must be a JSON object.", request_id)
        platform = str(data.get("platform") or "").strip().lower()
        if platform not in ALL_PLATFORMS:
            return self._error(
                422, "VALIDATION_ERROR", f"platform must be one of {' '.join(ALL_PLATFORMS)}", request_id
            )
        external_user_id = str(data.get("external_user_id") or "").strip()
        if not 1 <= len(external_user_id) <= 256:
            return self._error(
                422, "VALIDATION_ERROR", "external_user_id is required (1-256 characters)", request_id
            )
        return_url = data.get("return_url")
        if return_url is not None:
            parts = urlsplit(str(return_url))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return self._error(422, "VALIDATION_ERROR", "return_url must be an http(s) URL", request_id)
        profile_id = data.get("profile_id")
        if profile_id is None and len(self.profiles) > 1:
            return self._error(
                422, "VALIDATION_ERROR", "Workspace has multiple profiles; include profile_id", request_id
            )
        if profile_id is not None and profile_id not in self.profiles:
            return self._error(422, "VALIDATION_ERROR", "profile_id not found in this workspace", request_id)
        if platform not in self.plan_platforms:
            return self._error(
                402,
                "PLAN_PLATFORM_NOT_ALLOWED",
                f"connecting {platform} accounts requires a paid plan — upgrade at unipost.dev/pricing",
                request_id,
            )
        quickstart = bool(data.get("allow_quickstart_creds", False))
        if (
            platform not in OAUTH_FREE_PLATFORMS
            and not quickstart
            and platform not in self.platform_credentials
        ):
            return self._error(
                422,
                "VALIDATION_ERROR",
                f"workspace is missing {platform} platform credentials; upload workspace Platform "
                "Credentials first or pass allow_quickstart_creds=true",
                request_id,
            )
        now = self.now()
        session_id = "cs_" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        state = secrets.token_urlsafe(32)
        query = urlencode({"session": session_id, "state": state})
        session = FakeSession(
            id=session_id,
            platform=platform,
            external_user_id=external_user_id,
            state=state,
            url=f"{self.hosted_base_url}/connect/{platform}?{query}",
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
            external_user_email=data.get("external_user_email") or None,
            return_url=return_url,
            profile_id=profile_id or (self.profiles[0] if self.profiles else None),
            allow_quickstart_creds=quickstart,
        )
        with self._lock:
            self.sessions[session_id] = session
        return self._ok(201, session.as_json(), request_id)

    def _get(self, session_id: str, request_id: str) -> FakeResponse:
        session = self.get_session(session_id)
        if session is None:
            return self._error(404, "NOT_FOUND", "Connect session not found", request_id)
        return self._ok(200, session.as_json(), request_id)

    def _list_accounts(self, external_user_id: str | None, request_id: str) -> FakeResponse:
        with self._lock:
            accounts = [
                a.as_json()
                for a in self.accounts.values()
                if a.status != "disconnected"
                and (external_user_id is None or a.external_user_id == external_user_id)
            ]
        return self._ok(200, accounts, request_id)

    def _delete_account(self, account_id: str, request_id: str) -> FakeResponse:
        with self._lock:
            account = self.accounts.get(account_id)
            if account is None or account.status == "disconnected":
                return self._error(404, "NOT_FOUND", "Account not found", request_id)
            account.status = "disconnected"
        self._emit("account.disconnected", {"social_account_id": account.id, "platform": account.platform})
        return self._ok(200, {"id": account.id, "status": "disconnected"}, request_id)

    # -- the state machine -------------------------------------------------------------

    def get_session(self, session_id: str) -> FakeSession | None:
        """The session, with lazy expiry applied as the live server does on reads."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is not None and session.status == "pending" and self.now() >= session.expires_at:
                session.status = "expired"
            return session

    def approve(self, session_id: str, *, account_name: str | None = None) -> str | None:
        """The user authorizes on the hosted page. Returns where the browser goes next."""
        with self._lock:
            session = self._pending(session_id)
            account = self._account_for(session, account_name)
            session.status = "completed"
            session.completed_at = self.now()
            session.managed_account_id = account.id
        self._emit(
            "account.connected",
            {
                "social_account_id": account.id,
                "profile_id": account.profile_id,
                "platform": account.platform,
                "account_name": account.account_name,
                "external_user_id": account.external_user_id,
                "connection_type": "managed",
            },
        )
        return self._return_to(session, connect_status="success")

    def deny(self, session_id: str) -> str | None:
        """The user refuses consent (``access_denied``): the session is cancelled."""
        with self._lock:
            session = self._pending(session_id)
            session.status = "cancelled"
        return self._return_to(session, connect_status="cancelled", reason="access_denied")

    def error(self, session_id: str, reason: str = "server_error") -> str | None:
        """An authorization error other than refusal: the session stays pending."""
        with self._lock:
            session = self._pending(session_id)
        return self._return_to(session, connect_status="error", reason=reason)

    def _pending(self, session_id: str) -> FakeSession:
        session = self.get_session(session_id)
        if session is None:
            raise KeyError(f"no fake session {session_id!r}")
        if session.status != "pending":
            raise ValueError(f"fake session {session_id} is {session.status}, not pending")
        return session

    def _account_for(self, session: FakeSession, account_name: str | None) -> FakeAccount:
        # OAuth platforms reuse the managed account of the same end user; Bluesky may not.
        if session.platform not in OAUTH_FREE_PLATFORMS:
            for account in self.accounts.values():
                same_user = account.external_user_id == session.external_user_id
                if same_user and account.platform == session.platform:
                    account.status = "active"
                    account.connected_at = self.now()
                    if account_name:
                        account.account_name = account_name
                    return account
        account = FakeAccount(
            id=f"sa_{session.platform}_{secrets.token_hex(4)}",
            platform=session.platform,
            external_user_id=session.external_user_id,
            account_name=account_name
            or f"{PLATFORM_LABELS[session.platform]} user {session.external_user_id}",
            profile_id=session.profile_id or "",
            connected_at=self.now(),
        )
        self.accounts[account.id] = account
        return account

    @staticmethod
    def _return_to(session: FakeSession, **params: str) -> str | None:
        if not session.return_url:
            return None
        # Append to the query (with "&" when there is one already), before any fragment.
        base, hash_, fragment = session.return_url.partition("#")
        joiner = "&" if urlsplit(base).query else ("" if base.endswith("?") else "?")
        return base + joiner + urlencode(params) + hash_ + fragment

    # -- webhooks -----------------------------------------------------------------------

    def webhook(self, event: str, data: Mapping[str, Any], **kwargs: Any) -> WebhookDelivery:
        """A delivery signed with this fake's secret (see :func:`build_webhook`)."""
        return build_webhook(event, data, self.webhook_secret, timestamp=self.now(), **kwargs)

    def _emit(self, event: str, data: Mapping[str, Any]) -> None:
        delivery = self.webhook(event, data)
        with self._lock:
            self.outbox.append(delivery)
        if self.on_webhook is not None:
            self.on_webhook(delivery)

    # -- the hosted page ------------------------------------------------------------------

    def _hosted_page(self, method: str, path: str, query: str, body: bytes) -> FakeResponse:
        params = {k: v[0] for k, v in parse_qs(query).items()}
        if method == "POST":
            params.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()})
        session = self.get_session(params.get("session", ""))
        given = params.get("state", "").encode("utf-8", "surrogateescape")
        # Bytes, because compare_digest refuses str with non-ASCII characters (a TypeError).
        if session is None or not secrets.compare_digest(session.state.encode(), given):
            return _page(403, "Link not valid", "This connect link is not valid.")
        if session.status != "pending":
            return _page(410, "Link no longer valid", f"This connect session is {session.status}.")
        if method == "GET":
            return _hosted_form(session)
        if method != "POST":
            return _page(405, "Method not allowed", "Use the buttons on the page.")
        action = params.get("action")
        if action in ("approve", "approve_stay"):
            target = self.approve(session.id, account_name=params.get("account_name") or None)
            if action == "approve_stay":  # like UniPost's own success page: no way back
                return _page(200, "Connected", "Your account is connected. You can close this page.")
        elif action == "deny":
            target = self.deny(session.id)
        elif action == "error":
            target = self.error(session.id)
        else:
            return _page(400, "Unknown action", "Choose Approve, Deny or Error.")
        if target is None:
            text = f"The connect session is now {session.status}. You can close this page."
            return _page(200, "Done", text)
        return FakeResponse(302, b"", {"Location": target})

    # -- responses integration --------------------------------------------------------------

    def install(self, rsps: Any) -> None:
        """Register this fake on a ``responses.RequestsMock``."""
        for base in {self.base_url, self.hosted_base_url}:
            pattern = re.compile(re.escape(base) + r"(/[^?]*)?(\?.*)?$")
            for method in ("GET", "POST", "DELETE"):
                rsps.add_callback(method, pattern, callback=self._responses_callback(base))

    def _responses_callback(self, base: str) -> Callable[[Any], tuple[int, dict[str, str], bytes]]:
        base_path = urlsplit(base).path

        def callback(request: Any) -> tuple[int, dict[str, str], bytes]:
            parts = urlsplit(request.url)
            path = parts.path[len(base_path) :] if base_path else parts.path
            body = request.body or b""
            if isinstance(body, str):
                body = body.encode()
            answer = self.handle(request.method, path, query=parts.query, headers=request.headers, body=body)
            return answer.status, dict(answer.headers), answer.body

        return callback

    @contextmanager
    def mock(self) -> Iterator[Any]:
        """Intercept ``requests`` calls to this fake's URLs for the ``with`` block."""
        import responses

        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            self.install(rsps)
            yield rsps


def _route(method: str, path: str) -> tuple[str | None, str]:
    path = path.rstrip("/") or "/"
    if path == "/v1/connect/sessions" and method == "POST":
        return "create", ""
    match = re.fullmatch(r"/v1/connect/sessions/([^/]+)", path)
    if match and method == "GET":
        return "get", match.group(1)
    if path == "/v1/accounts" and method == "GET":
        return "accounts", ""
    match = re.fullmatch(r"/v1/accounts/([^/]+)", path)
    if match and method == "DELETE":
        return "delete", match.group(1)
    return None, ""


def _default_code(status: int) -> str:
    return {
        400: "VALIDATION_ERROR",
        401: "UNAUTHORIZED",
        402: "PLAN_FEATURE_NOT_AVAILABLE",
        404: "NOT_FOUND",
        422: "VALIDATION_ERROR",
        429: "RATE_LIMITED",
    }.get(status, "INTERNAL_ERROR")


def _page(status: int, title: str, text: str, inner: str = "") -> FakeResponse:
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · Fake UniPost</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
        "button{font-size:1rem;padding:.5rem 1rem;margin:.25rem}</style></head><body>"
        f"<p><strong>Fake UniPost</strong> (for tests and demos)</p><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p>{inner}</body></html>"
    )
    return FakeResponse(status, document.encode(), {"Content-Type": "text/html; charset=utf-8"})


def _hosted_form(session: FakeSession) -> FakeResponse:
    label = PLATFORM_LABELS[session.platform]
    hidden = (
        f"<input type='hidden' name='session' value='{html.escape(session.id)}'>"
        f"<input type='hidden' name='state' value='{html.escape(session.state)}'>"
    )
    form = (
        f"<form method='post'>{hidden}"
        "<p><label for='account_name'>Account name</label> "
        f"<input id='account_name' name='account_name' value='{html.escape(label)} demo account'></p>"
        "<button type='submit' name='action' value='approve'>Approve</button>"
        "<button type='submit' name='action' value='deny'>Deny</button>"
        "<button type='submit' name='action' value='error'>Error</button>"
        "<p><button type='submit' name='action' value='approve_stay'>Approve without returning</button>"
        " (the site learns of it by webhook only)</p></form>"
    )
    return _page(200, f"Connect your {label} account", f"A site asks to connect your {label} account.", form)
