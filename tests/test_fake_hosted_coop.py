"""The fake's hosted page can send a Cross-Origin-Opener-Policy (as UniPost's or a provider's
page may), so the popup flow can be tested cut off from its opener: standalone and live."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.test import Client
from django.urls import include, path

from unipost_connect.testing import FakeResponse, FakeUniPost, live
from unipost_connect.testing.hosted import with_opener_policy
from unipost_connect.testing.server import FakeUniPostServer, _parser

urlpatterns = [path("fake-unipost/", include("unipost_connect.testing.live"))]

KEY = "up_test_coop"
COOP = "Cross-Origin-Opener-Policy"


def _create(base_url: str) -> dict[str, Any]:
    answer = requests.post(
        f"{base_url}/v1/connect/sessions",
        json={"platform": "linkedin", "external_user_id": "42", "return_url": "http://127.0.0.1/back/"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    assert COOP not in answer.headers  # the API is not the hosted page
    data: dict[str, Any] = answer.json()["data"]
    return data


@pytest.mark.parametrize(("policy", "sent"), [("same-origin", "same-origin"), (None, None)])
def test_the_standalone_server_sends_the_hosted_pages_coop_on_request(
    policy: str | None, sent: str | None
) -> None:
    fake = FakeUniPost(api_key=KEY)
    with FakeUniPostServer(fake, hosted_coop=policy) as server:
        url = _create(server.base_url)["url"]
        page = requests.get(url, timeout=5)
        assert page.status_code == 200
        assert page.headers.get(COOP) == sent
        pressed = requests.post(url, data={"action": "approve"}, allow_redirects=False, timeout=5)
        assert pressed.status_code == 302
        assert pressed.headers.get(COOP) == sent  # the button's answer is the hosted page's too


def test_the_command_line_takes_the_policy() -> None:
    assert _parser().parse_args(["--hosted-coop", "same-origin"]).hosted_coop == "same-origin"
    assert _parser().parse_args([]).hosted_coop == ""


def test_a_policy_the_page_already_sends_is_kept() -> None:
    own = FakeResponse(200, b"", {"cross-origin-opener-policy": "unsafe-none"})
    assert with_opener_policy("/connect/linkedin", own, "same-origin") is own
    plain = FakeResponse(200, b"", {"Content-Type": "text/html"})
    assert with_opener_policy("/v1/connect/sessions", plain, "same-origin") is plain
    assert with_opener_policy("/connect/linkedin", plain, "") is plain
    assert dict(with_opener_policy("/connect/linkedin", plain, "same-origin").headers) == {
        "Content-Type": "text/html",
        COOP: "same-origin",
    }


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(("policy", "sent"), [("same-origin", "same-origin"), (None, None)])
def test_the_live_fake_sends_the_setting(
    settings: Any, monkeypatch: pytest.MonkeyPatch, policy: str | None, sent: str | None
) -> None:
    settings.UNIPOST_CONNECT = {"API_KEY": KEY, "API_BASE_URL": "http://testserver/fake-unipost"}
    settings.UNIPOST_FAKE_HOSTED_COOP = policy
    monkeypatch.setattr(live, "_fake", None)
    client = Client()
    created = client.post(
        "/fake-unipost/v1/connect/sessions",
        data=json.dumps({"platform": "linkedin", "external_user_id": "42"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert created.status_code == 201
    assert COOP not in created.headers
    hosted = urlsplit(created.json()["data"]["url"])
    page = client.get(f"{hosted.path}?{hosted.query}")
    assert page.status_code == 200
    assert page.headers.get(COOP) == sent
