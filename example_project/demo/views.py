"""The demo's own pages: connecting accounts with connect.js and the JSON API only, the
server-rendered connect buttons in popup mode, and a lever to try a reconnect."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from unipost_connect import services
from unipost_connect.conf import app_settings
from unipost_connect.models import ConnectedAccount
from unipost_connect.platforms import label
from unipost_connect.testing.live import get_live_fake


@login_required
def headless(request: HttpRequest) -> HttpResponse:
    """A page a JavaScript front end could be: no form posts to the app's HTML views; the
    accounts, the connect flow (a popup) and disconnects all go through the JSON API."""
    platforms = [(platform, label(platform)) for platform in app_settings.PLATFORMS]
    return render(request, "demo/headless.html", {"platforms": platforms})


@login_required
def popup_buttons(request: HttpRequest) -> HttpResponse:
    """The app's connect buttons with ``popup=True`` and ``{% unipost_connect_script %}``."""
    platforms = [(platform, label(platform)) for platform in app_settings.PLATFORMS]
    tags = {
        "button_tag": '{% unipost_connect_button "linkedin" popup=True %}',
        "script_tag": "{% unipost_connect_script %}",
    }
    return render(request, "demo/popup_buttons.html", {"platforms": platforms, **tags})


@require_http_methods(["GET", "POST"])
@login_required
def reconnect_tools(request: HttpRequest) -> HttpResponse:
    """The embedded fake's lever on the account lifecycle: make UniPost fail an account's
    token refresh, as its token-refresh worker would, to try the reconnect. Routed only
    when the demo runs the embedded fake."""
    if request.method == "POST":
        account = get_object_or_404(services.user_accounts(request.user), pk=request.POST.get("account", ""))
        try:
            get_live_fake().fail_token_refresh(account.managed_account_id)
        except (KeyError, ValueError):
            messages.error(request, _("The fake UniPost cannot fail that account's refresh now."))
        else:
            messages.info(
                request,
                _("UniPost could not refresh that token. Its webhook is on the way: reload in a moment."),
            )
        return redirect("reconnect-tools")
    live = services.user_accounts(request.user).filter(status=ConnectedAccount.Status.ACTIVE)
    return render(request, "demo/reconnect_tools.html", {"accounts": live})
