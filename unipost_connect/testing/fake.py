"""A fake UniPost: the Connect state machine and its fault injection, in memory.

One :class:`FakeUniPost` holds the sessions and accounts, moves them as UniPost does,
and answers HTTP through :meth:`FakeUniPost.handle`, which hands a request to the REST
API (:mod:`.api`) or the hosted page (:mod:`.hosted`). Webhooks are built and signed by
:mod:`.delivery`. The same object backs ``responses`` mocks in tests
(:meth:`FakeUniPost.mock`), the live fake inside the example project (:mod:`.live`) and
a standalone HTTP server (:mod:`.server`), so tests and demo tell one story.

It follows the live server where the contract says the live server differs from the
reference page: ids are UUIDs, ``account.*`` webhooks carry no ``event_id``, a 401 from
the authentication layer has a short body, and an unknown route answers a plain-text
404 page.

Underscored methods (``_take_fault``, ``_open_session``, ``_accounts_matching``,
``_sessions_matching``) serve this package's HTTP modules and are no public interface.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from ..contract import REFRESH_FAILURE_REASONS, SESSION_LIFETIME
from ..errors import error_class_for_status
from ..platforms import ALL_PLATFORMS, OAUTH_FREE_PLATFORMS, PLATFORM_LABELS
from . import api, hosted
from .delivery import WebhookDelivery, build_webhook, connected_data, disconnected_data
from .hosted import DEFAULT_ERROR_REASON, HOSTED_FAILURES
from .records import FakeAccount, FakeResponse, FakeSession, InjectedFault, new_id

# What a fake is built with unless told otherwise (the command-line server too).
DEFAULT_API_KEY = "up_test_fake"
DEFAULT_WEBHOOK_SECRET = "whsec_fake"
DEFAULT_PROFILES = ("pr_default",)


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
        api_key: str = DEFAULT_API_KEY,
        base_url: str = "https://api.unipost.test",
        hosted_base_url: str | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        profiles: tuple[str, ...] = DEFAULT_PROFILES,
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
        self._faults: list[InjectedFault] = []
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
        fault = InjectedFault(
            endpoint,
            status,
            raw,
            dict(headers or {}),
            exception,
            times,
            # The code the client's error class for that status expects: one table for both.
            code=code or error_class_for_status(status).default_code,
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

    def _take_fault(self, endpoint: str) -> InjectedFault | None:
        """The next fault injected for ``endpoint``, counted as used."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (None, endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- HTTP -----------------------------------------------------------------------------

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
        if self.latency:
            time.sleep(self.latency)
        if path.startswith("/connect/"):
            return hosted.answer(self, method, query, body)
        self.requests.append((method, path))
        answer = api.answer(self, method, path, query, headers or {}, body)
        request_id = answer.headers.get("X-Request-Id")
        if request_id:
            with self._lock:
                self.request_ids.append(request_id)
        return answer

    def install(self, rsps: Any) -> None:
        """Register this fake on a ``responses.RequestsMock``."""
        for base in {self.base_url, self.hosted_base_url}:
            pattern = re.compile(re.escape(base) + r"(/[^?]*)?(\?.*)?$")
            for method in ("GET", "POST", "DELETE"):
                rsps.add_callback(method, pattern, callback=api.responses_callback(self, base))

    @contextmanager
    def mock(self) -> Iterator[Any]:
        """Intercept ``requests`` calls to this fake's URLs for the ``with`` block."""
        import responses

        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            self.install(rsps)
            yield rsps

    # -- the state machine -------------------------------------------------------------

    def _open_session(
        self,
        *,
        platform: str,
        external_user_id: str,
        external_user_email: str | None,
        return_url: str | None,
        profile_id: str | None,
        allow_quickstart_creds: bool,
    ) -> FakeSession:
        """A new pending session, from a create the API has validated."""
        now = self.now()
        session_id = new_id()
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
            external_user_email=external_user_email,
            return_url=return_url,
            # No profile given: the workspace's only one (a create with several is refused).
            profile_id=profile_id or (self.profiles[0] if self.profiles else None),
            allow_quickstart_creds=allow_quickstart_creds,
        )
        with self._lock:
            self.sessions[session_id] = session
        return session

    def get_session(self, session_id: str) -> FakeSession | None:
        """The session, with lazy expiry applied as the live server does on reads."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is not None and session.status == "pending" and self.now() >= session.expires_at:
                session.status = "expired"
            return session

    def _sessions_matching(self, wanted: Mapping[str, str]) -> list[FakeSession]:
        """Every session whose fields equal ``wanted``, lazy expiry applied."""
        with self._lock:
            found = [self.get_session(session_id) for session_id in list(self.sessions)]
        return [s for s in found if s is not None and all(getattr(s, k) == v for k, v in wanted.items())]

    def _accounts_matching(
        self, wanted: Mapping[str, str], *, disconnected_too: bool = False
    ) -> list[FakeAccount]:
        """The accounts whose fields equal ``wanted``; disconnected ones are not listed."""
        with self._lock:
            return [
                account
                for account in self.accounts.values()
                if (disconnected_too or account.status != "disconnected")
                and all(getattr(account, name) == value for name, value in wanted.items())
            ]

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
        self._emit("account.connected", connected_data(account))
        return session.return_to(connect_status="success")

    def deny(self, session_id: str, *, error_description: str | None = None) -> str | None:
        """The user refuses consent (the provider's ``access_denied``): the session is
        cancelled. The reason is the provider's ``error_description`` when it sends one."""
        with self._lock:
            session = self._pending(session_id)
            session.status = "cancelled"
            session.completed_at = self.now()
        return session.return_to(connect_status="cancelled", reason=error_description or "access_denied")

    def error(self, session_id: str, reason: str = DEFAULT_ERROR_REASON) -> str | None:
        """An authorization error other than refusal: back to the site with
        ``connect_status=error&reason=<reason>``; the session stays pending (the user may
        try again). Reasons seen: ``token_exchange_failed``, ``profile_fetch_failed``,
        ``facebook_…`` codes, a platform's own error text."""
        with self._lock:
            session = self._pending(session_id)
        return session.return_to(connect_status="error", reason=reason)

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
        return hosted.page(status, title, text)

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
        data = disconnected_data(account, at, "user_initiated", worker=False)
        return self._emit("account.disconnected", data, at)

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
        return self._emit("account.disconnected", disconnected_data(account, at, reason, worker=True), at)

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
            same = {
                "profile_id": profile_id,
                "platform": session.platform,
                "external_user_id": session.external_user_id,
            }
            for account in self._accounts_matching(same, disconnected_too=True):
                account.status = "active"
                account.disconnected_at = None
                if account_name:
                    account.account_name = account_name
                return account
        account = FakeAccount(
            id=new_id(),
            platform=session.platform,
            external_user_id=session.external_user_id,
            account_name=account_name
            or f"{PLATFORM_LABELS[session.platform]} user {session.external_user_id}",
            profile_id=profile_id,
            connected_at=self.now(),
        )
        self.accounts[account.id] = account
        return account

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
