"""``{% unipost_connect_button "linkedin" %}`` and ``{% unipost_disconnect_button account %}``."""

from __future__ import annotations

from typing import Any

from django import template

from ..conf import PLATFORM_LABELS
from ..models import ConnectedAccount

register = template.Library()


@register.inclusion_tag("unipost_connect/includes/connect_button.html", takes_context=True)
def unipost_connect_button(context: template.Context, platform: str, next: str | None = None) -> dict[str, Any]:
    """A POST form (with the CSRF token) that starts a connect session for ``platform``.

    It reads "Reconnect" when the user already has an active account on that platform.
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    account = None
    if user is not None and user.is_authenticated:
        account = (
            ConnectedAccount.objects.filter(
                user_id=user.pk, platform=platform, status=ConnectedAccount.Status.ACTIVE
            )
            .only("pk")
            .first()
        )
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "platform": platform,
        "label": PLATFORM_LABELS.get(platform, platform),
        "account": account,
        "next": next if next is not None else getattr(request, "get_full_path", lambda: "")(),
    }


@register.inclusion_tag("unipost_connect/includes/disconnect_button.html", takes_context=True)
def unipost_disconnect_button(context: template.Context, account: ConnectedAccount, next: str | None = None) -> dict[str, Any]:
    request = context.get("request")
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "account": account,
        "next": next if next is not None else getattr(request, "get_full_path", lambda: "")(),
    }
