"""The JSON API, for sites with their own front end: thin views over the same services
as the HTML views.

Every answer is JSON with ``Cache-Control: no-store``; every failure is
``{"error": {"code": "...", "message": "..."}}``, ``message`` being the user's text in
their language (never UniPost's words). Callers are the site's own pages: the Django
session authenticates them, and writes are CSRF-checked by Django's own machinery
(header ``X-CSRFToken``). ``unipost_connect.openapi`` describes it all.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.core.exceptions import SuspiciousOperation
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.log import log_response
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from . import openapi, services
from .accounts import ACCOUNT_CONFLICT, owned_by
from .errors import (
    AuthenticationError,
    EndpointNotFoundError,
    NotFoundError,
    PlanLimitError,
    RateLimitedError,
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
    UniPostValidationError,
    error_from_record,
)
from .models import ConnectedAccount, ConnectSession
from .user_messages import (
    REASON_MESSAGES,
    message_for_disconnect_error,
    message_for_error,
    message_for_not_allowed_to_manage,
    message_for_outcome,
    message_for_start_in_progress,
    message_for_unknown_platform,
)
from .validators import is_http_url, safe_next

if TYPE_CHECKING:
    from django.contrib.auth.models import _User

    class _AuthenticatedRequest(HttpRequest):
        """What an API view receives once the caller is known to be logged in."""

        user: _User


logger = logging.getLogger("unipost_connect")
csrf_logger = logging.getLogger("django.security.csrf")

# Bodies are a few short fields; anything larger is not one of ours.
MAX_BODY_BYTES = 16 * 1024

# Seconds to suggest in ``Retry-After`` when UniPost gave no hint of its own.
RETRY_AFTER_UNREACHABLE = 30
RETRY_AFTER_RATE_LIMITED = 60
# A hint beyond this is not passed on as it is (a far-off HTTP date, say).
RETRY_AFTER_MAX = 24 * 3600

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
TRUE_VALUES = ("1", "true", "on", "yes")
FALSE_VALUES = ("", "0", "false", "off", "no")

# UniPost's own codes are passed on lowercased, when they look like codes.
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class ApiError(Exception):
    """A failure answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def response(self) -> JsonResponse:
        response = JsonResponse({"error": {"code": self.code, "message": self.message}}, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


def _retry_after(hint: float | None, default: int) -> int:
    if hint is None:
        return default
    return min(max(1, math.ceil(hint)), RETRY_AFTER_MAX)


def _passed_on(error: UniPostError, default: str) -> str:
    return error.normalized_code if _CODE.fullmatch(error.normalized_code) else default


def unipost_failure(error: UniPostError, message: str) -> ApiError:
    """How a failure talking to UniPost is answered: a refusal is a 4xx with UniPost's
    code; UniPost unreachable, rate limiting or answering badly is a 502/503 with a
    ``Retry-After``; a site whose key or base URL UniPost refuses is a 503 without one.
    """
    if isinstance(error, PlanLimitError):
        return ApiError(402, _passed_on(error, "plan_limit"), message)
    if isinstance(error, UniPostValidationError):
        return ApiError(422, _passed_on(error, "validation_error"), message)
    if isinstance(error, NotFoundError):
        return ApiError(410, "unknown_at_unipost", message)
    if isinstance(error, (AuthenticationError, EndpointNotFoundError)):
        return ApiError(503, "misconfigured", message)
    if isinstance(error, RateLimitedError):
        return ApiError(
            503,
            "rate_limited",
            message,
            retry_after=_retry_after(error.retry_after, RETRY_AFTER_RATE_LIMITED),
        )
    if isinstance(error, UniPostConnectionError):
        return ApiError(
            503,
            "unipost_unreachable",
            message,
            retry_after=_retry_after(error.retry_after, RETRY_AFTER_UNREACHABLE),
        )
    return ApiError(
        502, "unipost_error", message, retry_after=_retry_after(error.retry_after, RETRY_AFTER_UNREACHABLE)
    )


# -- refusals of the request itself --------------------------------------------------------------


def _not_authenticated() -> ApiError:
    return ApiError(401, "not_authenticated", _("Please log in, then try again."))


def _not_found() -> ApiError:
    return ApiError(404, "not_found", _("This was not found. Please reload the page and try again."))


def _not_allowed(methods: tuple[str, ...]) -> ApiError:
    return ApiError(
        405,
        "method_not_allowed",
        _("This request is not supported here."),
        headers={"Allow": ", ".join(methods)},
    )


def _invalid(code: str = "invalid_request") -> ApiError:
    return ApiError(
        400, code, _("The request could not be understood. Please reload the page and try again.")
    )


def _too_large() -> ApiError:
    return ApiError(413, "payload_too_large", _("The request is too large."))


def _unexpected() -> ApiError:
    return ApiError(
        503, "unavailable", _("Something went wrong on this site. Please try again in a few minutes.")
    )


class _JsonCsrf(CsrfViewMiddleware):
    """Django's CSRF check, run as ``csrf_protect`` runs it, with a refusal answered as JSON."""

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponse:
        response = ApiError(
            403,
            "csrf_failed",
            _("Your session has expired or this page is out of date. Please reload the page and try again."),
        ).response()
        # As Django's own refusal is logged: the reason, for the site's operators.
        log_response(
            "Forbidden (%s): %s", reason, request.path, response=response, request=request, logger=csrf_logger
        )
        return response


def _no_view(request: HttpRequest) -> HttpResponse:  # pragma: no cover - never called
    raise AssertionError("the CSRF middleware is only asked about requests here")


def _declared_length(request: HttpRequest) -> int:
    declared = request.headers.get("content-length") or "0"
    if not declared.isdigit():
        raise _invalid()
    return int(declared)


def _roll_back_request_transaction(view_is_atomic: bool) -> None:
    """Undo what a failed view wrote inside ``ATOMIC_REQUESTS``' transaction: answering
    the failure keeps that transaction from seeing the exception that would roll it back."""
    for connection in connections.all(initialized_only=True):
        if not connection.settings_dict.get("ATOMIC_REQUESTS") or not connection.in_atomic_block:
            continue
        if connection.alias == DEFAULT_DB_ALIAS and not view_is_atomic:
            continue  # the view runs in autocommit there: what it wrote is meant to stay
        transaction.set_rollback(True, using=connection.alias)


_View = Callable[..., HttpResponse]


def endpoint(*methods: str, atomic: bool = True) -> Callable[[_View], _View]:
    """Make ``view`` a JSON endpoint answering ``methods``, for logged-in callers only.

    In order: 405 for another method, 401 for an anonymous caller, 413 for a body over
    ``MAX_BODY_BYTES``, 403 when a write fails Django's CSRF check; then the view. Any
    :class:`ApiError` is answered as JSON, and an unexpected exception is logged and
    answered 503: never an HTML page, a login redirect, or a 500.

    ``atomic=False``: the view is not wrapped in ``ATOMIC_REQUESTS``' transaction (on the
    default database), as ``transaction.non_atomic_requests`` does.
    """

    def decorate(view: _View) -> _View:
        @wraps(view)
        def api_view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            csrf = _JsonCsrf(_no_view)
            csrf.process_request(request)
            try:
                response = _checked(request, methods, view, kwargs, csrf)
            except ApiError as exc:
                response = exc.response()
            except SuspiciousOperation as exc:
                # As Django itself reports one (a 400), to the same logger.
                security = logging.getLogger(f"django.security.{type(exc).__name__}")
                security.error(str(exc))
                response = _invalid().response()
            except Exception:
                logger.exception("Unexpected error in %s %s", request.method, request.path)
                _roll_back_request_transaction(atomic)
                response = _unexpected().response()
            final = csrf.process_response(request, response)
            add_never_cache_headers(final)
            assert isinstance(final, HttpResponse)
            return final

        # Checked in api_view, so a refusal is answered as JSON, not by Django's page.
        exempt = csrf_exempt(api_view)
        return exempt if atomic else transaction.non_atomic_requests(exempt)

    return decorate


def _checked(
    request: HttpRequest, methods: tuple[str, ...], view: _View, kwargs: dict[str, Any], csrf: _JsonCsrf
) -> HttpResponse:
    if request.method not in methods:
        raise _not_allowed(methods)
    if not request.user.is_authenticated:
        raise _not_authenticated()
    if _declared_length(request) > MAX_BODY_BYTES:
        raise _too_large()
    if request.method not in SAFE_METHODS:
        refused = csrf.process_view(request, view, (), kwargs)
        if refused is not None:
            assert isinstance(refused, HttpResponse)
            return refused
    elif not request.META.get("CSRF_COOKIE"):
        get_token(request)  # a page built on the API gets the CSRF cookie its writes need
    return view(request, **kwargs)


# -- request bodies -------------------------------------------------------------------------------


def _fields(request: HttpRequest) -> Mapping[str, Any]:
    """The body's fields: a JSON object, or a form (URL-encoded or multipart)."""
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise _too_large()
    content_type = request.content_type or ""
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise _invalid("invalid_json") from None
        if not isinstance(data, dict):
            raise _invalid("invalid_json")
        return data
    if content_type in FORM_TYPES:
        try:
            form: QueryDict = request.POST
        except MultiPartParserError:
            raise _invalid() from None
        return {key: form.get(key) for key in form}
    if not body:
        return {}
    raise ApiError(
        415,
        "unsupported_media_type",
        _("The request could not be understood. Please reload the page and try again."),
    )


# An optional field given as null is taken as absent.


def _text(fields: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = fields.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _invalid()
    return value


def _flag(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_VALUES + FALSE_VALUES:
        return value.strip().lower() in TRUE_VALUES
    raise _invalid()


# -- answers --------------------------------------------------------------------------------------


def account_json(account: ConnectedAccount) -> dict[str, Any]:
    return {
        "id": account.pk,
        "platform": account.platform,
        "account_name": account.account_name,
        "status": account.status,
        "managed_account_id": account.managed_account_id,
        "connected_at": account.connected_at,
    }


def _session_problem(session: ConnectSession) -> dict[str, str] | None:
    """Why the session gave this user no account, when something went wrong; else None."""
    status = session.status
    if status == ConnectSession.Status.FAILED:
        error = error_from_record(session.error_code, session.error_message, session.request_id)
        message = message_for_error(error, platform=session.platform)
        return {"code": unipost_failure(error, message).code, "message": message}
    if status == ConnectSession.Status.COMPLETED and session.error_code == ACCOUNT_CONFLICT:
        return {"code": "account_conflict", "message": message_for_outcome(session)[1]}
    if status == ConnectSession.Status.PENDING and session.return_status in ("error", "cancelled"):
        # The hosted page said so on the way back: a hint, which only picks the words.
        code = session.return_reason if session.return_reason in REASON_MESSAGES else "hosted_page_error"
        return {"code": code, "message": message_for_outcome(session)[1]}
    return None


def session_json(session: ConnectSession) -> dict[str, Any]:
    conflict = session.error_code == ACCOUNT_CONFLICT
    got = None
    if session.status == ConnectSession.Status.COMPLETED and session.managed_account_id and not conflict:
        got = ConnectedAccount.objects.filter(managed_account_id=session.managed_account_id).first()
        if got is not None and not owned_by(
            got, external_user_id=session.external_user_id, user_id=session.user_id
        ):
            got = None
    return {
        "id": session.pk,
        "platform": session.platform,
        "status": session.status,
        # Another user's account is not named to this one.
        "managed_account_id": (session.managed_account_id or None) if not conflict else None,
        "account": account_json(got) if got is not None else None,
        "error": _session_problem(session),
        "expires_at": session.expires_at,
    }


# -- the endpoints --------------------------------------------------------------------------------


# Each statement commits on its own, even under ATOMIC_REQUESTS: as for the HTML start, the
# row must be visible to a concurrent click before UniPost is called.
@endpoint("POST", atomic=False)
def sessions(request: _AuthenticatedRequest) -> HttpResponse:
    """POST ``{"platform", "next"?, "popup"?}``: start (or reuse) a session; 201 with its url."""
    fields = _fields(request)
    platform = _text(fields, "platform", required=True)
    next_url = safe_next(request, _text(fields, "next"))
    popup = _flag(fields, "popup")
    try:
        session = services.start_session(
            request.user, platform, request=request, next_url=next_url, popup=popup
        )
    except services.UnknownPlatformError:
        raise _invalid_platform() from None
    except services.StartInProgressError:
        raise ApiError(409, "start_in_progress", message_for_start_in_progress(platform)) from None
    except UniPostError as exc:
        raise unipost_failure(exc, message_for_error(exc, platform=platform)) from None
    if not is_http_url(session.url):
        # The client refuses such answers; this guards rows written by anything else.
        logger.error("Connect session %s has no usable hosted url; not handing it out.", session.pk)
        unusable = UniPostResponseError("Unusable hosted url.")
        raise unipost_failure(unusable, message_for_error(unusable, platform=platform))
    response = JsonResponse(
        {
            "id": session.pk,
            "platform": session.platform,
            "status": session.status,
            "url": session.url,
            "expires_at": session.expires_at,
        },
        status=201,
    )
    response["Location"] = reverse("unipost_connect:api-session", kwargs={"session_id": session.pk})
    return response


def _invalid_platform() -> ApiError:
    return ApiError(400, "unknown_platform", message_for_unknown_platform())


@endpoint("GET")
def session(request: _AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """GET one of the user's sessions; a pending one is asked about at UniPost first."""
    found = ConnectSession.objects.filter(pk=session_id, user_id=request.user.pk).first()
    if found is None:
        raise _not_found()
    if found.is_pending:
        try:
            found = services.reconcile_session(found, name_account=True)
        except UniPostError as exc:
            raise unipost_failure(exc, message_for_error(exc, platform=found.platform)) from None
    return JsonResponse(session_json(found))


@endpoint("GET")
def accounts(request: _AuthenticatedRequest) -> HttpResponse:
    """GET the user's accounts, as the connections page lists them."""
    return JsonResponse({"accounts": [account_json(a) for a in services.user_accounts(request.user)]})


@endpoint("DELETE")
def account(request: _AuthenticatedRequest, account_id: int) -> HttpResponse:
    """DELETE: disconnect one of the owner's accounts at UniPost, then mark it locally; 204.
    Another owner's account is not found (404); one ``CAN_MANAGE_ACCOUNT`` keeps from
    this user is refused (403 ``forbidden``)."""
    found = services.user_accounts(request.user).filter(pk=account_id).first()
    if found is None:
        raise _not_found()
    if not services.can_manage(request.user, found):
        raise ApiError(403, "forbidden", message_for_not_allowed_to_manage(found.platform))
    try:
        services.disconnect_account(found)
    except UniPostError as exc:
        raise unipost_failure(exc, message_for_disconnect_error(exc, platform=found.platform)) from None
    response = HttpResponse(status=204)
    del response["Content-Type"]  # no content, so no type of it
    return response


@endpoint("GET")
def schema(request: _AuthenticatedRequest) -> HttpResponse:
    """GET the OpenAPI 3.1 document of this API."""
    return JsonResponse(openapi.document())


@csrf_exempt  # answers nothing but a 404, whatever the method
def not_found(request: HttpRequest, rest: str) -> HttpResponse:
    """Any other path under ``api/`` (an id of the wrong shape, say): a JSON 404, not the
    site's HTML page, so a script always gets the error shape it expects."""
    response = _not_found().response()
    add_never_cache_headers(response)
    return response
