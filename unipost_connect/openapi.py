"""The OpenAPI 3.1 document of the JSON API (``unipost_connect.api``), built as a dict.

Built on each call, from the URLconf (so the paths are wherever the site included the
app's URLs) and the settings (the platforms offered): nothing is frozen at import.
Every object in an answer is described with ``additionalProperties: false``, so a test
checking the views' real answers against this document catches a field it does not name.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.urls import reverse

from . import __version__
from .conf import app_settings
from .models import ConnectedAccount, ConnectSession
from .platforms import ALL_PLATFORMS

Schema = dict[str, Any]

# A placeholder id, replaced by the path template's ``{session_id}`` / ``{account_id}``.
_SOME_UUID = uuid.UUID(int=0)
_SOME_INT = 987654321

# Codes of failures of the request itself, and of UniPost, by status.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_request", "invalid_json", "unknown_platform"),
    401: ("not_authenticated",),
    403: ("csrf_failed", "forbidden"),
    404: ("not_found",),
    405: ("method_not_allowed",),
    409: ("start_in_progress",),
    410: ("unknown_at_unipost",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    502: ("unipost_error",),
    503: ("unipost_unreachable", "rate_limited", "misconfigured", "unavailable"),
}
# UniPost's own code, lowercased, is passed on for a refusal (402, 422): an open set.
PASSED_ON_CODE: Schema = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], description: str, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _path_of(name: str, **kwargs: Any) -> str:
    """The path of the URL ``name``, as an OpenAPI template (``{kwarg}`` for each kwarg)."""
    placeholders = {key: _SOME_UUID if key == "session_id" else _SOME_INT for key in kwargs}
    path = reverse(f"unipost_connect:{name}", kwargs=placeholders)
    for key, placeholder in placeholders.items():
        path = path.replace(str(placeholder), "{" + key + "}")
    return path


def _csrf_header() -> str:
    """``CSRF_HEADER_NAME`` (a WSGI environ key) as the header a browser sends."""
    name: str = settings.CSRF_HEADER_NAME
    if name == "HTTP_X_CSRFTOKEN":
        return "X-CSRFToken"
    return "-".join(part.capitalize() for part in name.removeprefix("HTTP_").split("_"))


def _schemas() -> dict[str, Schema]:
    platform = {"type": "string", "enum": list(ALL_PLATFORMS)}
    when: Schema = {"type": "string", "format": "date-time"}
    session_status = {"type": "string", "enum": [s.value for s in ConnectSession.Status]}
    return {
        "Platform": platform,
        "Account": _object(
            {
                "id": {"type": "integer", "description": "This site's id: the one to DELETE."},
                "platform": _ref("Platform"),
                "account_name": {"type": "string", "description": "As UniPost named it; may be empty."},
                "status": {"type": "string", "enum": [s.value for s in ConnectedAccount.Status]},
                "managed_account_id": {"type": "string", "description": "UniPost's id of the account."},
                "connected_at": when,
            },
            "An account UniPost holds for the user.",
        ),
        "AccountList": _object(
            {"accounts": {"type": "array", "items": _ref("Account")}},
            "The user's accounts, every status, by platform and then newest first.",
        ),
        "SessionStart": {
            "type": "object",
            "description": "What to start. Other fields are ignored; null is taken as absent.",
            "properties": {
                "platform": {
                    "type": "string",
                    "description": "One of the platforms this site offers: "
                    + ", ".join(app_settings.PLATFORMS)
                    + " (trimmed, any case).",
                },
                "next": {
                    "type": ["string", "null"],
                    "description": "Where on this site to send the user after the hosted page "
                    "when the flow ends in a full-page redirect; an unsafe value is dropped.",
                },
                "popup": {
                    "type": ["boolean", "null"],
                    "default": False,
                    "description": "The hosted page is opened in a popup window: the return page "
                    "then reports the outcome to this site's pages and closes itself.",
                },
            },
            "required": ["platform"],
        },
        "SessionStartForm": {
            "type": "object",
            "description": "The same fields, form-encoded; ``popup`` is 1/true/on/yes or 0/false/off/no.",
            "properties": {
                "platform": {"type": "string"},
                "next": {"type": "string"},
                "popup": {"type": "string"},
                "csrfmiddlewaretoken": {"type": "string", "description": "Instead of the header."},
            },
            "required": ["platform"],
        },
        "SessionStarted": _object(
            {
                "id": {"type": "string", "format": "uuid", "description": "This site's id of the session."},
                "platform": _ref("Platform"),
                "status": {"type": "string", "enum": ["pending"]},
                "url": {
                    "type": "string",
                    "format": "uri",
                    "description": "UniPost's hosted page, for this user only: open it (a popup or "
                    "the whole page); never log or share it.",
                },
                "expires_at": _nullable(when),
            },
            "A pending session (a new one, or the user's still pending one for the same platform).",
        ),
        "Session": _object(
            {
                "id": {"type": "string", "format": "uuid"},
                "platform": _ref("Platform"),
                "status": {
                    **session_status,
                    "description": "UniPost's word for a session that was pending; ``failed`` when it "
                    "could not be started.",
                },
                "managed_account_id": _nullable(
                    {"type": "string", "description": "UniPost's id of the account it connected."}
                ),
                "account": _nullable(_ref("Account")),
                "error": _nullable(_ref("SessionError")),
                "expires_at": _nullable(when),
            },
            "One of the user's sessions. ``account`` is the account it connected for this user "
            "(only when ``completed``); ``error`` says why it gave none, when something went wrong.",
        ),
        "SessionError": _object(
            {
                "code": {
                    **PASSED_ON_CODE,
                    "description": "``account_conflict`` (completed, but the account belongs to "
                    "another user of this site); ``access_denied`` or ``hosted_page_error`` (still "
                    "pending: the hosted page reported a problem on the way back, and the user may try "
                    "again); for a ``failed`` session, the code its start was answered with "
                    "(e.g. ``plan_platform_not_allowed``, ``validation_error``, ``unipost_unreachable``).",
                },
                "message": {"type": "string", "description": "For the user, in their language."},
            },
            "Why a session gave no account.",
        ),
        "Error": _object(
            {"error": _ref("ErrorBody")},
            "Every failure. Other methods than an endpoint's answer 405 ``method_not_allowed`` "
            "with an ``Allow`` header, in this shape.",
        ),
        "ErrorBody": _object(
            {
                "code": {
                    "type": "string",
                    "description": "Stable, for code to branch on; see each answer for its codes.",
                },
                "message": {
                    "type": "string",
                    "description": "For the user, in their language; never UniPost's own text.",
                },
            },
            "What went wrong.",
        ),
    }


def _error_answer(status: int, description: str, *, retry_after: bool = False) -> Schema:
    codes = ERROR_CODES.get(status)
    code: Schema = {"type": "string", "enum": list(codes)} if codes else PASSED_ON_CODE
    body = _object(
        {
            "error": _object(
                {"code": code, "message": {"type": "string"}}, "What went wrong.", ["code", "message"]
            )
        },
        "See the Error schema.",
    )
    answer: Schema = {"description": description, "content": {"application/json": {"schema": body}}}
    if retry_after:
        answer["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return answer


def _responses() -> dict[str, Schema]:
    return {
        "BadRequest": _error_answer(
            400,
            "``invalid_request``: a field of the wrong type, a missing ``platform``, an unreadable "
            "body or header; ``invalid_json``: the body is not a JSON object; ``unknown_platform``: "
            "not a platform this site offers.",
        ),
        "NotAuthenticated": _error_answer(
            401, "``not_authenticated``: no logged-in user (never a redirect to the login page)."
        ),
        "PlanLimit": _error_answer(
            402,
            "UniPost refused: the site's plan does not allow it. UniPost's code, lowercased "
            "(``plan_platform_not_allowed``, ``plan_feature_not_available``, ...).",
        ),
        "CsrfFailed": _error_answer(
            403,
            "``csrf_failed``: Django's CSRF check failed (send the ``csrftoken`` cookie's value in the "
            "CSRF header; HTTPS requests also need a same-origin ``Origin`` or ``Referer``); "
            "``forbidden``: the user may see the account but not manage it (``CAN_MANAGE_ACCOUNT``).",
        ),
        "NotFound": _error_answer(404, "``not_found``: not one of the user's, or no such id."),
        "StartInProgress": _error_answer(
            409, "``start_in_progress``: another request is still starting this platform for the user."
        ),
        "UnknownAtUniPost": _error_answer(
            410, "``unknown_at_unipost``: UniPost no longer knows the session; start again."
        ),
        "PayloadTooLarge": _error_answer(413, "``payload_too_large``: the body is over 16 KiB."),
        "UnsupportedMediaType": _error_answer(
            415, "``unsupported_media_type``: send JSON or a form (URL-encoded or multipart)."
        ),
        "Refused": _error_answer(
            422,
            "UniPost (or this site, before asking it) refused the request as invalid; retrying will not "
            "help. UniPost's code, lowercased (``validation_error``, ...), or ``invalid_external_user_id`` "
            "/ ``invalid_profile_id`` for this site's settings.",
        ),
        "BadGateway": _error_answer(
            502,
            "``unipost_error``: UniPost failed or answered something unusable. Try again after "
            "``Retry-After`` seconds.",
            retry_after=True,
        ),
        "Unavailable": _error_answer(
            503,
            "``unipost_unreachable`` (no answer from UniPost) and ``rate_limited`` (UniPost is pacing "
            "this site) come with ``Retry-After``; ``misconfigured`` (UniPost refuses this site's API "
            "key or base URL) and ``unavailable`` (an unexpected error on this site, logged) come "
            "without.",
            retry_after=True,
        ),
    }


def _answers(*names: str) -> dict[str, Schema]:
    status = {
        "BadRequest": "400",
        "NotAuthenticated": "401",
        "PlanLimit": "402",
        "CsrfFailed": "403",
        "NotFound": "404",
        "StartInProgress": "409",
        "UnknownAtUniPost": "410",
        "PayloadTooLarge": "413",
        "UnsupportedMediaType": "415",
        "Refused": "422",
        "BadGateway": "502",
        "Unavailable": "503",
    }
    common = ("BadRequest", "NotAuthenticated", "PayloadTooLarge", "Unavailable")
    unipost = ("PlanLimit", "UnknownAtUniPost", "Refused", "BadGateway")
    chosen = {*common, *(n for name in names for n in (unipost if name == "UniPost" else (name,)))}
    return {
        status[name]: {"$ref": f"#/components/responses/{name}"}
        for name in sorted(chosen, key=lambda n: status[n])
    }


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


WRITE_SECURITY: list[dict[str, list[str]]] = [{"session": [], "csrf": []}]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON API, for the site's current URLs and settings."""
    session_id = {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    account_id = {"name": "account_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "unipost_connect JSON API",
            "version": __version__,
            "description": (
                "Connect a logged-in user's social accounts through UniPost's hosted Connect flow, "
                "from this site's own pages. Authenticated by the Django session (same site only); "
                "writes need the CSRF token in the CSRF header. JSON in (or a form) and out; every "
                "answer is ``Cache-Control: no-store``; every failure is the Error schema, never an "
                "HTML page or a redirect."
            ),
        },
        "security": [{"session": []}],
        "paths": {
            _path_of("api-sessions"): {
                "post": {
                    "operationId": "startSession",
                    "summary": "Start a connect session (or reuse the user's pending one).",
                    "security": WRITE_SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("SessionStart")},
                            "application/x-www-form-urlencoded": {"schema": _ref("SessionStartForm")},
                            "multipart/form-data": {"schema": _ref("SessionStartForm")},
                        },
                    },
                    "responses": {
                        "201": {
                            **_json(_ref("SessionStarted"), "Started: send the user to ``url``."),
                            "headers": {
                                "Location": {
                                    "description": "The session's status endpoint.",
                                    "schema": {"type": "string"},
                                }
                            },
                        },
                        **_answers("CsrfFailed", "StartInProgress", "UnsupportedMediaType", "UniPost"),
                    },
                }
            },
            _path_of("api-session", session_id=True): {
                "get": {
                    "operationId": "getSession",
                    "summary": "One of the user's sessions; a pending one is asked about at UniPost first.",
                    "parameters": [session_id],
                    "responses": {
                        "200": _json(_ref("Session"), "The session, as UniPost now reports it."),
                        **_answers("NotFound", "UniPost"),
                    },
                }
            },
            _path_of("api-accounts"): {
                "get": {
                    "operationId": "listAccounts",
                    "summary": "The user's accounts.",
                    "responses": {"200": _json(_ref("AccountList"), "The accounts."), **_answers()},
                }
            },
            _path_of("api-account", account_id=True): {
                "delete": {
                    "operationId": "disconnectAccount",
                    "summary": "Disconnect one of the owner's accounts at UniPost, then here.",
                    "security": WRITE_SECURITY,
                    "parameters": [account_id],
                    "responses": {
                        "204": {"description": "Disconnected (also when it already was)."},
                        **_answers("CsrfFailed", "NotFound", "UniPost"),
                    },
                }
            },
            _path_of("api-schema"): {
                "get": {
                    "operationId": "getSchema",
                    "summary": "This document.",
                    "responses": {
                        "200": _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1."),
                        **_answers(),
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before trying again (UniPost's hint when it gave one).",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "securitySchemes": {
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": settings.SESSION_COOKIE_NAME,
                    "description": "The Django session of a logged-in user.",
                },
                "csrf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": _csrf_header(),
                    "description": "Django's CSRF token (the ``csrftoken`` cookie's value), on writes.",
                },
            },
        },
    }
