"""An answer must be about what was asked, and no answer moves an account between users."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client, TestCase
from django.urls import reverse

from tests.helpers import SignalLog, start
from unipost_connect import services
from unipost_connect.client import RemoteSession
from unipost_connect.errors import UniPostResponseError
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


def answer_next_read(fake: FakeUniPost, session: ConnectSession, **changes: Any) -> None:
    data = fake.sessions[session.unipost_session_id or ""].as_json()
    data.update(changes)
    fake.fail_next("get", 200, body=json.dumps({"data": data, "request_id": "r-about"}))


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "0b7f7a53-7a43-4f2e-9d43-5c7e3c1b1c55"},
        {"external_user_id": "someone-else"},
        {"platform": "twitter"},
    ],
    ids=["id", "external_user_id", "platform"],
)
def test_a_session_read_about_another_session_is_refused_and_nothing_applied(
    fake: FakeUniPost,
    user: Any,
    user_client: Client,
    sent: SignalLog,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, str],
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    answer_next_read(fake, session, **changes)
    with caplog.at_level(logging.WARNING, logger="unipost_connect"):
        answer = user_client.get(reverse("unipost_connect:return", kwargs={"session_id": session.pk}))
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == "pending"
    assert session.error_code == "INVALID_RESPONSE"
    assert "another session" in session.error_message
    assert session.request_id == "r-about"
    assert ConnectedAccount.objects.count() == 0
    assert sent.named("connect_session_completed") == []
    assert any("answer for connect session" in r.getMessage() for r in caplog.records)


def test_apply_remote_session_refuses_an_answer_with_another_id(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    with pytest.raises(UniPostResponseError):
        services.apply_remote_session(session, RemoteSession(id="other", status="cancelled"))
    session.refresh_from_db()
    assert session.status == "pending"


def two_users_one_external_id(django_user_model: Any) -> tuple[Any, Any]:
    return (
        django_user_model.objects.create_user("first"),
        django_user_model.objects.create_user("second"),
    )


def test_a_completion_never_moves_an_account_to_another_local_user(
    fake: FakeUniPost, user: Any, other_user: Any, user_client: Client, sent: SignalLog
) -> None:
    other_client = Client()
    other_client.force_login(other_user)
    mine = start(user)
    fake.approve(mine.unipost_session_id or "")
    services.reconcile_session(mine)
    account = ConnectedAccount.objects.get()
    services.mark_disconnected(account)
    before = ConnectedAccount.objects.values().get()
    # UniPost gives the other user's session the same managed account (say the site maps
    # both to one external user id at UniPost).
    theirs = start(other_user)
    answer_next_read(
        fake, theirs, status="completed", managed_account_id=account.managed_account_id, external_user_id=None
    )
    sent.calls.clear()
    with TestCase.captureOnCommitCallbacks(execute=True):
        returned = other_client.get(reverse("unipost_connect:return", kwargs={"session_id": theirs.pk}))
    # The other user's account is left exactly as it was, and nobody is told of a new one.
    assert ConnectedAccount.objects.values().get() == before
    assert sent.named("connect_session_completed") == []
    assert sent.named("account_connected") == []
    (ended,) = sent.named("connect_session_ended_without_account")
    assert (ended["session"].pk, ended["status"]) == (theirs.pk, "completed")
    assert [str(m) for m in get_messages(returned.wsgi_request)] == [
        "This LinkedIn account is already connected to another user of this site, so it was not "
        "added to yours. Please contact the site's support."
    ]
    account.refresh_from_db()
    assert account.user_id == user.pk
    theirs.refresh_from_db()
    assert theirs.status == "completed"
    assert theirs.error_code == "ACCOUNT_CONFLICT"
    assert f"#{user.pk}" in theirs.error_message
    answer = user_client.get(reverse("unipost_connect:connections"))
    assert answer.status_code == 200


def test_a_webhook_never_moves_an_account_to_another_local_user(
    fake: FakeUniPost, user: Any, other_user: Any
) -> None:
    services.upsert_account(user_id=user.pk, managed_account_id="acc-1", platform="linkedin")
    ConnectSession.objects.create(
        user=other_user, platform="linkedin", external_user_id="ext-2", status="completed"
    )
    payload = {
        "event": "account.connected",
        "data": {
            "social_account_id": "acc-1",
            "platform": "linkedin",
            "external_user_id": "ext-2",
            "account_name": "Renamed",
            "connection_type": "managed",
        },
    }
    outcome = services.apply_webhook_payload(payload)
    account = ConnectedAccount.objects.get()
    assert account.user_id == user.pk
    assert outcome.event.result == WebhookEvent.Result.CONFLICT
    assert f"#{user.pk}" in outcome.event.detail and f"#{other_user.pk}" in outcome.event.detail


def test_upsert_account_of_another_user_changes_nothing(user: Any, other_user: Any) -> None:
    services.upsert_account(user_id=user.pk, managed_account_id="acc-1", platform="linkedin")
    again = services.upsert_account(
        user_id=other_user.pk, managed_account_id="acc-1", platform="linkedin", account_name="New name"
    )
    assert again.user_id == user.pk
    assert ConnectedAccount.objects.get().user_id == user.pk
    assert again.account_name == ""  # nothing changed on the other user's behalf
