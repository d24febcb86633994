"""A fake UniPost: the Connect state machine and its HTTP surface, in memory.

One :class:`FakeUniPost` answers API calls and serves the hosted page through
:meth:`FakeUniPost.handle`. The same object backs ``responses`` mocks in tests
(:meth:`FakeUniPost.mock`), the live fake inside the example project
(:mod:`unipost_connect.testing.live`) and a standalone HTTP server
(:mod:`unipost_connect.testing.server`), so tests and demo tell one story.

It follows the live server where the contract says the live server differs from the
reference page: ids are UUIDs, ``account.*`` webhooks carry no ``event_id``, a 401 from
the authentication layer has a short body, and an unknown route answers a plain-text
404 page.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from ..contract import REFRESH_FAILURE_REASONS, SESSION_LIFETIME
from ..errors import error_class_for_status
from ..platforms import ALL_PLATFORMS, OAUTH_FREE_PLATFORMS, PLATFORM_LABELS
from ..webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, compute_signature

MAX_EXTERNAL_USER_ID_BYTES = 256
ACCOUNTS_LIMIT = 100  # the page size GET /v1/accounts reports in meta.limit
DEFAULT_ERROR_REASON = "token_exchange_failed"
#: Reasons of ``account.disconnected`` from the token-refresh worker: the account is kept,
#: as ``reconnect_required``, and a new Connect session brings it back.
#: Failures the hosted page shows on UniPost's own HTML page, never redirecting back:
#: name -> (HTTP status, title, text). The session stays pending.
HOSTED_FAILURES: dict[str, tuple[int, str, str]] = {
    "account_owned": (
        409,
        "Account already connected",
        "This account is already connected to another user of this site.",
    ),
    "plan_limit": (
        402,
        "Plan limit reached",
        "This workspace's plan does not allow another connected account.",
    ),
    "expired": (
        410,
        "Connect session expired",
        "This connect session expired while you were away. Start again from the site.",
    ),
}
_STRING_FIELDS = ("platform", "profile_id", "external_user_id", "external_user_email", "return_url")


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _new_id() -> str:
    return str(uuid.uuid4())


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
        if self.status in ("completed", "cancelled"):
            data["completed_at"] = _iso(self.completed_at)
        if self.status == "completed":
            data["completed_social_account_id"] = self.managed_account_id
            data["managed_account_id"] = self.managed_account_id
        return data


@dataclass
class FakeAccount:
    """A managed account. ``status``: ``active``, ``reconnect_required`` (listed) or
    ``disconnected`` (no longer listed)."""

    id: str
    platform: str
    external_user_id: str
    account_name: str | None
    profile_id: str
    connected_at: datetime
    status: str = "active"
    connection_type: str = "managed"
    disconnected_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "account_name": self.account_name,
            "status": self.status,
            "connection_type": self.connection_type,
            "external_user_id": self.external_user_id,
            "profile_id": self.profile_id,
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
        # The content type travels as ``content_type``; the other headers as they are.
        headers = {k: v for k, v in self.headers.items() if k.lower() != "content-type"}
        return {"data": self.body, "content_type": "application/json", "headers": headers}


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

    ``account.*`` events come without ``event_id`` from the live server, so none is sent
    unless ``event_id`` is given (post events carry one). Body keys come in the live
    order: event, [event_id], timestamp, data.
    """
    payload: dict[str, Any] = {"event": event}
    if event_id:
        payload["event_id"] = event_id
    payload["timestamp"] = _iso(timestamp or datetime.now(UTC))
    payload["data"] = dict(data)
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
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
    body: bytes | None  # None: an error envelope built when answering (it has the request id)
    headers: dict[str, str]
    exception: BaseException | None
    remaining: int
    code: str = ""
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class FakeUniPost:
    """UniPost's Connect API as the contract describes it, in memory and thread-safe.

    Endpoints (``endpoint`` names used by :meth:`fail_next`): ``create``
    (``POST /v1/connect/sessions``), ``get`` (``GET /v1/connect/sessions/{id}``),
    ``accounts`` (``GET /v1/accounts``), ``delete`` (``DELETE /v1/accounts/{id}``),
    and the hosted page under ``/connect/<platform>``. Any other path answers a
    plain-text 404 page, as the live server's router does.

    What the end user does on the hosted page: :meth:`approve`, :meth:`deny`,
    :meth:`error` (back to the site, session still pending) and
    :meth:`fail_on_hosted_page` (UniPost's own error page, no way back). What UniPost
    does later: :meth:`disconnect` and :meth:`fail_token_refresh`.
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
        self.request_ids: list[str] = []  # the X-Request-Id of every API answer, in order
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
        envelope (the default, built from ``status``; a 401 gets the authentication
        layer's short body). An ``X-Request-Id`` in ``headers`` is also the envelope's
        ``request_id``.
        """
        raw = (body.encode() if isinstance(body, str) else body) if body is not None else None
        fault = _Fault(
            endpoint,
            status,
            raw,
            dict(headers or {}),
            exception,
            times,
            code=code or _default_code(status),
            message=message or f"Injected {status}",
        )
        with self._lock:
            self._faults.append(fault)

    def rate_limit_next(
        self, endpoint: str | None = None, retry_after: int | None = 1, times: int = 1
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.fail_next(
            endpoint, 429, code="RATE_LIMITED", message="Rate limit exceeded", headers=headers, times=times
        )
        with self._lock:  # the live 429 body adds advice (see the contract's examples)
            self._faults[-1].extra = {
                "hint": "Wait for the Retry-After window to pass, then retry the request.",
                "next_action": "wait_and_retry",
                "is_retriable": True,
            }

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (None, endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _fault_response(self, fault: _Fault, request_id: str) -> FakeResponse:
        if fault.exception is not None:
            raise fault.exception
        # A request id given in the headers is the one the body carries too.
        given = [v for k, v in fault.headers.items() if k.lower() == "x-request-id"]
        request_id = given[0] if given else request_id
        if fault.body is not None:
            return FakeResponse(fault.status, fault.body, {"X-Request-Id": request_id, **fault.headers})
        answer = self._error(fault.status, fault.code, fault.message, request_id, **fault.extra)
        return FakeResponse(answer.status, answer.body, {**answer.headers, **fault.headers})

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
        self.requests.append((method, path))
        answer = self._api(method, path, query, headers, body)
        request_id = answer.headers.get("X-Request-Id")
        if request_id:
            with self._lock:
                self.request_ids.append(request_id)
        return answer

    def _api(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> FakeResponse:
        endpoint, arg = _route(method, path)
        request_id = _new_id()
        if endpoint is None:
            # The router's own page: not JSON, so a wrong base URL is not "not found".
            return FakeResponse(
                404,
                b"404 page not found\n",
                {"Content-Type": "text/plain; charset=utf-8", "X-Request-Id": request_id},
            )
        fault = self._take_fault(endpoint)
        if fault is not None:
            return self._fault_response(fault, request_id)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "UNAUTHORIZED", "Invalid or missing API key", request_id)
        if endpoint == "create":
            return self._create(body, request_id)
        if endpoint == "get":
            return self._get(arg, request_id)
        if endpoint == "accounts":
            filters = {k: v[0] for k, v in parse_qs(query).items()}
            return self._list_accounts(filters, request_id)
        return self._delete_account(arg, request_id)

    def _ok(self, status: int, data: Any, request_id: str, **beside: Any) -> FakeResponse:
        if self.envelope:
            payload: Any = {"data": data, **beside, "request_id": request_id}
        else:
            payload = {"data": data, **beside} if beside else data
        return FakeResponse(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", "X-Request-Id": request_id},
        )

    def _error(self, status: int, code: str, message: str, request_id: str, **extra: Any) -> FakeResponse:
        payload: dict[str, Any]
        if status == 401:
            # The authentication layer answers before the API's error writer runs.
            payload = {"error": {"code": code, "message": message}}
        else:
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
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not _body_types_ok(data):
            return self._error(422, "VALIDATION_ERROR", "Invalid request body", request_id)
        platform = (data.get("platform") or "").strip().lower()
        if platform not in ALL_PLATFORMS:
            return self._error(
                422, "VALIDATION_ERROR", f"platform must be one of {' '.join(ALL_PLATFORMS)}", request_id
            )
        external_user_id = (data.get("external_user_id") or "").strip()
        # The server counts UTF-8 bytes, not characters.
        size = len(external_user_id.encode("utf-8", "surrogatepass"))
        if not 1 <= size <= MAX_EXTERNAL_USER_ID_BYTES:
            return self._error(
                422, "VALIDATION_ERROR", "external_user_id is required (1-256 bytes)", request_id
            )
        return_url = data.get("return_url")
        if return_url is not None:
            parts = urlsplit(return_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return self._error(422, "VALIDATION_ERROR", "return_url must be an http(s) URL", request_id)
        profile_id = (data.get("profile_id") or "").strip() or None
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
        quickstart = bool(data.get("allow_quickstart_creds"))
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
        session_id = _new_id()
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

    def _list_accounts(self, filters: Mapping[str, str], request_id: str) -> FakeResponse:
        wanted = {k: filters[k] for k in ("external_user_id", "platform", "profile_id") if k in filters}
        with self._lock:
            matches = [
                account.as_json()
                for account in self.accounts.values()
                if account.status != "disconnected"
                and all(getattr(account, name) == value for name, value in wanted.items())
            ]
        meta = {"total": len(matches), "limit": ACCOUNTS_LIMIT}
        return self._ok(200, matches[:ACCOUNTS_LIMIT], request_id, meta=meta)

    def _delete_account(self, account_id: str, request_id: str) -> FakeResponse:
        if self.accounts.get(account_id) is None:
            return self._error(404, "NOT_FOUND", "Account not found", request_id)
        self.disconnect(account_id)
        return self._ok(200, {"disconnected": True}, request_id)

    # -- the state machine -------------------------------------------------------------

    def get_session(self, session_id: str) -> FakeSession | None:
        """The session, with lazy expiry applied as the live server does on reads."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is not None and session.status == "pending" and self.now() >= session.expires_at:
                session.status = "expired"
            return session

    def approve(self, session_id: str, *, account_name: str | None = None) -> str | None:
        """The user authorizes on the hosted page. Returns where the browser goes next.

        On OAuth platforms the end user's managed account on that profile and platform
        is reused (the same id, back to ``active``, ``connected_at`` kept).
        """
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
                "connection_type": account.connection_type,
            },
        )
        return self._return_to(session, connect_status="success")

    def deny(self, session_id: str, *, error_description: str | None = None) -> str | None:
        """The user refuses consent (the provider's ``access_denied``): the session is
        cancelled. The reason is the provider's ``error_description`` when it sends one."""
        with self._lock:
            session = self._pending(session_id)
            session.status = "cancelled"
            session.completed_at = self.now()
        return self._return_to(
            session, connect_status="cancelled", reason=error_description or "access_denied"
        )

    def error(self, session_id: str, reason: str = DEFAULT_ERROR_REASON) -> str | None:
        """An authorization error other than refusal: back to the site with
        ``connect_status=error&reason=<reason>``; the session stays pending (the user may
        try again). Reasons seen: ``token_exchange_failed``, ``profile_fetch_failed``,
        ``facebook_…`` codes, a platform's own error text."""
        with self._lock:
            session = self._pending(session_id)
        return self._return_to(session, connect_status="error", reason=reason)

    def fail_on_hosted_page(self, session_id: str, failure: str) -> FakeResponse:
        """The flow ends on UniPost's own HTML error page and never redirects back.

        ``failure`` is one of :data:`HOSTED_FAILURES`: ``"account_owned"`` (409, the
        provider account is already owned by another external user), ``"plan_limit"``
        (402, a plan cap), ``"expired"`` (410, the session expired while the user was on
        the provider's page). Returns the page the browser shows. The session stays
        pending and no webhook is sent; for ``"expired"`` its deadline is moved to now,
        so the next read answers ``expired`` (lazy expiry, as on the live server).
        """
        if failure not in HOSTED_FAILURES:
            raise ValueError(f"unknown hosted-page failure {failure!r}; one of {sorted(HOSTED_FAILURES)}")
        status, title, text = HOSTED_FAILURES[failure]
        with self._lock:
            session = self._pending(session_id)
            if failure == "expired":
                session.expires_at = min(session.expires_at, self.now())
        return _page(status, title, text)

    def disconnect(self, account_id: str) -> WebhookDelivery | None:
        """The account is disconnected (a ``DELETE`` or the dashboard): it is no longer
        listed and ``account.disconnected`` (``user_initiated``) is sent. Again: nothing
        happens and None is returned."""
        with self._lock:
            account = self.accounts[account_id]
            if account.status == "disconnected":
                return None
            account.status = "disconnected"
            account.disconnected_at = at = self.now()
        return self._emit(
            "account.disconnected",
            {
                "social_account_id": account.id,
                "platform": account.platform,
                "profile_id": account.profile_id,
                "account_name": account.account_name,
                "disconnected_at": _iso(at),
                "reason": "user_initiated",
            },
            at,
        )

    def fail_token_refresh(self, account_id: str, reason: str = "refresh_failed") -> WebhookDelivery:
        """UniPost's token-refresh worker cannot refresh the account's token.

        ``reason`` is one of :data:`REFRESH_FAILURE_REASONS`. The account stays listed,
        with status ``reconnect_required``, and ``account.disconnected`` is sent with the
        reason (and, as that worker sends it, ``external_user_id`` and
        ``connection_type``). Approving a new session for the same end user and platform
        (OAuth platforms) brings the same account back to ``active``.
        """
        if reason not in REFRESH_FAILURE_REASONS:
            raise ValueError(f"unknown refresh failure {reason!r}; one of {sorted(REFRESH_FAILURE_REASONS)}")
        with self._lock:
            account = self.accounts[account_id]
            if account.status != "active":
                raise ValueError(f"fake account {account_id} is {account.status}, not active")
            account.status = "reconnect_required"
            at = self.now()
        return self._emit(
            "account.disconnected",
            {
                "social_account_id": account.id,
                "platform": account.platform,
                "profile_id": account.profile_id,
                "account_name": account.account_name,
                "external_user_id": account.external_user_id,
                "connection_type": account.connection_type,
                "disconnected_at": _iso(at),
                "reason": reason,
            },
            at,
        )

    def _pending(self, session_id: str) -> FakeSession:
        session = self.get_session(session_id)
        if session is None:
            raise KeyError(f"no fake session {session_id!r}")
        if session.status != "pending":
            raise ValueError(f"fake session {session_id} is {session.status}, not pending")
        return session

    def _account_for(self, session: FakeSession, account_name: str | None) -> FakeAccount:
        profile_id = session.profile_id or ""
        # OAuth platforms reuse the managed account keyed on (profile, platform, external
        # user id), keeping its id and connected_at; Bluesky may give one user several.
        if session.platform not in OAUTH_FREE_PLATFORMS:
            for account in self.accounts.values():
                if (account.profile_id, account.platform, account.external_user_id) == (
                    profile_id,
                    session.platform,
                    session.external_user_id,
                ):
                    account.status = "active"
                    account.disconnected_at = None
                    if account_name:
                        account.account_name = account_name
                    return account
        account = FakeAccount(
            id=_new_id(),
            platform=session.platform,
            external_user_id=session.external_user_id,
            account_name=account_name
            or f"{PLATFORM_LABELS[session.platform]} user {session.external_user_id}",
            profile_id=profile_id,
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

    def _emit(self, event: str, data: Mapping[str, Any], at: datetime | None = None) -> WebhookDelivery:
        delivery = build_webhook(event, data, self.webhook_secret, timestamp=at or self.now())
        with self._lock:
            self.outbox.append(delivery)
        if self.on_webhook is not None:
            self.on_webhook(delivery)
        return delivery

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
        action = params.get("action", "")
        if action in ("approve", "approve_stay"):
            target = self.approve(session.id, account_name=params.get("account_name") or None)
            if action == "approve_stay":  # like UniPost's own success page: no way back
                return _page(200, "Connected", "Your account is connected. You can close this page.")
        elif action == "deny":
            target = self.deny(session.id)
        elif action == "error":
            target = self.error(session.id, (params.get("reason") or DEFAULT_ERROR_REASON)[:200])
        elif action in HOSTED_FAILURES:
            return self.fail_on_hosted_page(session.id, action)
        else:
            return _page(400, "Unknown action", "Choose one of the buttons on the page.")
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


def _body_types_ok(data: Mapping[str, Any]) -> bool:
    """The create body's JSON types (null counts as absent, as Go's decoder has it)."""
    for name in _STRING_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            return False
    quickstart = data.get("allow_quickstart_creds")
    return quickstart is None or isinstance(quickstart, bool)


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
    """The code UniPost gives an error of ``status``: the one the client's error class
    for that status expects, so the fake and the client share one table."""
    return error_class_for_status(status).default_code


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
    reasons = (
        (DEFAULT_ERROR_REASON, "Token exchange failed"),
        ("profile_fetch_failed", "Profile fetch failed"),
        (f"{label} is temporarily unavailable", "The platform's own error text"),
    )
    options = "".join(
        f"<option value='{html.escape(value)}'>{html.escape(text)}</option>" for value, text in reasons
    )
    failures = (
        ("account_owned", "Account owned by another user"),
        ("plan_limit", "Plan limit reached"),
        ("expired", "Session expired meanwhile"),
    )
    failure_buttons = "".join(
        f"<button type='submit' name='action' value='{value}'>{html.escape(text)}</button>"
        for value, text in failures
    )
    form = (
        f"<form method='post'>{hidden}"
        "<p><label for='account_name'>Account name</label> "
        f"<input id='account_name' name='account_name' value='{html.escape(label)} demo account'></p>"
        "<button type='submit' name='action' value='approve'>Approve</button>"
        "<button type='submit' name='action' value='deny'>Deny</button>"
        "<button type='submit' name='action' value='error'>Error</button>"
        "<p><label for='reason'>Error reason</label> "
        f"<select id='reason' name='reason'>{options}</select></p>"
        "<p><button type='submit' name='action' value='approve_stay'>Approve without returning</button>"
        " (the site learns of it by webhook only)</p>"
        f"<p>Failures shown on this page, with no way back to the site: {failure_buttons}</p></form>"
    )
    return _page(200, f"Connect your {label} account", f"A site asks to connect your {label} account.", form)
