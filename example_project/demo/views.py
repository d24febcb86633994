"""The demo's own page: connecting accounts with connect.js and the JSON API only."""

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
