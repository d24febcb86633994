"""Findings of the code review, each pinned by a test: dead reused links, keys no header can
carry, request deadlines, values no column can hold, and the admin on other user models."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from django.contrib.messages import get_messages
from django.core.checks import Tags, run_checks
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from unipost_connect.admin import user_search_fields
from unipost_connect.client import UniPostClient
from unipost_connect.errors import AuthenticationError, ServerError, UniPostResponseError
from unipost_connect.models import ConnectSession
from unipost_connect.services import reconcile_session, start_session

pytestmark = pytest.mark.django_db
START = "/unipost/connect/"


def test_a_session_finished_elsewhere_is_not_reused(fake: Any, user_client: Client, user: Any) -> None:
    """Approved on the hosted page, never came back: a new click must not resend the dead link."""
    user_client.post(START, {"platform": "linkedin"})
    first = ConnectSession.objects.get()
    fake.approve(first.unipost_session_id)
    answer = user_client.post(START, {"platform": "linkedin"})
    first.refresh_from_db()
    assert first.status == "completed"  # learnt on the way
    second = ConnectSession.objects.exclude(pk=first.pk).get()
    assert answer["Location"] == second.url != first.url


def test_a_still_pending_session_is_reused(fake: Any, user_client: Client) -> None:
    first = user_client.post(START, {"platform": "linkedin"})["Location"]
    again = user_client.post(START, {"platform": "linkedin"})["Location"]
    assert first == again
    assert ConnectSession.objects.count() == 1


def test_a_pending_session_unipost_cannot_be_asked_about_is_reused(fake: Any, user_client: Client) -> None:
    # While UniPost is unwell a new session per click would only add sessions there (and
    # a create would likely fail too): the pending one, with time left, is the user's.
    first = user_client.post(START, {"platform": "linkedin"})
    fake.fail_next("get", 503, times=5)
    again = user_client.post(START, {"platform": "linkedin"})
    assert ConnectSession.objects.count() == 1
    assert again["Location"] == first["Location"]


KEY_WITH_ZERO_WIDTH_SPACE = "up_live_abc\u200bdef"


def test_a_key_no_header_can_carry_is_a_check_error() -> None:
    with override_settings(UNIPOST_CONNECT={"API_KEY": KEY_WITH_ZERO_WIDTH_SPACE, "WEBHOOK_SECRET": "x"}):
        found = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "unipost_connect.E011"]
    assert len(found) == 1
    assert KEY_WITH_ZERO_WIDTH_SPACE not in found[0].msg + (found[0].hint or "")


def test_a_key_no_header_can_carry_fails_cleanly(user_client: Client) -> None:
    # Real HTTP (no mock): http.client refuses the header before any connection is made.
    config = {"API_KEY": KEY_WITH_ZERO_WIDTH_SPACE, "API_BASE_URL": "http://127.0.0.1:9"}
    with override_settings(UNIPOST_CONNECT=config):
        answer = user_client.post(START, {"platform": "linkedin"})
    assert answer.status_code == 302
    session = ConnectSession.objects.get()
    assert (session.status, session.error_code) == ("failed", "INVALID_API_KEY")
    assert "abc" not in session.error_message
    texts = [str(m) for m in get_messages(answer.wsgi_request)]
    assert texts and all("abc" not in text for text in texts)


def test_the_client_error_for_such_a_key_does_not_quote_it() -> None:
    client = UniPostClient(KEY_WITH_ZERO_WIDTH_SPACE, "http://127.0.0.1:9")
    with pytest.raises(AuthenticationError) as caught:
        client.get_session("cs_1")
    assert "abc" not in str(caught.value)
    assert caught.value.__suppress_context__


@responses.activate
def test_no_retry_starts_after_the_deadline() -> None:
    responses.get("https://api.unipost.test/v1/connect/sessions/cs_1", status=503, body="busy")
    waits: list[float] = []
    client = UniPostClient("up_test_k", "https://api.unipost.test", deadline=0.1, sleep=waits.append)
    with pytest.raises(ServerError):
        client.get_session("cs_1")
    assert len(responses.calls) == 1  # the first backoff (0.25 s) would pass the deadline
    assert waits == []


@responses.activate
def test_a_per_call_retry_count_overrides_the_clients() -> None:
    responses.get("https://api.unipost.test/v1/connect/sessions/cs_1", status=503, body="busy")
    client = UniPostClient("up_test_k", "https://api.unipost.test", max_retries=2, sleep=lambda s: None)
    with pytest.raises(ServerError):
        client.get_session("cs_1", max_retries=0)
    assert len(responses.calls) == 1


@pytest.mark.parametrize("field", ["id", "managed_account_id", "url"])
def test_values_too_long_for_their_columns_are_refused(fake: Any, user: Any, field: str) -> None:
    # Bounding for storage lives beside the models (unipost_connect.bounds), not in the
    # client: the flow refuses the answer, and the row keeps the error.
    if field == "managed_account_id":
        session = start_session(user, "linkedin", request=RequestFactory().get("/"))
        data = fake.sessions[session.unipost_session_id or ""].as_json()
        data.update(status="completed", managed_account_id="x" * 3000)
        fake.fail_next("get", 200, body=json.dumps({"data": data}))
        with pytest.raises(UniPostResponseError, match=field):
            reconcile_session(session)
    else:
        data = {
            "id": "9e2b7c41-6d3a-4f58-b0c2-7a1e5d8f3b96",
            "status": "pending",
            "url": "https://app.unipost.test/connect/linkedin?session=x&state=s",
        }
        data[field] = ("https://app.unipost.test/" if field == "url" else "") + "x" * 3000
        fake.fail_next("create", 201, body=json.dumps({"data": data}))
        with pytest.raises(UniPostResponseError, match=field):
            start_session(user, "linkedin", request=RequestFactory().get("/"))
        session = ConnectSession.objects.get()
    session.refresh_from_db()
    assert session.error_code == "INVALID_RESPONSE"
    assert len(session.url) <= 2048


def test_nul_in_next_and_in_the_return_hint_is_harmless(fake: Any, user_client: Client) -> None:
    answer = user_client.post(START, {"platform": "linkedin", "next": "/ok\x00/"})
    assert answer.status_code == 302
    session = ConnectSession.objects.get()
    assert session.next_url == ""
    back = user_client.get(
        reverse("unipost_connect:return", kwargs={"session_id": session.pk}),
        {"connect_status": "succ\x00ess", "reason": "a\x00b"},
    )
    assert back.status_code == 302
    session.refresh_from_db()
    assert (session.return_status, session.return_reason) == ("success", "ab")


def test_admin_searches_the_site_user_models_own_fields() -> None:
    assert user_search_fields() == ("user__username", "user__email")


def test_admin_search_by_email_finds_the_session(
    fake: Any, user_client: Client, admin_client: Client
) -> None:
    user_client.post(START, {"platform": "linkedin"})
    session = ConnectSession.objects.get()
    link = f"/admin/unipost_connect/connectsession/{session.pk}/change/"

    def found(query: str) -> bool:
        page = admin_client.get("/admin/unipost_connect/connectsession/", {"q": query})
        assert page.status_code == 200
        return link in page.content.decode()

    assert found("alex@example.com")
    assert found("alex")
    assert not found("nobody@example.com")
