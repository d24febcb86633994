"""Thin views: read the request, call :mod:`unipost_connect.services`, redirect or render."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render, resolve_url
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.utils.log import log_response
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST, require_safe

from . import connections_page, services, webhooks
from .conf import app_settings
from .errors import UniPostError, UniPostResponseError
from .models import ConnectSession
from .platforms import label as platform_label
from .templatetags.unipost_connect import CONNECTED_ACCOUNTS_CONTEXT_KEY
from .user_messages import (
    message_for_disconnect_error,
    message_for_error,
    message_for_not_allowed_to_manage,
    message_for_outcome,
)
from .validators import is_http_url, safe_next

if TYPE_CHECKING:
    from django.contrib.auth.models import _User

    class _AuthenticatedRequest(HttpRequest):
        """What a ``login_required`` view receives: ``user`` is the project's user model.

        ``_User`` is django-stubs' alias for AUTH_USER_MODEL, resolved by its mypy plugin.
        """

        user: _User


logger = logging.getLogger("unipost_connect")


def _done(request: HttpRequest, next_url: str = "") -> HttpResponseRedirect:
    """Send the user on: to ``next_url`` when it is safe, else to ``REDIRECT_URL``."""
    return HttpResponseRedirect(safe_next(request, next_url) or resolve_url(app_settings.REDIRECT_URL))


def _popup_done(request: HttpRequest, session: ConnectSession) -> HttpResponse:
    """The popup's last page: it tells the window that opened it (or, when COOP cut it off,
    any page of this origin listening) which session came back, then closes itself; with no
    one listening it goes on to where ``_done`` would have sent it.

    No secret is in it (never the hosted url or its state) and it is never cached.
    """
    response = render(
        request,
        "unipost_connect/popup_return.html",
        {
            "session_id": str(session.pk),
            "status": session.status,
            "origin": f"{request.scheme}://{request.get_host()}",
            "next": safe_next(request, session.next_url) or resolve_url(app_settings.REDIRECT_URL),
            "platform": platform_label(session.platform),
        },
    )
    add_never_cache_headers(response)
    return response


def _tell(request: HttpRequest, level: int, text: str) -> None:
    # fail_silently: a site without the messages app still gets its redirect, not a 500.
    messages.add_message(request, level, text, fail_silently=True)


def _login_then(next_url: str) -> HttpResponseRedirect:
    """The login page for a POST-only view: afterwards, back to the page the button was on.

    ``login_required`` would send the user back to a GET of the POST-only view (a 405).
    """
    return redirect_to_login(next_url or resolve_url(app_settings.REDIRECT_URL))


# What the ``popup`` form field may say for "yes".
POPUP_VALUES = frozenset({"1", "true", "on", "yes"})


# Each statement commits on its own, even under ATOMIC_REQUESTS: the row must be visible
# to a concurrent click (which then waits for it) before UniPost is called.
@transaction.non_atomic_requests
@require_POST
@csrf_protect
def start(request: HttpRequest) -> HttpResponse:
    """POST ``platform`` (and optional ``next``, and ``popup=1`` when the hosted page opens in
    a popup window): start a connect session, 302 to UniPost."""
    next_url = safe_next(request, request.POST.get("next"))
    if not request.user.is_authenticated:
        return _login_then(next_url)
    platform = request.POST.get("platform", "")
    popup = request.POST.get("popup", "") in POPUP_VALUES
    try:
        session = services.start_session(
            request.user, platform, request=request, next_url=next_url, popup=popup
        )
    except services.UnknownPlatformError:
        _tell(request, messages.ERROR, _("That platform cannot be connected here."))
        return _done(request, next_url)
    except services.StartInProgressError:
        _tell(
            request,
            messages.INFO,
            _(
                "Your %(platform)s connection is already being started in another tab or window. "
                "Please wait a moment and try again."
            )
            % {"platform": platform_label(platform)},
        )
        return _done(request, next_url)
    except UniPostError as exc:
        _tell(request, messages.ERROR, message_for_error(exc, platform=platform))
        return _done(request, next_url)
    if not is_http_url(session.url):
        # The client refuses such answers; this guards rows written by anything else.
        logger.error("Connect session %s has no usable hosted url; not redirecting.", session.pk)
        _tell(request, messages.ERROR, message_for_error(UniPostResponseError("Unusable hosted url.")))
        return _done(request, next_url)
    return HttpResponseRedirect(session.url)


@require_GET
@login_required
def return_(request: _AuthenticatedRequest, session_id: uuid.UUID) -> HttpResponse:
    """Where UniPost sends the browser back; the query string is a hint, the API the truth."""
    session = get_object_or_404(ConnectSession, pk=session_id, user_id=request.user.pk)
    hint = (request.GET.get("connect_status", ""), request.GET.get("reason", ""))
    try:
        session = services.reconcile_session(session, hint=hint, name_account=True)
    except UniPostError as exc:
        _tell(request, messages.ERROR, message_for_error(exc, platform=session.platform))
    else:
        level, text = message_for_outcome(session)
        _tell(request, level, text)
    if session.popup:
        return _popup_done(request, session)
    return _done(request, session.next_url)


@require_safe
@login_required
def connections(request: _AuthenticatedRequest) -> HttpResponse:
    """A card per platform with the accounts of the user's owner (a team's, say) and what
    the user may do with them, and the user's recent attempts."""
    accounts = list(services.user_accounts(request.user))
    sessions = services.user_sessions(request.user, limit=10)
    return render(
        request,
        "unipost_connect/connections.html",
        {
            "cards": connections_page.platform_cards(request.user, app_settings.PLATFORMS, accounts),
            "attempts": connections_page.attempts(sessions),
            # For templates of a site's own: the same, unarranged.
            "accounts": accounts,
            "sessions": sessions,
            # Handed to {% unipost_connect_button %} so it does not query once per platform.
            CONNECTED_ACCOUNTS_CONTEXT_KEY: services.button_accounts(accounts),
        },
    )


@require_POST
@csrf_protect
def disconnect(request: HttpRequest, account_id: int) -> HttpResponse:
    """POST: disconnect one of the owner's accounts at UniPost, then mark it locally.
    Another owner's account is a 404; one ``CAN_MANAGE_ACCOUNT`` refuses, a message."""
    next_url = safe_next(request, request.POST.get("next"))
    if not request.user.is_authenticated:
        return _login_then(next_url)
    account = get_object_or_404(services.user_accounts(request.user), pk=account_id)
    if not services.can_manage(request.user, account):
        _tell(request, messages.ERROR, message_for_not_allowed_to_manage(account.platform))
        return _done(request, next_url)
    try:
        services.disconnect_account(account)
    except UniPostError as exc:
        _tell(request, messages.ERROR, message_for_disconnect_error(exc, platform=account.platform))
    else:
        _tell(
            request,
            messages.SUCCESS,
            _("Your %(platform)s account is disconnected.") % {"platform": platform_label(account.platform)},
        )
    return _done(request, next_url)


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    """Receives UniPost deliveries: verify → store once → apply (here, or on a task
    worker when the site runs one) → signal."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest) -> HttpResponse:
        limit = app_settings.WEBHOOK_MAX_BODY_BYTES
        declared = request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > limit:
            return HttpResponse(status=413)
        body = request.body
        if len(body) > limit:
            return HttpResponse(status=413)
        try:
            webhooks.verify_signature(
                body, request.headers.get(webhooks.SIGNATURE_HEADER), app_settings.WEBHOOK_SECRETS
            )
        except webhooks.WebhookSignatureError as exc:
            return _refused(request, HttpResponseForbidden(str(exc)), "Refused a webhook delivery: %s", exc)
        try:
            payload = webhooks.parse_payload(body)
        except webhooks.WebhookPayloadError as exc:
            return _refused(
                request, HttpResponseBadRequest(str(exc)), "Refused a signed webhook delivery: %s", exc
            )
        outcome = services.accept_webhook_payload(
            payload,
            raw_body=body,
            delivery_id=request.headers.get(webhooks.DELIVERY_HEADER, ""),
        )
        return JsonResponse(
            {"received": True, "duplicate": outcome.duplicate, "result": outcome.event.result}
        )


def _refused(request: HttpRequest, response: HttpResponse, message: str, exc: Exception) -> HttpResponse:
    """One warning line for a refused delivery, with its reason and without a traceback.

    Raising PermissionDenied would log a traceback, whatever ``DEBUG`` is. Logged through
    Django's ``log_response``, the answer is marked as logged, so ``django.request``
    does not add a second line for the same 4xx.
    """
    log_response(message, str(exc), response=response, request=request, logger=logger)
    return response


webhook = WebhookView.as_view()
