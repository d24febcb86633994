"""The demo's own pages: connecting accounts with connect.js and the JSON API only, and the
server-rendered connect buttons in popup mode."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from unipost_connect.conf import app_settings
from unipost_connect.platforms import label


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
