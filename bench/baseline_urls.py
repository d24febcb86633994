"""URLs for the benches: the app's own URLs, the admin, and two baseline views.

* ``baseline_start``: a bare view that makes the same single ``POST /v1/connect/sessions``
  with ``requests`` (one module-level, kept-alive ``requests.Session``, so the baseline
  is not handicapped by opening a connection per call) and redirects to the hosted url.
  No local row, no reuse lookup, no error handling beyond a 502.
* ``baseline_webhook``: reads the body and inserts one row. No signature check.
"""

from __future__ import annotations

import requests
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from .models import BaselineEvent

_http = requests.Session()


@require_POST
@csrf_protect
def baseline_start(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return HttpResponseRedirect(settings.LOGIN_URL)
    conf = settings.UNIPOST_CONNECT
    answer = _http.post(
        conf["API_BASE_URL"].rstrip("/") + "/v1/connect/sessions",
        json={
            "platform": request.POST.get("platform", ""),
            "external_user_id": str(request.user.pk),
            "return_url": request.build_absolute_uri("/bench/done/"),
            "allow_quickstart_creds": False,
        },
        headers={"Authorization": f"Bearer {conf['API_KEY']}"},
        timeout=(3.05, 10.0),
    )
    if answer.status_code != 201:
        return HttpResponse(status=502)
    data = answer.json()
    return HttpResponseRedirect(data.get("data", data)["url"])


@csrf_exempt
@require_POST
def baseline_webhook(request: HttpRequest) -> HttpResponse:
    BaselineEvent.objects.create(body=request.body.decode("utf-8", "replace"))
    return JsonResponse({"received": True})


def done(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("unipost/", include("unipost_connect.urls")),
    path("bench/baseline-start/", baseline_start, name="baseline_start"),
    path("bench/baseline-webhook/", baseline_webhook, name="baseline_webhook"),
    path("bench/done/", done, name="done"),
    path("login/", done, name="login"),
]
