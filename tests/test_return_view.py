"""The return view: UniPost's redirect back; the API, not the query string, decides."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib import messages as django_messages
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from tests.faults import (
    CONNECTED,
    LANDINGS,
    NOT_FINISHED,
    READ_FAULTS,
    Fault,
    approved,
    assert_error_kept,
    assert_told,
    calls_to,
    client_sleeps,
    fault_id,
    remote_session,
)
from unipost_connect import signals
from unipost_connect.conf import app_settings
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


def messages_of(response: Any) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def start(client: Client, platform: str = "linkedin", **extra: str) -> ConnectSession:
    client.cookies.pop("messages", None)
    answer = client.post(reverse("unipost_connect:start"), {"platform": platform, **extra})
    assert answer.status_code == 302, answer
    return ConnectSession.objects.order_by("-created_at").first()


def return_url(session: ConnectSession, query: str = "") -> str:
    url = reverse("unipost_connect:return", kwargs={"session_id": session.pk})
    return url + ("?" + query if query else "")


def follow(client: Client, back: str) -> Any:
    """GET ``back`` (absolute or not), with only this request's messages in the answer."""
    client.cookies.pop("messages", None)
    parts = urlsplit(back)
    return client.get(parts.path + ("?" + parts.query if parts.query else ""))


# -- one test per outcome ----------------------------------------------------------------


def test_approve_completes_the_session_and_records_the_account(fake, user_client, user):
    session = start(user_client)
    completed: list[dict[str, Any]] = []
    signals.connect_session_completed.connect(
        lambda **kw: completed.append(kw), weak=False, dispatch_uid="test-return-completed"
    )
    try:
        answer = follow(
            user_client, fake.approve(session.unipost_session_id, account_name="Alex at LinkedIn")
        )
    finally:
        signals.connect_session_completed.disconnect(dispatch_uid="test-return-completed")

    assert answer.status_code == 302
    assert answer["Location"] == "/done/"
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED
    remote = fake.sessions[session.unipost_session_id]
    assert session.managed_account_id == remote.managed_account_id
    assert session.completed_at is not None
    assert session.return_status == "success"
    account = ConnectedAccount.objects.get()
    assert account.user == user
    assert account.managed_account_id == session.managed_account_id
    assert account.platform == "linkedin"
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert messages_of(answer) == [(django_messages.SUCCESS, "Your LinkedIn account is connected.")]


def test_a_second_visit_of_the_return_url_changes_nothing(fake, user_client):
    session = start(user_client)
    back = fake.approve(session.unipost_session_id)
    follow(user_client, back)
    again = follow(user_client, back)
    assert again.status_code == 302
    assert ConnectedAccount.objects.count() == 1
    assert messages_of(again) == [(django_messages.SUCCESS, "Your LinkedIn account is connected.")]


def test_deny_cancels_with_a_clear_message(fake, user_client):
    session = start(user_client)
    back = fake.deny(session.unipost_session_id)
    assert parse_qs(urlsplit(back).query) == {"connect_status": ["cancelled"], "reason": ["access_denied"]}

    answer = follow(user_client, back)

    assert answer.status_code == 302
    assert answer["Location"] == "/done/"
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.CANCELLED
    assert session.return_status == "cancelled"
    assert session.return_reason == "access_denied"
    assert session.managed_account_id == ""
    assert ConnectedAccount.objects.count() == 0
    assert messages_of(answer) == [
        (django_messages.WARNING, "You declined the authorization, so no LinkedIn account was connected.")
    ]


def test_an_error_on_the_hosted_page_leaves_it_pending(fake, user_client):
    session = start(user_client)
    answer = follow(user_client, fake.error(session.unipost_session_id, reason="invalid_scope"))

    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.PENDING
    assert session.return_status == "error"
    assert session.return_reason == "invalid_scope"
    assert ConnectedAccount.objects.count() == 0
    assert messages_of(answer) == [
        (
            django_messages.ERROR,
            "LinkedIn reported a problem while connecting, so nothing was connected. You can try again.",
        )
    ]


def test_an_error_then_approve_on_the_same_session_completes(fake, user_client):
    session = start(user_client)
    follow(user_client, fake.error(session.unipost_session_id))
    answer = follow(user_client, fake.approve(session.unipost_session_id))
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED
    assert messages_of(answer)[0][0] == django_messages.SUCCESS


def test_coming_back_before_anything_happened(fake, user_client):
    session = start(user_client)
    answer = follow(user_client, return_url(session))
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.PENDING
    assert messages_of(answer) == [
        (
            django_messages.INFO,
            "Your LinkedIn connection is not finished yet. If you completed it, it will appear here shortly.",
        )
    ]


def test_expired_session(fake, user_client):
    session = start(user_client)
    fake.advance(minutes=31)
    answer = follow(user_client, return_url(session))
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.EXPIRED
    assert messages_of(answer) == [
        (
            django_messages.ERROR,
            "The connection attempt expired before it was finished, so no LinkedIn account was "
            "connected. Please start again.",
        )
    ]


def test_envelope_free_answers(user_client):
    bare = FakeUniPost(
        api_key="up_test_key",
        base_url="https://api.unipost.test",
        hosted_base_url="https://app.unipost.test",
        envelope=False,
    )
    with bare.mock():
        session = start(user_client)
        denied = follow(user_client, bare.deny(session.unipost_session_id))
        session2 = start(user_client)
        approved = follow(user_client, bare.approve(session2.unipost_session_id))
    session.refresh_from_db()
    session2.refresh_from_db()
    assert session.status == ConnectSession.Status.CANCELLED
    assert session2.status == ConnectSession.Status.COMPLETED
    assert session2.managed_account_id == bare.sessions[session2.unipost_session_id].managed_account_id
    assert messages_of(denied)[0][0] == django_messages.WARNING
    assert messages_of(approved)[0][0] == django_messages.SUCCESS


def test_reconnect_reuses_the_managed_account(fake, user_client):
    first = start(user_client)
    follow(user_client, fake.approve(first.unipost_session_id))
    second = start(user_client)
    assert second.pk != first.pk
    follow(user_client, fake.approve(second.unipost_session_id))
    second.refresh_from_db()
    first.refresh_from_db()
    assert second.managed_account_id == first.managed_account_id
    assert ConnectedAccount.objects.count() == 1


# -- the query string is a hint ----------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "connect_status=success",
        "connect_status=completed",
        "connect_status=success&managed_account_id=sa_forged",
    ],
)
def test_a_forged_success_does_not_complete_a_pending_session(fake, user_client, query):
    session = start(user_client)
    answer = follow(user_client, return_url(session, query))
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.PENDING
    assert session.managed_account_id == ""
    assert ConnectedAccount.objects.count() == 0
    assert [level for level, _ in messages_of(answer)] == [django_messages.INFO]
    # UniPost was asked.
    assert ("GET", f"/v1/connect/sessions/{session.unipost_session_id}") in fake.requests


def test_a_forged_cancel_does_not_cancel_a_completed_session(fake, user_client):
    session = start(user_client)
    fake.approve(session.unipost_session_id)
    answer = follow(user_client, return_url(session, "connect_status=cancelled&reason=access_denied"))
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED
    assert messages_of(answer) == [(django_messages.SUCCESS, "Your LinkedIn account is connected.")]


def test_an_unknown_remote_status_is_not_success(fake, user_client):
    session = start(user_client)
    body = {
        "data": {"id": session.unipost_session_id, "status": "authorized", "managed_account_id": "sa_x"},
        "request_id": "req_odd",
    }
    fake.fail_next("get", 200, body=json.dumps(body))
    answer = follow(user_client, return_url(session, "connect_status=success"))
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.PENDING
    assert ConnectedAccount.objects.count() == 0
    assert messages_of(answer)[0][0] == django_messages.INFO


def test_an_oversized_hint_is_stored_truncated(fake, user_client):
    session = start(user_client)
    answer = follow(user_client, return_url(session, "connect_status=" + "x" * 500 + "&reason=" + "y" * 5000))
    assert answer.status_code == 302
    session.refresh_from_db()
    assert len(session.return_status) <= 32
    assert len(session.return_reason) <= 255


def test_nul_in_next_and_in_the_return_hint_is_harmless(fake, user_client):
    answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin", "next": "/ok\x00/"})
    assert answer.status_code == 302
    session = ConnectSession.objects.get()
    assert session.next_url == ""
    back = user_client.get(return_url(session), {"connect_status": "succ\x00ess", "reason": "a\x00b"})
    assert back.status_code == 302
    session.refresh_from_db()
    assert (session.return_status, session.return_reason) == ("success", "ab")


# -- who may see it ------------------------------------------------------------------------------


def test_another_users_session_is_a_404(fake, user_client, other_user):
    session = start(user_client)
    fake.approve(session.unipost_session_id)
    intruder = Client()
    intruder.force_login(other_user)
    answer = intruder.get(return_url(session, "connect_status=success"))
    assert answer.status_code == 404
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.PENDING
    assert session.return_status == ""
    assert ConnectedAccount.objects.count() == 0


def test_an_unknown_session_is_a_404(fake, user_client):
    answer = user_client.get(reverse("unipost_connect:return", kwargs={"session_id": uuid.uuid4()}))
    assert answer.status_code == 404
    assert fake.requests == []


def test_a_malformed_session_id_is_a_404(fake, user_client):
    assert user_client.get("/unipost/return/not-a-uuid/").status_code == 404


def test_anonymous_users_go_to_the_login_page(fake, client, user_client):
    session = start(user_client)
    fake_requests = len(fake.requests)
    answer = client.get(return_url(session, "connect_status=success"))
    assert answer.status_code == 302
    parts = urlsplit(answer["Location"])
    assert parts.path == settings.LOGIN_URL
    assert parse_qs(parts.query)["next"] == [return_url(session, "connect_status=success")]
    assert len(fake.requests) == fake_requests
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.PENDING


def test_post_is_not_allowed(fake, user_client):
    session = start(user_client)
    assert user_client.post(return_url(session)).status_code == 405


# -- redirects ------------------------------------------------------------------------------------


def test_next_from_the_start_is_where_the_user_lands(fake, user_client):
    session = start(user_client, next="/settings/social/")
    answer = follow(user_client, fake.deny(session.unipost_session_id))
    assert answer["Location"] == "/settings/social/"


def test_a_tampered_stored_next_is_checked_again(fake, user_client):
    session = start(user_client)
    ConnectSession.objects.filter(pk=session.pk).update(next_url="https://evil.example/")
    answer = follow(user_client, fake.approve(session.unipost_session_id))
    assert answer["Location"] == "/done/"


def test_a_failed_session_coming_back(fake, user_client):
    fake.fail_next("create", 500)
    start(user_client)
    session = ConnectSession.objects.get()
    requests_before = len(fake.requests)
    answer = follow(user_client, return_url(session, "connect_status=success"))
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.FAILED
    assert len(fake.requests) == requests_before
    assert messages_of(answer) == [
        (django_messages.ERROR, "The connection could not be started. Please try again.")
    ]


# -- failures while reading the session: every fault of the shared table (tests/faults.py) ------


@LANDINGS
@pytest.mark.parametrize("fault", READ_FAULTS, ids=fault_id)
def test_read_faults_leave_the_status_and_record_the_error(
    fault: Fault,
    next_url: str | None,
    lands: str,
    fake: FakeUniPost,
    user_client: Client,
    user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps = client_sleeps(monkeypatch)
    tries = fault.tries_at("read")
    session = remote_session(user, minutes_ago=1, next_url=next_url or "")
    fault.inject(fake, "get", approved(fake, session), tries.calls)  # even though UniPost completed it

    response = user_client.get(return_url(session, "connect_status=success"))  # a claim, never trusted

    assert response.status_code == 302
    assert response["Location"] == lands
    assert calls_to(fake, "GET", f"/v1/connect/sessions/{session.unipost_session_id}") == tries.calls
    assert tuple(sleeps) == tries.sleeps
    row = ConnectSession.objects.get(pk=session.pk)
    assert row.return_status == "success"  # the hint is kept whatever happened
    if fault.read_outcome == "completed":
        assert row.status == ConnectSession.Status.COMPLETED
        assert row.managed_account_id
        assert row.error_code == ""
        assert_told(response, django_messages.SUCCESS, CONNECTED, row, fault)
    elif fault.read_outcome == "pending":
        assert row.status == ConnectSession.Status.PENDING
        assert row.error_code == ""
        assert_told(response, django_messages.INFO, NOT_FINISHED, row, fault)
    else:
        assert row.status == ConnectSession.Status.PENDING  # unchanged: UniPost was not heard
        assert row.managed_account_id == ""
        assert ConnectedAccount.objects.count() == 0
        assert_error_kept(row, fault, fake)
        assert_told(response, django_messages.ERROR, fault.message, row, fault)


def test_after_a_failed_read_the_next_return_completes(fake, user_client):
    session = start(user_client)
    back = fake.approve(session.unipost_session_id)
    # Exactly as many failures as the client makes attempts.
    fake.fail_next("get", 500, times=app_settings.MAX_RETRIES + 1)
    follow(user_client, back)
    answer = follow(user_client, back)
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED
    assert session.error_code == ""
    assert messages_of(answer)[0][0] == django_messages.SUCCESS


def test_a_completed_session_is_not_undone_by_a_failed_read(fake, user_client):
    session = start(user_client)
    back = fake.approve(session.unipost_session_id)
    follow(user_client, back)
    fake.fail_next("get", 500, times=10)
    answer = follow(user_client, back)
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == ConnectSession.Status.COMPLETED
    assert ConnectedAccount.objects.get().status == ConnectedAccount.Status.ACTIVE
