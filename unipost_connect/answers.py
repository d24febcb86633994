"""Reading UniPost's answers: sessions and accounts as UniPost reports them, error
envelopes (and what is not one), request ids and ``Retry-After``. No HTTP is made here
and nothing of Django's models is known; every check is about the answer's shape.
"""

from __future__ import annotations

import email.utils
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from .contract import DEFAULT_BASE_URL
from .errors import (
    EndpointNotFoundError,
    UniPostError,
    UniPostResponseError,
    error_class_for_status,
)
from .validators import is_http_url, parse_datetime


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


def request_id_of(response: requests.Response, body: Any) -> str:
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


def error_from_response(response: requests.Response) -> UniPostError:
    """Build the error for a non-2xx answer, JSON envelope or not."""
    status = response.status_code
    cls = error_class_for_status(status)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    try:
        body = _load_json(response)
    except ValueError:
        body = None
    request_id = request_id_of(response, body)
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


def json_object(response: requests.Response) -> dict[str, Any]:
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


def unwrap(body: dict[str, Any]) -> dict[str, Any]:
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
    data = unwrap(body)
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
