"""``{% unipost_connect_button "linkedin" %}``, ``{% unipost_disconnect_button account %}``
and ``{% unipost_connect_script %}``.

The buttons render small POST forms (with the CSRF token) from overridable templates under
``unipost_connect/includes/``; neither needs JavaScript. ``popup=True`` marks a connect
button for ``connect.js`` (loaded by ``{% unipost_connect_script %}``), which then opens
UniPost's page in a popup instead; without the script it stays a plain form post.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template
from django.urls import reverse

from ..accounts import button_accounts, user_accounts
from ..models import ConnectedAccount
from ..platforms import OAUTH_FREE_PLATFORMS, label

register = template.Library()

# A view that renders many buttons puts ``{platform: ConnectedAccount}`` (see
# ``accounts.button_accounts``) under this context name; the connect button then
# reads it instead of querying once per platform. Without it (the tag used alone) the
# button makes one query.
CONNECTED_ACCOUNTS_CONTEXT_KEY = "unipost_connected_accounts"

# How connect.js finds an object's URL: the reversed URL with this in place of the id.
ID_PLACEHOLDER = "{id}"
_SAMPLE_SESSION_ID = "00000000-0000-0000-0000-000000000000"
_SAMPLE_ACCOUNT_ID = 987654321


def _next_for(request: Any, next: str | None) -> str:
    if next is not None:
        return next
    get_full_path = getattr(request, "get_full_path", None)
    return get_full_path() if callable(get_full_path) else ""


def _connected_account(context: template.Context, request: Any, platform: str) -> ConnectedAccount | None:
    known = context.get(CONNECTED_ACCOUNTS_CONTEXT_KEY)
    if isinstance(known, Mapping):
        account: ConnectedAccount | None = known.get(platform)
        return account
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return button_accounts(user_accounts(user).filter(platform=platform)).get(platform)


@register.inclusion_tag("unipost_connect/includes/connect_button.html", takes_context=True)
def unipost_connect_button(
    context: template.Context, platform: str, next: str | None = None, popup: bool = False
) -> dict[str, Any]:
    """A POST form (with the CSRF token) that starts a connect session for ``platform``.

    It reads "Reconnect" when the owner's account on that platform needs a reconnect (or
    is active: connecting again refreshes it), and "Connect another" on a platform where
    UniPost gives one owner several accounts (Bluesky).
    ``next`` (default: the current page) is where the user lands after the flow.
    ``popup``: with ``{% unipost_connect_script %}`` on the page, the form opens UniPost's
    page in a popup and then goes to ``next``; without it, it is the same plain form post.
    """
    request = context.get("request")
    account = _connected_account(context, request, platform)
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "platform": platform,
        "label": label(platform),
        "account": account,
        "needs_reconnect": (
            account is not None and account.status == ConnectedAccount.Status.RECONNECT_REQUIRED
        ),
        "another": account is not None and platform in OAUTH_FREE_PLATFORMS,
        "reconnect": account is not None,
        "next": _next_for(request, next),
        "popup": bool(popup),
    }


@register.inclusion_tag("unipost_connect/includes/disconnect_button.html", takes_context=True)
def unipost_disconnect_button(
    context: template.Context, account: ConnectedAccount, next: str | None = None
) -> dict[str, Any]:
    """A POST form (with the CSRF token) that disconnects ``account``."""
    request = context.get("request")
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "account": account,
        "label": label(account.platform),
        "next": _next_for(request, next),
    }


def _url_template(name: str, kwarg: str, sample: object) -> str:
    """The URL named ``name`` with ``{id}`` where its ``kwarg`` goes, for the script."""
    return reverse(name, kwargs={kwarg: sample}).replace(str(sample), ID_PLACEHOLDER)


@register.inclusion_tag("unipost_connect/includes/connect_script.html", takes_context=True)
def unipost_connect_script(context: template.Context) -> dict[str, Any]:
    """The ``<script type="module">`` of ``connect.js``, with the JSON API's URLs and the
    CSRF token in data attributes (the script reads the CSRF cookie first, when it can)."""
    token = context.get("csrf_token")
    return {
        "csrf_token": "" if token is None or str(token) == "NOTPROVIDED" else str(token),
        "sessions_url": reverse("unipost_connect:api-sessions"),
        "session_url": _url_template("unipost_connect:api-session", "session_id", _SAMPLE_SESSION_ID),
        "accounts_url": reverse("unipost_connect:api-accounts"),
        "account_url": _url_template("unipost_connect:api-account", "account_id", _SAMPLE_ACCOUNT_ID),
    }
