"""The start view: POST a platform, get a local session and a 302 to UniPost's hosted page."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.messages import get_messages
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from tests.faults import (
    CREATE_FAULTS,
    HOSTED,
    LANDINGS,
    NOT_HTTP_URLS,
    SUPPORT,
    UNAVAILABLE,
    Fault,
    assert_error_kept,
    assert_told,
    calls_to,
    client_sleeps,
    create_answer,
    fault_id,
    user_messages,
)
from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

START = "unipost_connect:start"


def start_url() -> str:
    return reverse(START)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def creates(fake: FakeUniPost) -> int:
    return sum(1 for method, path in fake.requests if method == "POST" and path == "/v1/connect/sessions")


def connect_settings(**changes: Any) -> override_settings:
    return override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, **changes})


def follow_return(client: Client, back: str) -> Any:
    parts = urlsplit(back)
    return client.get(parts.path + ("?" + parts.query if parts.query else ""))


# -- the happy path ------------------------------------------------------------------


def test_the_start_url() -> None:
    assert start_url() == "/unipost/connect/"


def test_post_records_the_session_and_redirects_to_the_hosted_page(fake, user_client, user):
    answer = user_client.post(start_url(), {"platform": "linkedin"})

    assert answer.status_code == 302
    session = ConnectSession.objects.get()
    assert session.user == user
    assert session.platform == "linkedin"
    assert session.status == ConnectSession.Status.PENDING
    assert session.external_user_id == str(user.pk)
    assert session.unipost_session_id and session.unipost_session_id in fake.sessions
    assert answer["Location"] == session.url
    assert session.url.startswith("https://app.unipost.test/connect/linkedin?")
    assert session.expires_at is not None
    assert session.expires_at > timezone.now() + timedelta(minutes=25)
    assert session.request_id == fake.request_ids[-1]
    assert session.error_code == ""
    remote = fake.sessions[session.unipost_session_id]
    # The return URL is absolute and names the local session (the redirect carries no id).
    assert remote.return_url == "http://testserver" + reverse(
        "unipost_connect:return", kwargs={"session_id": session.pk}
    )
    assert remote.external_user_id == str(user.pk)
    assert messages_of(answer) == []


def test_platform_is_normalised(fake, user_client):
    answer = user_client.post(start_url(), {"platform": "  LinkedIn "})
    assert answer.status_code == 302
    assert ConnectSession.objects.get().platform == "linkedin"


@pytest.mark.parametrize("platform", ["bluesky", "twitter", "pinterest"])
def test_every_configured_platform_can_start(fake, user_client, platform):
    answer = user_client.post(start_url(), {"platform": platform})
    assert answer.status_code == 302
    assert answer["Location"].startswith(f"https://app.unipost.test/connect/{platform}?")


def test_envelope_free_answers_are_accepted(user_client, user):
    bare = FakeUniPost(
        api_key="up_test_key",
        base_url="https://api.unipost.test",
        hosted_base_url="https://app.unipost.test",
        envelope=False,
    )
    with bare.mock():
        answer = user_client.post(start_url(), {"platform": "linkedin"})
        session = ConnectSession.objects.get()
        assert answer.status_code == 302
        assert answer["Location"] == session.url
        assert session.unipost_session_id in bare.sessions
        back = follow_return(user_client, bare.approve(session.unipost_session_id))
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED
    assert back["Location"] == "/done/"
    assert messages_of(back) == ["Your LinkedIn account is connected."]


# -- method, login, CSRF ---------------------------------------------------------------


def test_get_is_not_allowed(fake, user_client):
    answer = user_client.get(start_url(), {"platform": "linkedin"})
    assert answer.status_code == 405
    assert ConnectSession.objects.count() == 0
    assert fake.requests == []


def test_get_is_not_allowed_for_anonymous_users_either(fake, client):
    assert client.get(start_url()).status_code == 405


def test_anonymous_post_goes_to_the_login_page(fake, client):
    answer = client.post(start_url(), {"platform": "linkedin", "next": "/settings/"})
    assert answer.status_code == 302
    parts = urlsplit(answer["Location"])
    assert parts.path == settings.LOGIN_URL
    # Back to the page the button was on after logging in, not to a GET of this view.
    assert parse_qs(parts.query)["next"] == ["/settings/"]
    assert ConnectSession.objects.count() == 0
    assert fake.requests == []


def test_anonymous_post_with_unsafe_next_logs_in_towards_the_default(fake, client):
    answer = client.post(start_url(), {"platform": "linkedin", "next": "https://evil.example/"})
    parts = urlsplit(answer["Location"])
    assert parts.path == settings.LOGIN_URL
    assert parse_qs(parts.query)["next"] == ["/done/"]


def test_csrf_token_is_required(fake, csrf_client):
    answer = csrf_client.post(start_url(), {"platform": "linkedin"})
    assert answer.status_code == 403
    assert ConnectSession.objects.count() == 0
    assert fake.requests == []


def test_csrf_is_checked_before_login(fake):
    answer = Client(enforce_csrf_checks=True).post(start_url(), {"platform": "linkedin"})
    assert answer.status_code == 403


def test_the_token_from_the_connections_page_is_accepted(fake, csrf_client):
    page = csrf_client.get(reverse("unipost_connect:connections"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    answer = csrf_client.post(start_url(), {"platform": "linkedin", "csrfmiddlewaretoken": token})
    assert answer.status_code == 302
    assert answer["Location"].startswith("https://app.unipost.test/connect/linkedin?")


# -- platforms ------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["myspace", "", "LINKEDIN2", "../admin", "linkedin\x00"])
def test_unknown_platform_gives_a_message_and_calls_nothing(fake, user_client, platform):
    answer = user_client.post(start_url(), {"platform": platform, "next": "/settings/"})
    assert answer.status_code == 302
    assert answer["Location"] == "/settings/"
    assert messages_of(answer) == ["That platform cannot be connected here."]
    assert ConnectSession.objects.count() == 0
    assert fake.requests == []


def test_missing_platform_field(fake, user_client):
    answer = user_client.post(start_url(), {})
    assert answer.status_code == 302
    assert answer["Location"] == "/done/"
    assert messages_of(answer) == ["That platform cannot be connected here."]
    assert fake.requests == []


def test_platform_outside_the_configured_subset_is_refused(fake, user_client):
    with connect_settings(PLATFORMS=["linkedin", "bluesky"]):
        refused = user_client.post(start_url(), {"platform": "twitter"})
        allowed = user_client.post(start_url(), {"platform": "bluesky"})
    assert refused.status_code == 302
    assert refused["Location"] == "/done/"
    assert messages_of(refused) == ["That platform cannot be connected here."]
    assert allowed.status_code == 302
    assert list(ConnectSession.objects.values_list("platform", flat=True)) == ["bluesky"]
    assert creates(fake) == 1


# -- next -----------------------------------------------------------------------------------


@pytest.mark.parametrize("next_url", ["/settings/", "/settings/?tab=social#accounts", "http://testserver/x/"])
def test_safe_next_is_kept_and_used_after_the_return(fake, user_client, next_url):
    user_client.post(start_url(), {"platform": "linkedin", "next": next_url})
    session = ConnectSession.objects.get()
    assert session.next_url == next_url
    back = follow_return(user_client, fake.approve(session.unipost_session_id))
    assert back.status_code == 302
    assert back["Location"] == next_url


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example",
        "///evil.example",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "http://evil.example@testserver.evil/",
        "https:///evil.example",
        "\\\\evil.example",
        "data:text/html,hi",
    ],
)
def test_unsafe_next_is_dropped(fake, user_client, next_url):
    answer = user_client.post(start_url(), {"platform": "linkedin", "next": next_url})
    assert answer["Location"].startswith("https://app.unipost.test/")
    session = ConnectSession.objects.get()
    assert session.next_url == ""
    back = follow_return(user_client, fake.approve(session.unipost_session_id))
    assert back["Location"] == "/done/"


def test_unsafe_next_is_dropped_on_failure_too(fake, user_client):
    fake.fail_next("create", 500)
    answer = user_client.post(start_url(), {"platform": "linkedin", "next": "//evil.example"})
    assert answer["Location"] == "/done/"


def test_on_https_an_http_next_is_dropped(fake, user_client):
    answer = user_client.post(
        start_url(), {"platform": "linkedin", "next": "http://testserver/settings/"}, secure=True
    )
    assert answer.status_code == 302
    assert ConnectSession.objects.get().next_url == ""


# -- failures on create: every fault of the shared table (tests/faults.py) ---------------------


@LANDINGS
@pytest.mark.parametrize("fault", CREATE_FAULTS, ids=fault_id)
def test_create_faults_leave_a_failed_row_and_a_message(
    fault: Fault,
    next_url: str | None,
    lands: str,
    fake: FakeUniPost,
    user_client: Client,
    user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps = client_sleeps(monkeypatch)
    tries = fault.tries_at("create")
    fault.inject(fake, "create", create_answer(user), tries.calls)

    form = {"platform": "linkedin"} if next_url is None else {"platform": "linkedin", "next": next_url}
    response = user_client.post(start_url(), form)

    assert response.status_code == 302
    assert calls_to(fake, "POST", "/v1/connect/sessions") == tries.calls
    assert tuple(sleeps) == tries.sleeps
    row = ConnectSession.objects.get(user=user)
    if fault.creates:
        assert response["Location"] == HOSTED
        assert user_messages(response) == []
        assert (row.status, row.unipost_session_id, row.url) == ("pending", "cs_fault", HOSTED)
        assert row.error_code == ""
        return
    assert response["Location"] == lands  # never UniPost's url, whatever it was
    assert row.status == ConnectSession.Status.FAILED
    assert row.url == ""
    assert row.unipost_session_id is None
    assert_error_kept(row, fault, fake)
    assert_told(response, messages.ERROR, fault.message, row, fault)


def test_a_real_plan_refusal_names_the_platform(fake, user_client):
    fake.plan_platforms.discard("twitter")
    answer = user_client.post(start_url(), {"platform": "twitter"})
    session = ConnectSession.objects.get()
    assert session.status == ConnectSession.Status.FAILED
    assert session.error_code == "PLAN_PLATFORM_NOT_ALLOWED"
    assert "paid plan" in session.error_message
    assert session.request_id == fake.request_ids[-1]
    assert messages_of(answer) == [
        "Connecting X (Twitter) accounts is not included in this site's plan. "
        "Please contact the site's support."
    ]


def test_real_missing_credentials(fake, user_client):
    fake.platform_credentials.discard("linkedin")
    answer = user_client.post(start_url(), {"platform": "linkedin"})
    session = ConnectSession.objects.get()
    assert session.status == ConnectSession.Status.FAILED
    assert session.error_code == "VALIDATION_ERROR"
    assert "credentials" in session.error_message
    assert messages_of(answer) == [
        "LinkedIn is not set up for connections on this site yet. Please contact the site's support."
    ]


def test_quickstart_credentials_setting_avoids_the_credentials_error(fake, user_client):
    fake.platform_credentials.discard("linkedin")
    with connect_settings(ALLOW_QUICKSTART_CREDS=True):
        answer = user_client.post(start_url(), {"platform": "linkedin"})
    assert answer["Location"].startswith("https://app.unipost.test/connect/linkedin?")
    assert ConnectSession.objects.get().allow_quickstart_creds is True


def test_a_wrong_api_key_is_a_support_message(fake, user_client):
    with connect_settings(API_KEY="up_test_wrong"):
        answer = user_client.post(start_url(), {"platform": "linkedin"})
    session = ConnectSession.objects.get()
    assert session.status == ConnectSession.Status.FAILED
    assert session.error_code == "UNAUTHORIZED"
    assert session.request_id == fake.request_ids[-1]
    assert messages_of(answer) == [SUPPORT]
    assert b"up_test_wrong" not in answer.content


@pytest.mark.parametrize("url", NOT_HTTP_URLS)
def test_a_hosted_url_that_is_not_http_is_never_followed(fake, user_client, url):
    body = {
        "data": {
            "id": "cs_bad",
            "status": "pending",
            "url": url,
            "platform": "linkedin",
            "expires_at": "2099-01-01T00:00:00Z",
        },
        "request_id": "req_bad",
    }
    fake.fail_next("create", 201, body=json.dumps(body))

    answer = user_client.post(start_url(), {"platform": "linkedin"})

    assert answer.status_code == 302
    assert answer["Location"] == "/done/"
    session = ConnectSession.objects.get()
    assert session.status == ConnectSession.Status.FAILED
    assert session.error_code == "INVALID_RESPONSE"
    assert session.request_id == "req_bad"
    assert session.url == ""
    assert messages_of(answer) == [UNAVAILABLE]


def test_a_stored_unusable_url_is_not_followed_on_reuse(fake, user_client):
    user_client.post(start_url(), {"platform": "linkedin"})
    ConnectSession.objects.update(url="javascript:alert(1)")
    answer = user_client.post(start_url(), {"platform": "linkedin"})
    assert answer.status_code == 302
    assert not answer["Location"].lower().startswith("javascript")


def test_a_failed_start_can_be_retried(fake, user_client):
    fake.fail_next("create", 500)
    user_client.post(start_url(), {"platform": "linkedin"})
    answer = user_client.post(start_url(), {"platform": "linkedin"})
    assert answer["Location"].startswith("https://app.unipost.test/connect/linkedin?")
    statuses = sorted(ConnectSession.objects.values_list("status", flat=True))
    assert statuses == ["failed", "pending"]


# -- reuse of a pending session -----------------------------------------------------------------


def test_a_second_click_reuses_the_pending_session(fake, user_client):
    first = user_client.post(start_url(), {"platform": "linkedin", "next": "/a/"})
    second = user_client.post(start_url(), {"platform": "linkedin", "next": "/b/"})
    assert first["Location"] == second["Location"]
    assert ConnectSession.objects.count() == 1
    assert creates(fake) == 1
    # The latest click decides where the user lands.
    assert ConnectSession.objects.get().next_url == "/b/"


def test_a_still_pending_session_is_reused(fake: Any, user_client: Client) -> None:
    first = user_client.post(start_url(), {"platform": "linkedin"})["Location"]
    again = user_client.post(start_url(), {"platform": "linkedin"})["Location"]
    assert first == again
    assert ConnectSession.objects.count() == 1


def test_a_session_finished_elsewhere_is_not_reused(fake: Any, user_client: Client, user: Any) -> None:
    """Approved on the hosted page, never came back: a new click must not resend the dead link."""
    user_client.post(start_url(), {"platform": "linkedin"})
    first = ConnectSession.objects.get()
    fake.approve(first.unipost_session_id)
    answer = user_client.post(start_url(), {"platform": "linkedin"})
    first.refresh_from_db()
    assert first.status == "completed"  # learnt on the way
    second = ConnectSession.objects.exclude(pk=first.pk).get()
    assert answer["Location"] == second.url != first.url


def test_a_pending_session_unipost_cannot_be_asked_about_is_reused(fake: Any, user_client: Client) -> None:
    # While UniPost is unwell a new session per click would only add sessions there (and
    # a create would likely fail too): the pending one, with time left, is the user's.
    first = user_client.post(start_url(), {"platform": "linkedin"})
    fake.fail_next("get", 503, times=5)
    again = user_client.post(start_url(), {"platform": "linkedin"})
    assert ConnectSession.objects.count() == 1
    assert again["Location"] == first["Location"]


def test_reuse_is_per_platform_and_per_user(fake, user_client, other_user):
    user_client.post(start_url(), {"platform": "linkedin"})
    user_client.post(start_url(), {"platform": "bluesky"})
    other = Client()
    other.force_login(other_user)
    other.post(start_url(), {"platform": "linkedin"})
    assert ConnectSession.objects.count() == 3
    assert creates(fake) == 3


def test_a_session_close_to_expiry_is_not_reused(fake, user_client):
    user_client.post(start_url(), {"platform": "linkedin"})
    # Less than REUSE_MIN_REMAINING (600 s by default) left.
    ConnectSession.objects.update(expires_at=timezone.now() + timedelta(seconds=590))
    second = user_client.post(start_url(), {"platform": "linkedin"})
    assert ConnectSession.objects.count() == 2
    assert creates(fake) == 2
    assert second["Location"] == ConnectSession.objects.order_by("-created_at").first().url


def test_reuse_window_follows_the_setting(fake, user_client):
    with connect_settings(REUSE_MIN_REMAINING=31 * 60):  # longer than a session lives
        user_client.post(start_url(), {"platform": "linkedin"})
        user_client.post(start_url(), {"platform": "linkedin"})
    assert creates(fake) == 2


@pytest.mark.parametrize("outcome", ["approve", "deny"])
def test_an_ended_session_is_not_reused(fake, user_client, outcome):
    user_client.post(start_url(), {"platform": "linkedin"})
    session = ConnectSession.objects.get()
    follow_return(user_client, getattr(fake, outcome)(session.unipost_session_id))
    again = user_client.post(start_url(), {"platform": "linkedin"})
    assert creates(fake) == 2
    newest = ConnectSession.objects.order_by("-created_at").first()
    assert newest.pk != session.pk
    assert again["Location"] == newest.url


def test_a_session_that_had_an_error_on_the_hosted_page_is_reused(fake, user_client):
    # UniPost leaves it pending: the user may try again on the same hosted page.
    user_client.post(start_url(), {"platform": "linkedin"})
    session = ConnectSession.objects.get()
    follow_return(user_client, fake.error(session.unipost_session_id))
    again = user_client.post(start_url(), {"platform": "linkedin"})
    assert again["Location"] == session.url
    assert creates(fake) == 1


def test_a_site_without_the_messages_middleware_still_gets_redirects(fake, user_client):
    without = [m for m in settings.MIDDLEWARE if "MessageMiddleware" not in m]
    with override_settings(MIDDLEWARE=without):
        refused = user_client.post(start_url(), {"platform": "myspace"})
        fake.fail_next("create", 500)
        failed = user_client.post(start_url(), {"platform": "linkedin"})
    assert refused.status_code == 302
    assert failed.status_code == 302
