"""The HTTP client for UniPost's Connect API.

One :class:`UniPostClient` owns a pooled ``requests.Session``, the timeouts, the
User-Agent, the retry policy and the mapping of every failure to
:mod:`unipost_connect.errors`. It knows nothing of Django models.

It never logs the API key, request bodies, or hosted URLs (their ``state`` parameter
is a bearer secret of the hosted page).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import NewConnectionError

from . import __version__
from .contract import DEFAULT_BASE_URL
from .errors import (
    AuthenticationError,
    EndpointNotFoundError,
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
    error_class_for_status,
)
from .validators import is_http_url, parse_datetime

logger = logging.getLogger("unipost_connect.client")

USER_AGENT = f"unipost-connect/{__version__}"


@dataclass(frozen=True)
class RemoteSession:
    """A connect session as UniPost reports it."""

    id: str
    status: str  # as UniPost sent it; values outside the contract are the caller's to judge
    platform: str = ""
    # The hosted url's ``state`` is a bearer secret: keep it out of reprs (and so logs).
    url: str = field(default="", repr=False)
    external_user_id: str = ""
    expires_at: datetime | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    managed_account_id: str = ""
    request_id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class RemoteAccount:
    """A social account as ``GET /v1/accounts`` lists it."""

    id: str
    platform: str = ""
    account_name: str = ""
    status: str = ""
    external_user_id: str = ""
    connection_type: str = ""
    connected_at: datetime | None = None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" stays infinite (longer than any cap, so never slept through); "nan" means nothing.
        return None if math.isnan(seconds) else max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _request_id(response: requests.Response, body: Any) -> str:
    """The answer's request id: the body's, else the header's. A value with control
    characters is not an id (and, logged, could forge log lines): it is ignored."""
    if isinstance(body, dict):
        value = body.get("request_id")
        if isinstance(value, str) and value and value.isprintable():
            return value
    header = str(response.headers.get("X-Request-Id", ""))
    return header if header.isprintable() else ""


def _load_json(response: requests.Response) -> Any:
    """The decoded body; raises ValueError for anything that is not JSON."""
    content = response.content
    if not content:
        raise ValueError("empty body")
    try:
        try:
            return json.loads(content)
        except UnicodeDecodeError:
            # Not UTF-8/16/32: decode as requests would (declared charset, else replacement).
            return json.loads(response.text)
    except RecursionError:  # absurdly deep nesting (RecursionError is not a ValueError)
        raise ValueError("JSON nested too deeply") from None


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


def error_from_response(response: requests.Response) -> UniPostError:
    """Build the error for a non-2xx answer, JSON envelope or not."""
    status = response.status_code
    cls = error_class_for_status(status)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    try:
        body = _load_json(response)
    except ValueError:
        body = None
    request_id = _request_id(response, body)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        normalized = error.get("normalized_code")
        message = error.get("message")
        hint = error.get("hint")
        return cls(
            str(message) if message else f"UniPost answered HTTP {status}.",
            status=status,
            code=str(code) if code else None,
            normalized_code=str(normalized) if normalized else None,
            request_id=request_id,
            hint=str(hint) if hint else "",
            retry_after=retry_after,
        )
    # Not UniPost's envelope: a proxy's HTML page, an empty body, a bare string...
    if status == 404:
        return EndpointNotFoundError(
            f"There is no UniPost API endpoint at {_without_query(response.url)} (HTTP 404 without "
            "UniPost's error answer): check UNIPOST_CONNECT['API_BASE_URL'] "
            f"(UniPost's is {DEFAULT_BASE_URL}).",
            status=status,
            request_id=request_id,
        )
    return cls(
        f"UniPost answered HTTP {status} without an error envelope.",
        status=status,
        code=f"HTTP_{status}",
        request_id=request_id,
        retry_after=retry_after,
    )


def _without_query(url: str | None) -> str:
    """The URL without its query string, which may carry an end user's id."""
    return (url or "").split("?", 1)[0].split("#", 1)[0]


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = _load_json(response)
    except ValueError:
        raise UniPostResponseError(
            f"UniPost answered HTTP {response.status_code} with a body that is not JSON.",
            status=response.status_code,
            request_id=response.headers.get("X-Request-Id", ""),
        ) from None
    if not isinstance(body, dict):
        raise UniPostResponseError(
            "UniPost answered with JSON that is not an object.",
            status=response.status_code,
            request_id=response.headers.get("X-Request-Id", ""),
        )
    return body


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    """Accept the live server's ``{"data": {...}}`` and the reference page's bare object."""
    data = body.get("data")
    return data if isinstance(data, dict) else body


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_session(
    body: Any, *, request_id: str = "", require_url: bool, http_status: int | None = None
) -> RemoteSession:
    """Turn a session answer into a :class:`RemoteSession`, or raise UniPostResponseError.

    The session's ``status`` is passed through exactly as sent: only the contract's
    lowercase values mean anything, and ``"Completed"`` must not be taken for success.
    ``http_status`` is the answer's HTTP status, recorded on any error raised.
    """
    if not isinstance(body, dict):
        raise UniPostResponseError(
            "UniPost's session answer is not a JSON object.", status=http_status, request_id=request_id
        )
    data = _unwrap(body)
    session_id = _str(data.get("id")).strip()
    status = _str(data.get("status"))
    url = _str(data.get("url")).strip()
    missing = [name for name, value in (("id", session_id), ("status", status.strip())) if not value]
    if require_url and not url:
        missing.append("url")
    if missing:
        raise UniPostResponseError(
            f"UniPost's session answer lacks {', '.join(missing)}.", status=http_status, request_id=request_id
        )
    if url and not is_http_url(url):
        raise UniPostResponseError(
            "UniPost's hosted url is not an http(s) address; refusing to use it.",
            status=http_status,
            request_id=request_id,
        )
    managed_account_id = _str(data.get("managed_account_id")) or _str(data.get("completed_social_account_id"))
    return RemoteSession(
        id=session_id,
        status=status,
        platform=_str(data.get("platform")),
        url=url,
        external_user_id=_str(data.get("external_user_id")),
        expires_at=parse_datetime(data.get("expires_at")),
        created_at=parse_datetime(data.get("created_at")),
        completed_at=parse_datetime(data.get("completed_at")),
        managed_account_id=managed_account_id,
        request_id=request_id,
        raw=data,
    )


def parse_accounts(
    body: dict[str, Any], *, request_id: str = "", http_status: int | None = None
) -> list[RemoteAccount]:
    data = body.get("data", body.get("accounts"))
    if not isinstance(data, list):
        raise UniPostResponseError(
            "UniPost's account list is not a list.", status=http_status, request_id=request_id
        )
    accounts = []
    for item in data:
        if isinstance(item, dict) and _str(item.get("id")):
            accounts.append(
                RemoteAccount(
                    id=_str(item.get("id")),
                    platform=_str(item.get("platform")),
                    account_name=_str(item.get("account_name")),
                    status=_str(item.get("status")),
                    external_user_id=_str(item.get("external_user_id")),
                    connection_type=_str(item.get("connection_type")),
                    connected_at=parse_datetime(item.get("connected_at")),
                )
            )
    return accounts


class _Answer(NamedTuple):
    """A 2xx answer: its JSON object, request id and HTTP status."""

    body: dict[str, Any]
    request_id: str
    status: int


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

    def list_accounts(self, *, external_user_id: str | None = None) -> list[RemoteAccount]:
        params = {"external_user_id": external_user_id} if external_user_id else None
        answer = self._request("GET", "/v1/accounts", params=params)
        return parse_accounts(answer.body, request_id=answer.request_id, http_status=answer.status)

    def delete_account(self, account_id: str) -> str:
        """Disconnect an account; returns the request id.

        UniPost answers 200 ``{"data": {"disconnected": true}}`` (again on a repeat);
        an empty 2xx is accepted too. An answer saying ``false`` is no confirmation.
        """
        answer = self._request("DELETE", f"/v1/accounts/{quote(account_id, safe='')}", allow_empty=True)
        disconnected = _unwrap(answer.body).get("disconnected", True)
        if disconnected is not True:
            raise UniPostResponseError(
                "UniPost did not confirm the disconnection: its answer's 'disconnected' is not true.",
                status=answer.status,
                request_id=answer.request_id,
            )
        return answer.request_id

    # -- transport -------------------------------------------------------------

    # ``headers`` carries the API key: Django's error reports (DEBUG pages, mails) must
    # not show it if an exception passes through here.
    @sensitive_variables("headers")
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
        url = self.base_url + path
        retries = self.max_retries if max_retries is None else max(0, max_retries)
        timeouts = self.timeout if timeout is None else timeout
        first_started = time.monotonic()
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                # No redirects: a 3xx is not part of the contract, and following one
                # would turn the create POST into a GET somewhere else.
                response = self.http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=timeouts,
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
                may_retry = idempotent or _never_sent(exc)
                logger.warning("UniPost %s %s failed: %s (attempt %d)", method, path, error.code, attempt)
            else:
                elapsed_ms = (time.monotonic() - started) * 1000
                if 200 <= response.status_code < 300:
                    request_id = response.headers.get("X-Request-Id", "")
                    logger.debug(
                        "UniPost %s %s -> %s in %.0f ms (request_id=%s)",
                        method,
                        path,
                        response.status_code,
                        elapsed_ms,
                        request_id,
                    )
                    if allow_empty and not response.content.strip():
                        return _Answer({}, request_id, response.status_code)
                    body = _json_object(response)
                    return _Answer(body, _request_id(response, body), response.status_code)
                error = error_from_response(response)
                logger.warning(
                    "UniPost %s %s -> %s %s (request_id=%s, attempt %d)",
                    method,
                    path,
                    response.status_code,
                    error.code,
                    error.request_id,
                    attempt,
                )
                may_retry = error.is_retriable and (idempotent or response.status_code == 429)
            if not may_retry or attempt > retries:
                raise error
            wait = self._wait_before_retry(error, attempt)
            if wait is None or time.monotonic() - first_started + wait > self.deadline:
                raise error
            (_sleep if self._sleep is None else self._sleep)(wait)

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
