"""The fake's REST API: the routes, the JSON envelopes and a create's validation, as the
live server answers them, over the state in :class:`~unipost_connect.testing.FakeUniPost`.

Order of a call, as on the live server: the router (an unknown route is its plain-text
404), then an injected fault, then the API key, then the endpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..contract import EXTERNAL_USER_ID_MAX_BYTES
from ..platforms import ALL_PLATFORMS, OAUTH_FREE_PLATFORMS, normalize
from .records import FakeResponse, InjectedFault, new_id

if TYPE_CHECKING:
    from .fake import FakeUniPost

ACCOUNTS_LIMIT = 100  # the page size GET /v1/accounts reports in meta.limit
ACCOUNT_FILTERS = ("external_user_id", "platform", "profile_id")
_STRING_FIELDS = ("platform", "profile_id", "external_user_id", "external_user_email", "return_url")
_INVALID = "VALIDATION_ERROR"


def answer(
    fake: FakeUniPost, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> FakeResponse:
    """Answer one API call (``path`` without the base URL's path prefix)."""
    endpoint, arg = route(method, path)
    request_id = new_id()
    if endpoint is None:
        # The router's own page: not JSON, so a wrong base URL is not "not found".
        return FakeResponse(
            404,
            b"404 page not found\n",
            {"Content-Type": "text/plain; charset=utf-8", "X-Request-Id": request_id},
        )
    fault = fake._take_fault(endpoint)
    if fault is not None:
        return _fault_answer(fault, request_id)
    authorization = {k.lower(): v for k, v in headers.items()}.get("authorization")
    if authorization != f"Bearer {fake.api_key}":
        return error(401, "UNAUTHORIZED", "Invalid or missing API key", request_id)
    return _ENDPOINTS[endpoint](fake, arg, query, body, request_id)


def route(method: str, path: str) -> tuple[str | None, str]:
    """The endpoint name (those :meth:`FakeUniPost.fail_next` takes) and its path argument."""
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


# -- envelopes ------------------------------------------------------------------------------


def _json(status: int, payload: Any, request_id: str) -> FakeResponse:
    return FakeResponse(
        status,
        json.dumps(payload).encode(),
        {"Content-Type": "application/json", "X-Request-Id": request_id},
    )


def _ok(fake: FakeUniPost, status: int, data: Any, request_id: str, **beside: Any) -> FakeResponse:
    if fake.envelope:
        payload: Any = {"data": data, **beside, "request_id": request_id}
    else:
        payload = {"data": data, **beside} if beside else data
    return _json(status, payload, request_id)


def error(status: int, code: str, message: str, request_id: str, **extra: Any) -> FakeResponse:
    """An error envelope; a 401 has the authentication layer's short one."""
    payload: dict[str, Any]
    if status == 401:
        # The authentication layer answers before the API's error writer runs.
        payload = {"error": {"code": code, "message": message}}
    else:
        payload = {
            "error": {"code": code, "normalized_code": code.lower(), "message": message, **extra},
            "request_id": request_id,
        }
    return _json(status, payload, request_id)


def _fault_answer(fault: InjectedFault, request_id: str) -> FakeResponse:
    if fault.exception is not None:
        raise fault.exception
    # A request id given in the headers is the one the body carries too.
    given = [v for k, v in fault.headers.items() if k.lower() == "x-request-id"]
    request_id = given[0] if given else request_id
    if fault.body is not None:
        return FakeResponse(fault.status, fault.body, {"X-Request-Id": request_id, **fault.headers})
    envelope = error(fault.status, fault.code, fault.message, request_id, **fault.extra)
    return FakeResponse(envelope.status, envelope.body, {**envelope.headers, **fault.headers})


# -- endpoints -----------------------------------------------------------------------------


def _create(fake: FakeUniPost, arg: str, query: str, body: bytes, request_id: str) -> FakeResponse:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not _types_ok(data):
        return error(422, _INVALID, "Invalid request body", request_id)
    refusal = _field_refusal(data) or _workspace_refusal(fake, data)
    if refusal is not None:
        return error(*refusal, request_id)
    session = fake._open_session(
        platform=normalize(data.get("platform")),
        external_user_id=_external_user_id(data),
        external_user_email=data.get("external_user_email") or None,
        return_url=data.get("return_url"),
        profile_id=_profile_id(data),
        allow_quickstart_creds=bool(data.get("allow_quickstart_creds")),
    )
    return _ok(fake, 201, session.as_json(), request_id)


def _types_ok(data: Mapping[str, Any]) -> bool:
    """The create body's JSON types (null counts as absent, as Go's decoder has it)."""
    for name in _STRING_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            return False
    quickstart = data.get("allow_quickstart_creds")
    return quickstart is None or isinstance(quickstart, bool)


def _external_user_id(data: Mapping[str, Any]) -> str:
    return str(data.get("external_user_id") or "").strip()


def _profile_id(data: Mapping[str, Any]) -> str | None:
    return str(data.get("profile_id") or "").strip() or None


def _field_refusal(data: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """Why the fields alone are refused, as (status, code, message); None if they are not."""
    if normalize(data.get("platform")) not in ALL_PLATFORMS:
        return 422, _INVALID, f"platform must be one of {' '.join(ALL_PLATFORMS)}"
    # The server counts UTF-8 bytes, not characters.
    size = len(_external_user_id(data).encode("utf-8", "surrogatepass"))
    if not 1 <= size <= EXTERNAL_USER_ID_MAX_BYTES:
        return 422, _INVALID, f"external_user_id is required (1-{EXTERNAL_USER_ID_MAX_BYTES} bytes)"
    return_url = data.get("return_url")
    if return_url is not None and not _absolute_http(return_url):
        return 422, _INVALID, "return_url must be an http(s) URL"
    return None


def _absolute_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed "[" in the host: refused, as the live server does
        return False
    return parts.scheme in ("http", "https") and bool(host)


def _workspace_refusal(fake: FakeUniPost, data: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """Why this workspace (profiles, plan, platform credentials) refuses the session."""
    platform = normalize(data.get("platform"))
    profile_id = _profile_id(data)
    if profile_id is None and len(fake.profiles) > 1:
        return 422, _INVALID, "Workspace has multiple profiles; include profile_id"
    if profile_id is not None and profile_id not in fake.profiles:
        return 422, _INVALID, "profile_id not found in this workspace"
    if platform not in fake.plan_platforms:
        return (
            402,
            "PLAN_PLATFORM_NOT_ALLOWED",
            f"connecting {platform} accounts requires a paid plan — upgrade at unipost.dev/pricing",
        )
    quickstart = bool(data.get("allow_quickstart_creds"))
    if platform not in OAUTH_FREE_PLATFORMS and not quickstart and platform not in fake.platform_credentials:
        return (
            422,
            _INVALID,
            f"workspace is missing {platform} platform credentials; upload workspace Platform "
            "Credentials first or pass allow_quickstart_creds=true",
        )
    return None


def _get(fake: FakeUniPost, session_id: str, query: str, body: bytes, request_id: str) -> FakeResponse:
    session = fake.get_session(session_id)
    if session is None:
        return error(404, "NOT_FOUND", "Connect session not found", request_id)
    return _ok(fake, 200, session.as_json(), request_id)


def _list_accounts(fake: FakeUniPost, arg: str, query: str, body: bytes, request_id: str) -> FakeResponse:
    wanted = {k: v[0] for k, v in parse_qs(query).items() if k in ACCOUNT_FILTERS}
    matches = [account.as_json() for account in fake._accounts_matching(wanted)]
    meta = {"total": len(matches), "limit": ACCOUNTS_LIMIT}
    return _ok(fake, 200, matches[:ACCOUNTS_LIMIT], request_id, meta=meta)


def _delete_account(
    fake: FakeUniPost, account_id: str, query: str, body: bytes, request_id: str
) -> FakeResponse:
    if fake.accounts.get(account_id) is None:
        return error(404, "NOT_FOUND", "Account not found", request_id)
    fake.disconnect(account_id)
    return _ok(fake, 200, {"disconnected": True}, request_id)


# Each endpoint takes (fake, path argument, query, body, request id).
_ENDPOINTS: dict[str, Callable[[FakeUniPost, str, str, bytes, str], FakeResponse]] = {
    "create": _create,
    "get": _get,
    "accounts": _list_accounts,
    "delete": _delete_account,
}


# -- the ``responses`` integration ----------------------------------------------------------


def responses_callback(fake: FakeUniPost, base: str) -> Callable[[Any], tuple[int, dict[str, str], bytes]]:
    """A ``responses`` callback answering requests under ``base`` from ``fake``."""
    base_path = urlsplit(base).path

    def callback(request: Any) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(request.url)
        path = parts.path[len(base_path) :] if base_path else parts.path
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        reply = fake.handle(request.method, path, query=parts.query, headers=request.headers, body=body)
        return reply.status, dict(reply.headers), reply.body

    return callback
