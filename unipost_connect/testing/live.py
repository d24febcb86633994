"""Serve a :class:`FakeUniPost` from a Django project, for demos that work offline.

Include these URLs under a prefix and point ``UNIPOST_CONNECT['API_BASE_URL']`` at it::

    path("fake-unipost/", include("unipost_connect.testing.live"))
    UNIPOST_CONNECT["API_BASE_URL"] = "http://127.0.0.1:8000/fake-unipost"

The fake keeps its state in this process's memory, so serve the demo from one process
(``runserver`` is fine; it is threaded). After the hosted page completes (or an account is
disconnected), the fake POSTs a signed ``account.connected`` (``account.disconnected``)
webhook to ``settings.UNIPOST_FAKE_WEBHOOK_URL`` (default: this site's
``unipost_connect:webhook`` URL on the API base's host), as UniPost does, after
``settings.UNIPOST_FAKE_WEBHOOK_DELAY`` seconds (negative: never; default and retries:
the standalone server's, :mod:`.delivery`). A path the fake does not serve answers a
plain-text 404 page, like the live server's router. ``settings.UNIPOST_FAKE_HOSTED_COOP``
(e.g. ``"same-origin"``) makes the hosted page send that ``Cross-Origin-Opener-Policy``
when the answer has none.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import re_path, reverse
from django.views.decorators.csrf import csrf_exempt

from ..conf import app_settings
from .delivery import DELIVERY_DELAY, WebhookDelivery, WebhookSender
from .fake import FakeUniPost
from .hosted import with_opener_policy

# The demo's profile when the site sets no PROFILE_ID (the fake then needs one of its own).
DEMO_PROFILE = "pr_demo"

_fake: FakeUniPost | None = None
_fake_lock = threading.Lock()
# The standalone server's delivery policy; here the target and delay come from settings.
webhooks = WebhookSender()


def get_live_fake() -> FakeUniPost:
    """The process-wide fake, configured from ``UNIPOST_CONNECT`` on first use."""
    global _fake
    with _fake_lock:
        if _fake is None:
            secrets = app_settings.WEBHOOK_SECRETS
            _fake = FakeUniPost(
                api_key=app_settings.API_KEY,
                base_url=app_settings.API_BASE_URL,
                webhook_secret=secrets[0] if secrets else "",
                profiles=_profiles(),
            )
            _fake.on_webhook = _deliver
        return _fake


def _profiles() -> tuple[str, ...]:
    """The workspace's profiles: the one ``PROFILE_ID`` names, else those a per-tenant
    ``PROFILE_ID`` function may choose (``settings.UNIPOST_FAKE_PROFILES``), else one."""
    configured = app_settings.PROFILE_ID
    if isinstance(configured, str):
        return (configured,)
    return tuple(getattr(settings, "UNIPOST_FAKE_PROFILES", ())) or (DEMO_PROFILE,)


def webhook_target() -> str:
    """Where the live fake POSTs its webhooks."""
    configured = getattr(settings, "UNIPOST_FAKE_WEBHOOK_URL", None)
    if configured:
        return str(configured)
    origin = urlsplit(app_settings.API_BASE_URL)
    return f"{origin.scheme}://{origin.netloc}{reverse('unipost_connect:webhook')}"


def webhook_delay() -> float:
    """Seconds before the live fake's first delivery attempt (negative: never sent)."""
    configured = getattr(settings, "UNIPOST_FAKE_WEBHOOK_DELAY", None)
    return DELIVERY_DELAY if configured is None else float(configured)


def _deliver(delivery: WebhookDelivery) -> None:
    # Settings are read at each delivery, so a test's override_settings applies at once.
    webhooks.send(delivery, webhook_target(), webhook_delay())


@csrf_exempt
def fake_unipost(request: HttpRequest, path: str) -> HttpResponse:
    answer = get_live_fake().handle(
        request.method or "GET",
        "/" + path,
        query=request.META.get("QUERY_STRING", ""),
        headers=dict(request.headers),
        body=request.body,
    )
    answer = with_opener_policy("/" + path, answer, getattr(settings, "UNIPOST_FAKE_HOSTED_COOP", None))
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response


urlpatterns = [re_path(r"^(?P<path>.*)$", fake_unipost, name="unipost_fake")]
