"""``{% unipost_connect_button "linkedin" %}`` and ``{% unipost_disconnect_button account %}``.

Both render small POST forms (with the CSRF token) from overridable templates under
``unipost_connect/includes/``. Neither needs JavaScript.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template

from ..models import ConnectedAccount
from ..platforms import label

register = template.Library()

# A view that renders many buttons puts ``{platform: ConnectedAccount}`` (the user's
# accounts that are not disconnected) under this context name; the connect button then
# reads it instead of querying once per platform. Without it (the tag used alone) the
# button makes one query.
CONNECTED_ACCOUNTS_CONTEXT_KEY = "unipost_connected_accounts"


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
    return (
        ConnectedAccount.objects.filter(user_id=user.pk, platform=platform)
        .exclude(status=ConnectedAccount.Status.DISCONNECTED)
        .order_by("-connected_at")
        .first()
    )


@register.inclusion_tag("unipost_connect/includes/connect_button.html", takes_context=True)
def unipost_connect_button(
    context: template.Context, platform: str, next: str | None = None
) -> dict[str, Any]:
    """A POST form (with the CSRF token) that starts a connect session for ``platform``.

    It reads "Reconnect" when the user already has an account on that platform that is
    not disconnected (active, or waiting to be reconnected).
    ``next`` (default: the current page) is where the user lands after the flow.
    """
    request = context.get("request")
    account = _connected_account(context, request, platform)
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "platform": platform,
        "label": label(platform),
        "account": account,
        "reconnect": account is not None,
        "next": _next_for(request, next),
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
