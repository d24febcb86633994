"""``unipost_connect.testing.live``: the fake served from Django URLs, in this process.

The example project serves it from a subprocess, over real HTTP
(tests/test_example_project.py); these tests drive the same URLs through the test client,
and stop each webhook at the delivery policy's last step (the POST) to see where it goes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import include, path, reverse

from unipost_connect.testing import WebhookDelivery, delivery, live
from unipost_connect.testing.delivery import DELIVERY_DELAY, DeliveryResult

urlpatterns = [
    path("unipost/", include("unipost_connect.urls")),
    path("fake-unipost/", include("unipost_connect.testing.live")),
]

pytestmark = pytest.mark.urls(__name__)

BASE = "http://testserver/fake-unipost"
KEY = "up_test_live"


@pytest.fixture(autouse=True)
def live_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the app at the in-process fake; each test starts with no fake built yet."""
    settings.UNIPOST_CONNECT = {
        "API_KEY": KEY,
        "API_BASE_URL": BASE,
        "WEBHOOK_SECRET": "whsec_live",
    }
    monkeypatch.setattr(live, "_fake", None)
    return settings


@pytest.fixture
def background(monkeypatch: pytest.MonkeyPatch) -> list[tuple[WebhookDelivery, str, float]]:
    """Record the deliveries the policy starts instead of POSTing them.

    Read it after :func:`_sent`: each delivery still runs in its own thread.
    """
    calls: list[tuple[WebhookDelivery, str, float]] = []

    def record(sent: WebhookDelivery, url: str, *, delay: float = 0.0, **kwargs: Any) -> DeliveryResult:
        calls.append((sent, url, delay))
        return DeliveryResult(sent.event, "", url, 1, 200)

    monkeypatch.setattr(delivery, "deliver_webhook", record)
    return calls


def _sent() -> None:
    """Wait until every delivery the live fake started has ended."""
    assert live.webhooks.wait(5)


def _api(client: Client, method: str, api_path: str, body: Any = None, key: str = KEY) -> Any:
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {key}"}}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    return getattr(client, method)("/fake-unipost" + api_path, **kwargs)


def _start_session(client: Client) -> dict[str, Any]:
    response = _api(
        client,
        "post",
        "/v1/connect/sessions",
        {
            "platform": "linkedin",
            "external_user_id": "42",
            "return_url": "http://testserver/back/",
            "allow_quickstart_creds": True,
        },
    )
    assert response.status_code == 201, response.content
    data: dict[str, Any] = response.json()["data"]
    return data


def test_live_fake_is_built_from_settings_once(live_settings: Any) -> None:
    live_settings.UNIPOST_CONNECT = {
        **live_settings.UNIPOST_CONNECT,
        "WEBHOOK_SECRET": ["whsec_new", "whsec_old"],
        "PROFILE_ID": "pr_site",
    }
    fake = live.get_live_fake()
    assert fake.api_key == KEY
    assert fake.base_url == BASE
    assert fake.webhook_secret == "whsec_new"  # the first secret signs, as after a rotation
    assert fake.profiles == ("pr_site",)
    assert live.get_live_fake() is fake


def test_live_fake_defaults_without_profile_or_secret(live_settings: Any) -> None:
    live_settings.UNIPOST_CONNECT = {"API_KEY": KEY, "API_BASE_URL": BASE}
    fake = live.get_live_fake()
    assert fake.webhook_secret == ""
    assert fake.profiles == ("pr_demo",)


def test_webhook_target_is_the_sites_webhook_on_the_api_host(live_settings: Any) -> None:
    live_settings.UNIPOST_CONNECT = {
        **live_settings.UNIPOST_CONNECT,
        "API_BASE_URL": "http://127.0.0.1:8000/fake-unipost/",
    }
    assert live.webhook_target() == "http://127.0.0.1:8000" + reverse("unipost_connect:webhook")
    assert live.webhook_target() == "http://127.0.0.1:8000/unipost/webhook/"


def test_webhook_target_setting_wins(live_settings: Any) -> None:
    live_settings.UNIPOST_FAKE_WEBHOOK_URL = "https://hooks.example.com/unipost/"
    assert live.webhook_target() == "https://hooks.example.com/unipost/"


def test_api_answers_through_django_urls(client: Client) -> None:
    data = _start_session(client)
    assert data["id"] in live.get_live_fake().sessions
    assert data["status"] == "pending"
    assert data["url"].startswith(BASE + "/connect/linkedin?")

    response = _api(client, "get", f"/v1/connect/sessions/{data['id']}")
    assert response.status_code == 200
    assert response.json()["data"]["id"] == data["id"]
    # The fake's headers are copied onto Django's response.
    assert response["X-Request-Id"] == live.get_live_fake().request_ids[-1]
    assert response["Content-Type"].startswith("application/json")

    # The fake keeps its state across requests: it is one process-wide instance.
    assert live.get_live_fake().sessions[data["id"]].external_user_id == "42"


def test_api_refuses_a_wrong_key(client: Client) -> None:
    response = _api(client, "get", "/v1/accounts?external_user_id=42", key="up_test_wrong")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_the_view_needs_no_csrf_token() -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    assert _start_session(csrf_client)["status"] == "pending"


def test_hosted_page_approval_sends_the_webhook_to_the_site(
    client: Client, background: list[tuple[WebhookDelivery, str, float]]
) -> None:
    data = _start_session(client)
    hosted = urlsplit(data["url"])
    page = client.get(f"{hosted.path}?{hosted.query}")
    assert page.status_code == 200
    assert b"Approve" in page.content

    answer = client.post(
        f"{hosted.path}?{hosted.query}", "action=approve", content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 302
    assert answer["Location"] == "http://testserver/back/?connect_status=success"

    _sent()
    [(sent, url, delay)] = background
    assert sent.event == "account.connected"
    assert sent.payload["data"]["external_user_id"] == "42"
    assert url == "http://testserver/unipost/webhook/"
    assert delay == 1.0
    assert delay == DELIVERY_DELAY  # the standalone server's default too


def test_webhook_delay_setting(
    client: Client, live_settings: Any, background: list[tuple[WebhookDelivery, str, float]]
) -> None:
    live_settings.UNIPOST_FAKE_WEBHOOK_DELAY = "0.25"
    data = _start_session(client)
    live.get_live_fake().approve(data["id"])
    _sent()
    assert [delay for _, _, delay in background] == [0.25]


def test_negative_webhook_delay_turns_delivery_off(
    client: Client, live_settings: Any, background: list[tuple[WebhookDelivery, str, float]]
) -> None:
    live_settings.UNIPOST_FAKE_WEBHOOK_DELAY = -1
    data = _start_session(client)
    live.get_live_fake().approve(data["id"])
    _sent()
    assert background == []
    # The delivery is still recorded by the fake; it is only not sent.
    assert [d.event for d in live.get_live_fake().outbox] == ["account.connected"]


def test_webhook_delay_unset_is_the_delivery_policys_default(live_settings: Any) -> None:
    assert not hasattr(live_settings, "UNIPOST_FAKE_WEBHOOK_DELAY")
    assert live.webhook_delay() == DELIVERY_DELAY
    live_settings.UNIPOST_FAKE_WEBHOOK_DELAY = None  # the example project's, when its env is unset
    assert live.webhook_delay() == DELIVERY_DELAY


def test_delivery_results_are_kept_by_the_live_sender(
    client: Client, background: list[tuple[WebhookDelivery, str, float]]
) -> None:
    before = len(live.webhooks.results)
    live.get_live_fake().approve(_start_session(client)["id"])
    _sent()
    assert [(r.event, r.ok) for r in live.webhooks.results[before:]] == [("account.connected", True)]
