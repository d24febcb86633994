"""Popup mode in the HTML views: ``popup=1`` on start, and the return view's small page
that tells the opener (never with "*", never with a secret) instead of redirecting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib import messages as django_messages
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

STATIC = Path(__file__).resolve().parents[1] / "unipost_connect" / "static" / "unipost_connect"


def start(client: Client, **fields: str) -> ConnectSession:
    answer = client.post(reverse("unipost_connect:start"), {"platform": "linkedin", **fields})
    assert answer.status_code == 302, answer
    session = ConnectSession.objects.get()
    assert answer["Location"] == session.url
    return session


def back(client: Client, target: str | None) -> Any:
    """GET the return URL UniPost sends the browser to, with only this request's messages."""
    assert target is not None
    client.cookies.pop("messages", None)
    parts = urlsplit(target)
    return client.get(f"{parts.path}?{parts.query}")


def data_attributes(html: str) -> dict[str, str]:
    element = re.search(r'<main id="unipost-connect-return"[^>]*>', html)
    assert element is not None, html
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', element.group(0)))


def messages_of(response: Any) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize(("value", "popup"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_start_records_popup_mode(fake: FakeUniPost, user_client: Client, value: str, popup: bool) -> None:
    session = start(user_client, popup=value)
    assert session.popup is popup


def test_start_without_the_field_is_not_a_popup(fake: FakeUniPost, user_client: Client) -> None:
    assert start(user_client).popup is False


def test_a_popup_session_comes_back_to_the_page_that_tells_the_opener(
    fake: FakeUniPost, user_client: Client
) -> None:
    session = start(user_client, popup="1", next="/somewhere/")
    answer = back(user_client, fake.approve(session.unipost_session_id or ""))

    assert answer.status_code == 200
    assert answer.templates[0].name == "unipost_connect/popup_return.html"
    assert "no-store" in answer["Cache-Control"]
    assert "private" in answer["Cache-Control"]
    html = answer.content.decode()
    assert data_attributes(html) == {
        "session-id": str(session.pk),
        "status": "completed",
        "origin": "http://testserver",  # this site's exact origin, never "*"
        "next": "/somewhere/",
    }
    # The message the full-page flow shows is kept for the next page the user sees.
    assert messages_of(answer) == [(django_messages.SUCCESS, "Your LinkedIn account is connected.")]
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED


def test_the_popup_page_carries_no_secret_and_no_inline_script(
    fake: FakeUniPost, user_client: Client
) -> None:
    session = start(user_client, popup="1")
    remote = fake.sessions[session.unipost_session_id or ""]
    html = back(user_client, fake.approve(remote.id)).content.decode()

    assert remote.state not in html
    assert session.url not in html
    assert "state=" not in html
    assert remote.id not in html  # UniPost's session id stays on the server too
    assert "/fake-unipost/" not in html and "unipost.test" not in html
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts == [""]  # one script, from a static file (a CSP allows it without 'unsafe-inline')
    assert re.search(r'<script src="[^"]*unipost_connect/popup_return\.js" defer>', html)
    # Without JavaScript, the page goes on by itself.
    assert '<noscript><meta http-equiv="refresh" content="0; url=/done/"></noscript>' in html


@pytest.mark.parametrize(
    ("outcome", "status", "message"),
    [
        (
            "deny",
            "cancelled",
            (
                django_messages.WARNING,
                "You declined the authorization, so no LinkedIn account was connected.",
            ),
        ),
        (
            "error",
            "pending",
            (
                django_messages.ERROR,
                "LinkedIn reported a problem while connecting, so nothing was connected. You can try again.",
            ),
        ),
    ],
)
def test_the_popup_page_reports_the_reconciled_status(
    fake: FakeUniPost, user_client: Client, outcome: str, status: str, message: tuple[int, str]
) -> None:
    session = start(user_client, popup="1")
    target = getattr(fake, outcome)(session.unipost_session_id)
    answer = back(user_client, target)
    assert answer.status_code == 200
    assert data_attributes(answer.content.decode())["status"] == status
    assert messages_of(answer) == [message]


def test_a_claimed_success_is_only_a_hint_in_the_popup_page_too(
    fake: FakeUniPost, user_client: Client
) -> None:
    session = start(user_client, popup="1")
    url = reverse("unipost_connect:return", kwargs={"session_id": session.pk})
    answer = user_client.get(url + "?connect_status=success")
    assert data_attributes(answer.content.decode())["status"] == "pending"


def test_unipost_unreachable_still_answers_the_popup_page(fake: FakeUniPost, user_client: Client) -> None:
    session = start(user_client, popup="1")
    target = fake.approve(session.unipost_session_id or "")
    fake.fail_next(status=503, times=10)
    answer = back(user_client, target)
    assert answer.status_code == 200
    assert data_attributes(answer.content.decode())["status"] == "pending"
    assert "no-store" in answer["Cache-Control"]
    [(level, _text)] = messages_of(answer)
    assert level == django_messages.ERROR


def test_an_unsafe_next_is_not_in_the_popup_page(fake: FakeUniPost, user_client: Client) -> None:
    session = start(user_client, popup="1", next="https://evil.example/")
    html = back(user_client, fake.approve(session.unipost_session_id or "")).content.decode()
    assert data_attributes(html)["next"] == "/done/"
    assert "evil.example" not in html


def test_a_session_started_without_popup_still_redirects(fake: FakeUniPost, user_client: Client) -> None:
    session = start(user_client, next="/somewhere/")
    answer = back(user_client, fake.approve(session.unipost_session_id or ""))
    assert answer.status_code == 302
    assert answer["Location"] == "/somewhere/"


def test_the_latest_click_decides_popup_mode(fake: FakeUniPost, user_client: Client) -> None:
    first = start(user_client, popup="1")
    user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    first.refresh_from_db()
    assert first.popup is False  # the same pending session, now a full-page flow
    answer = back(user_client, fake.approve(first.unipost_session_id or ""))
    assert answer.status_code == 302


def test_another_users_popup_session_is_not_found(
    fake: FakeUniPost, user_client: Client, other_user: Any
) -> None:
    session = start(user_client, popup="1")
    stranger = Client()
    stranger.force_login(other_user)
    answer = back(stranger, fake.approve(session.unipost_session_id or ""))
    assert answer.status_code == 404


@pytest.mark.parametrize("name", ["popup_return.js", "connect.js"])
def test_the_scripts_post_only_to_this_origin(name: str) -> None:
    source = (STATIC / name).read_text()
    calls = re.findall(r"postMessage\(([^)]*)\)", source)
    assert calls
    for arguments in calls:
        assert '"*"' not in arguments and "'*'" not in arguments
    assert re.search(r"postMessage\(\w+, (data\.origin|window\.location\.origin)\)", source)
