"""The HTTP client for UniPost's Connect API.

One :class:`UniPostClient` owns a pooled ``requests.Session``, the timeouts, the
User-Agent, the retry policy and the mapping of every failure to
:mod:`unipost_connect.errors`. It knows nothing of Django models.

It never logs the API key, request bodies, or hosted URLs (their ``state`` parameter
is a bearer secret of the hosted page).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import NewConnectionError

from . import __version__
from .answers import (
    RemoteAccount,
    RemoteSession,
    error_from_response,
    json_object,
    parse_accounts,
    parse_retry_after,
    parse_session,
    request_id_of,
    unwrap,
)
from .contract import DEFAULT_BASE_URL
from .errors import (
    AuthenticationError,
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
)
from .validators import is_http_url

__all__ = [
    "USER_AGENT",
    "RemoteAccount",
    "RemoteSession",
    "UniPostClient",
    "error_from_response",
    "get_client",
    "is_http_url",
    "parse_retry_after",
    "parse_session",
]

logger = logging.getLogger("unipost_connect.client")

USER_AGENT = f"unipost-connect/{__version__}"


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly never reached the server (safe to resend a POST)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.exceptions.SSLError):
        # requests wraps urllib3's MaxRetryError, whose ``reason`` says what failed.
        # NewConnectionError (refused, DNS failure) means no TCP connection was made.
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)
        return isinstance(reason, NewConnectionError)
    return False


class _Answer(NamedTuple):
    """A 2xx answer: its JSON object, request id and HTTP status."""

    body: dict[str, Any]
    request_id: str
    status: int


@dataclass(frozen=True)
class _Call:
    """One API call as the client will try it (perhaps more than once)."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    timeout: tuple[float, float] = (3.05, 10.0)
    idempotent: bool = True
    allow_empty: bool = False


def _answer(call: _Call, response: requests.Response, started: float) -> _Answer:
    """A 2xx answer's JSON object (or nothing, where that is allowed) and request id."""
    logger.debug(
        "UniPost %s %s -> %s in %.0f ms (request_id=%s)",
        call.method,
        call.path,
        response.status_code,
        (time.monotonic() - started) * 1000,
        response.headers.get("X-Request-Id", ""),
    )
    if call.allow_empty and not response.content.strip():
        return _Answer({}, request_id_of(response, None), response.status_code)
    body = json_object(response)
    return _Answer(body, request_id_of(response, body), response.status_code)


def _sleep(seconds: float) -> None:
    """The client's wait between retries; tests replace it."""
    time.sleep(seconds)


class UniPostClient:
    """A small, pooled, retrying client for the Connect endpoints.

    ``max_retries`` counts extra attempts for idempotent requests (GET, DELETE) after a
    connection failure, a 429 or a 5xx. ``POST /v1/connect/sessions`` has no idempotency
    key, so it is resent only when the request certainly never arrived (connection
    refused, connect timeout) or was refused with 429 before any work was done.
    A ``Retry-After`` longer than ``retry_max_wait`` is not slept through: the
    :class:`~unipost_connect.errors.RateLimitedError` is raised for the caller to pace.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        max_retries: int = 2,
        retry_max_wait: float = 5.0,
        backoff: float = 0.25,
        deadline: float = 15.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.retry_max_wait = retry_max_wait
        self.backoff = backoff
        # No retry starts once this many seconds have passed since the first attempt,
        # so a request never holds a web worker much longer than one attempt's timeouts.
        self.deadline = deadline
        # By default the module's ``_sleep``, looked up at call time so tests can patch it.
        self._sleep = sleep
        self.http = session or requests.Session()

    def __repr__(self) -> str:  # never show the key
        return f"<UniPostClient {self.base_url}>"

    @classmethod
    def from_settings(cls, **overrides: Any) -> UniPostClient:
        """A new client configured by ``UNIPOST_CONNECT`` (read now, through ``conf``).

        ``overrides`` are keyword arguments of the constructor that win over the
        settings. Each call makes its own ``requests.Session``: a thread that needs a
        client of its own (a session is not guaranteed thread-safe) gets one here; code
        that can share one calls :func:`get_client`.
        """
        from .conf import app_settings

        options: dict[str, Any] = {
            "api_key": app_settings.API_KEY,
            "base_url": app_settings.API_BASE_URL,
            "timeout": app_settings.TIMEOUT,
            "max_retries": app_settings.MAX_RETRIES,
            "retry_max_wait": app_settings.RETRY_MAX_WAIT,
        }
        return cls(**{**options, **overrides})

    # -- endpoints -------------------------------------------------------------

    def create_session(
        self,
        *,
        platform: str,
        external_user_id: str,
        external_user_email: str | None = None,
        return_url: str | None = None,
        profile_id: str | None = None,
        allow_quickstart_creds: bool = False,
    ) -> RemoteSession:
        payload: dict[str, Any] = {
            "platform": platform,
            "external_user_id": external_user_id,
            "allow_quickstart_creds": allow_quickstart_creds,
        }
        if external_user_email:
            payload["external_user_email"] = external_user_email
        if return_url:
            payload["return_url"] = return_url
        if profile_id:
            payload["profile_id"] = profile_id
        answer = self._request("POST", "/v1/connect/sessions", json=payload, idempotent=False)
        return parse_session(
            answer.body, request_id=answer.request_id, require_url=True, http_status=answer.status
        )

    def get_session(
        self,
        session_id: str,
        *,
        max_retries: int | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> RemoteSession:
        """Read a session.

        ``max_retries`` and ``timeout`` (``(connect, read)`` seconds) override the
        client's for this call only, for callers whose time is short (a web request).
        """
        answer = self._request(
            "GET",
            f"/v1/connect/sessions/{quote(session_id, safe='')}",
            max_retries=max_retries,
            timeout=timeout,
        )
        return parse_session(
            answer.body, request_id=answer.request_id, require_url=False, http_status=answer.status
        )

    def list_accounts(
        self,
        *,
        external_user_id: str | None = None,
        platform: str | None = None,
        profile_id: str | None = None,
        max_retries: int | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> list[RemoteAccount]:
        """``GET /v1/accounts`` with UniPost's filters (each optional; no status filter).
        ``max_retries`` and ``timeout`` override the client's for this call, as for
        :meth:`get_session`."""
        filters = {"external_user_id": external_user_id, "platform": platform, "profile_id": profile_id}
        params = {name: value for name, value in filters.items() if value} or None
        answer = self._request("GET", "/v1/accounts", params=params, max_retries=max_retries, timeout=timeout)
        return parse_accounts(answer.body, request_id=answer.request_id, http_status=answer.status)

    def delete_account(self, account_id: str) -> str:
        """Disconnect an account; returns the request id.

        UniPost answers 200 ``{"data": {"disconnected": true}}`` (again on a repeat);
        an empty 2xx is accepted too. An answer saying ``false`` is no confirmation.
        """
        answer = self._request("DELETE", f"/v1/accounts/{quote(account_id, safe='')}", allow_empty=True)
        disconnected = unwrap(answer.body).get("disconnected", True)
        if disconnected is not True:
            raise UniPostResponseError(
                "UniPost did not confirm the disconnection: its answer's 'disconnected' is not true.",
                status=answer.status,
                request_id=answer.request_id,
            )
        return answer.request_id

    # -- transport -------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        idempotent: bool = True,
        allow_empty: bool = False,
        max_retries: int | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> _Answer:
        call = _Call(
            method,
            path,
            json=json,
            params=params,
            timeout=self.timeout if timeout is None else timeout,
            idempotent=idempotent,
            allow_empty=allow_empty,
        )
        retries = self.max_retries if max_retries is None else max(0, max_retries)
        first_started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            outcome = self._attempt(call, attempt)
            if isinstance(outcome, _Answer):
                return outcome
            error, may_retry = outcome
            if not may_retry or attempt > retries:
                raise error
            wait = self._wait_before_retry(error, attempt)
            if wait is None or time.monotonic() - first_started + wait > self.deadline:
                raise error
            (_sleep if self._sleep is None else self._sleep)(wait)

    # ``headers`` carries the API key: Django's error reports (DEBUG pages, mails) must
    # not show it if an exception passes through here.
    @sensitive_variables("headers")
    def _attempt(self, call: _Call, attempt: int) -> _Answer | tuple[UniPostError, bool]:
        """One try: the answer, or the error and whether trying again may help."""
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        started = time.monotonic()
        try:
            # No redirects: a 3xx is not part of the contract, and following one
            # would turn the create POST into a GET somewhere else.
            response = self.http.request(
                call.method,
                self.base_url + call.path,
                json=call.json,
                params=call.params,
                headers=headers,
                timeout=call.timeout,
                allow_redirects=False,
            )
            # Read the whole body here so a reset mid-body is a connection error.
            response.content  # noqa: B018
        except UnicodeError:
            # http.client could not encode a header: the key has characters (a pasted
            # zero-width space, say) that no HTTP header can carry. ``from None``
            # keeps the key, which the encoding error quotes, out of tracebacks.
            raise AuthenticationError(
                "The API key contains characters that cannot be sent in an HTTP header; "
                "check UNIPOST_CONNECT['API_KEY'].",
                code="INVALID_API_KEY",
            ) from None
        except requests.RequestException as exc:
            error: UniPostError = UniPostConnectionError(
                _describe_transport_error(exc),
                code="TIMEOUT" if isinstance(exc, requests.Timeout) else "CONNECTION_ERROR",
            )
            error.__cause__ = exc
            logger.warning(
                "UniPost %s %s failed: %s (attempt %d)", call.method, call.path, error.code, attempt
            )
            return error, call.idempotent or _never_sent(exc)
        if 200 <= response.status_code < 300:
            return _answer(call, response, started)
        error = error_from_response(response)
        logger.warning(
            "UniPost %s %s -> %s %s (request_id=%s, attempt %d)",
            call.method,
            call.path,
            response.status_code,
            error.code,
            error.request_id,
            attempt,
        )
        return error, error.is_retriable and (call.idempotent or response.status_code == 429)

    def _wait_before_retry(self, error: UniPostError, attempt: int) -> float | None:
        if error.retry_after is not None:
            # Honour the server's pacing, but never hold a request longer than the cap.
            return error.retry_after if error.retry_after <= self.retry_max_wait else None
        return min(self.backoff * 2.0 ** (attempt - 1), self.retry_max_wait)


def _describe_transport_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "Timed out connecting to UniPost."
    if isinstance(exc, requests.Timeout):
        return "Timed out waiting for UniPost's answer."
    if isinstance(exc, requests.ConnectionError):
        return "Could not reach UniPost (connection refused or reset)."
    return f"Could not talk to UniPost ({type(exc).__name__})."


_clients: dict[tuple[Any, ...], UniPostClient] = {}
_clients_lock = threading.Lock()


def get_client() -> UniPostClient:
    """The shared client for the current settings; one pooled session per configuration."""
    from .conf import app_settings

    # Every setting :meth:`UniPostClient.from_settings` reads, so a change of any of them
    # (``override_settings`` in tests, a reload) gets a client of its own.
    key = (
        app_settings.API_KEY,
        app_settings.API_BASE_URL,
        app_settings.TIMEOUT,
        app_settings.MAX_RETRIES,
        app_settings.RETRY_MAX_WAIT,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = UniPostClient.from_settings()
            _clients[key] = client
        return client
