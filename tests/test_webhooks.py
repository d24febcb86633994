"""Applying verified webhooks through the view: idempotency, both orders, odd events,
and a database failure mid-apply."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.helpers import URL, SignalLog, go_back, start
from unipost_connect import services
from unipost_connect.models import ConnectedAccount, WebhookEvent
from unipost_connect.testing import FakeUniPost, WebhookDelivery
from unipost_connect.webhooks import handlers

pytestmark = pytest.mark.django_db


@pytest.fixture
def deliver(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST a delivery like UniPost; on-commit callbacks (the signals) run as after a commit."""

    def post(delivery: WebhookDelivery, client: Client | None = None) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return (client or Client()).post(URL, **delivery.django_client_kwargs())

    return post


# -- idempotency ----------------------------------------------------------------------


def test_same_delivery_three_times_applies_once(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id)
    (delivery,) = fake.outbox
    answers = [deliver(delivery) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    assert {a.json()["result"] for a in answers} == {"applied"}
    assert WebhookEvent.objects.count() == 1
    event = WebhookEvent.objects.get()
    # account.* deliveries carry no event_id: the key is the hash of the raw body.
    assert event.event_key == "sha256:" + hashlib.sha256(delivery.body).hexdigest()
    assert event.event_type == "account.connected"
    assert event.processed_at is not None
    session.refresh_from_db()
    assert session.status == "completed"
    assert ConnectedAccount.objects.count() == 1
    (completed,) = sent.named("connect_session_completed")
    assert completed["session"].pk == session.pk
    assert completed["account"].managed_account_id == session.managed_account_id
    assert len(sent.named("account_connected")) == 1


def test_delivery_without_event_id_is_deduplicated_by_body_hash(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id)
    data = fake.outbox[0].payload["data"]
    delivery = fake.webhook("account.connected", data, event_id="")
    assert "event_id" not in delivery.payload
    answers = [deliver(delivery) for _ in range(3)]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    event = WebhookEvent.objects.get()
    assert event.event_key.startswith("sha256:")
    assert len(sent.named("connect_session_completed")) == 1


def test_delivery_id_header_is_kept_when_present(fake: FakeUniPost, user: Any, deliver: Any) -> None:
    start(user)
    delivery = fake.webhook("post.published", {}, delivery_id="dlv_123")
    assert deliver(delivery).status_code == 200
    assert WebhookEvent.objects.get().delivery_id == "dlv_123"


def test_two_events_for_one_completion_complete_it_once(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any
) -> None:
    """Different event ids (say a re-sent event) for one connection: one completion."""
    session = start(user)
    fake.approve(session.unipost_session_id)
    data = fake.outbox[0].payload["data"]
    assert deliver(fake.webhook("account.connected", data, event_id="evt_1")).json()["duplicate"] is False
    assert deliver(fake.webhook("account.connected", data, event_id="evt_2")).json()["duplicate"] is False
    assert WebhookEvent.objects.count() == 2
    assert len(sent.named("connect_session_completed")) == 1
    assert len(sent.named("account_connected")) == 1
    assert ConnectedAccount.objects.count() == 1


# -- the two orders -------------------------------------------------------------------


def test_webhook_then_return(
    fake: FakeUniPost,
    user: Any,
    user_client: Client,
    sent: SignalLog,
    deliver: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = start(user)
    back = fake.approve(session.unipost_session_id, account_name="Alex on LinkedIn")
    assert deliver(fake.outbox[0]).status_code == 200
    session.refresh_from_db()
    assert session.status == "completed"
    answer = go_back(user_client, back, django_capture_on_commit_callbacks)
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == "completed"
    account = ConnectedAccount.objects.get()
    assert account.user == user
    assert (
        account.managed_account_id
        == session.managed_account_id
        == fake.outbox[0].payload["data"]["social_account_id"]
    )
    assert account.account_name == "Alex on LinkedIn"
    assert len(sent.named("connect_session_completed")) == 1
    assert len(sent.named("account_connected")) == 1


def test_return_then_webhook_fills_the_account_name(
    fake: FakeUniPost,
    user: Any,
    user_client: Client,
    sent: SignalLog,
    deliver: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = start(user)
    back = fake.approve(session.unipost_session_id, account_name="Alex on LinkedIn")
    fake.fail_next("accounts", 500, times=5)  # the return's read of the name fails
    go_back(user_client, back, django_capture_on_commit_callbacks)
    session.refresh_from_db()
    assert session.status == "completed"
    # The session read names the account but not its display name.
    assert ConnectedAccount.objects.get().account_name == ""
    answer = deliver(fake.outbox[0])
    assert answer.status_code == 200
    assert answer.json() == {"received": True, "duplicate": False, "result": "applied"}
    account = ConnectedAccount.objects.get()
    assert account.account_name == "Alex on LinkedIn"
    assert account.managed_account_id == session.managed_account_id
    assert len(sent.named("connect_session_completed")) == 1
    assert len(sent.named("account_connected")) == 1


def test_webhook_alone_completes_when_the_browser_never_returns(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id)
    deliver(fake.outbox[0])
    session.refresh_from_db()
    assert session.status == "completed"
    assert session.completed_at is not None
    (completed,) = sent.named("connect_session_completed")
    assert completed["session"].status == "completed"


# -- odd events -----------------------------------------------------------------------


def test_unknown_user_is_stored_and_acknowledged(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any
) -> None:
    session = start(user)
    delivery = fake.webhook(
        "account.connected",
        {
            "social_account_id": "sa_x",
            "platform": "linkedin",
            "external_user_id": "nobody-here",
            "account_name": "?",
            "connection_type": "managed",
        },
    )
    answer = deliver(delivery)
    assert answer.status_code == 200
    assert answer.json()["result"] == "unknown_user"
    assert WebhookEvent.objects.get().result == "unknown_user"
    assert ConnectedAccount.objects.count() == 0
    session.refresh_from_db()
    assert session.status == "pending"
    assert sent.calls == []


def test_unknown_event_type_is_stored_and_ignored(fake: FakeUniPost, user: Any, deliver: Any) -> None:
    delivery = fake.webhook("post.published", {"post_id": "p_1"})
    answer = deliver(delivery)
    assert answer.status_code == 200
    assert answer.json() == {"received": True, "duplicate": False, "result": "ignored"}
    event = WebhookEvent.objects.get()
    assert (event.event_type, event.result) == ("post.published", "ignored")
    assert event.payload["data"] == {"post_id": "p_1"}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"social_account_id": "sa_1"},
        {
            "social_account_id": "sa_1",
            "external_user_id": "1",
            "platform": "linkedin",
            "connection_type": "dashboard",
        },
        {"social_account_id": "sa_" + "1" * 200, "external_user_id": "1", "platform": "linkedin"},
        {"social_account_id": "sa_1", "external_user_id": "1", "platform": "p" * 40},
        {"social_account_id": "sa_1", "external_user_id": "1", "platform": ""},
        {"social_account_id": ["sa_1"], "external_user_id": {"a": 1}, "platform": None},
    ],
    ids=["empty", "no-user", "not-managed", "long-id", "long-platform", "no-platform", "odd-types"],
)
def test_connected_event_that_cannot_be_applied_is_kept_and_acknowledged(
    data: dict[str, Any], fake: FakeUniPost, user: Any, deliver: Any
) -> None:
    session = start(user)
    answer = deliver(fake.webhook("account.connected", data))
    assert answer.status_code == 200
    assert answer.json()["result"] in ("ignored", "unknown_user")
    assert WebhookEvent.objects.count() == 1
    assert ConnectedAccount.objects.count() == 0
    session.refresh_from_db()
    assert session.status == "pending"


def test_long_account_name_is_cut_to_fit_and_a_long_profile_id_dropped(
    fake: FakeUniPost, user: Any, deliver: Any
) -> None:
    session = start(user)
    data = {
        "social_account_id": "sa_1",
        "external_user_id": session.external_user_id,
        "platform": "linkedin",
        "account_name": "n" * 1000,
        "profile_id": "p" * 500,
        "connection_type": "managed",
    }
    assert deliver(fake.webhook("account.connected", data)).status_code == 200
    account = ConnectedAccount.objects.get()
    assert account.account_name == "n" * 255
    assert account.profile_id == ""  # an id is never cut: one that does not fit is dropped


def test_connected_event_for_known_user_without_pending_session_records_the_account(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any
) -> None:
    session = start(user)
    services.end_session(session, "cancelled")
    data = {
        "social_account_id": "sa_dash",
        "external_user_id": session.external_user_id,
        "platform": "linkedin",
        "account_name": "Alex",
        "connection_type": "managed",
    }
    assert deliver(fake.webhook("account.connected", data)).json()["result"] == "applied"
    account = ConnectedAccount.objects.get()
    assert (account.user, account.managed_account_id, account.status) == (user, "sa_dash", "active")
    session.refresh_from_db()
    assert session.status == "cancelled"
    assert sent.named("connect_session_completed") == []
    assert len(sent.named("account_connected")) == 1


# -- the database failing mid-apply ----------------------------------------------------


def test_database_failure_while_applying_answers_500_and_leaves_nothing(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id)
    (delivery,) = fake.outbox

    def broken(**kwargs: Any) -> Any:
        raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr("unipost_connect.sessions.upsert_account", broken)  # completing the session
    answer = deliver(delivery, Client(raise_request_exception=False))
    assert answer.status_code == 500
    assert WebhookEvent.objects.count() == 0
    assert ConnectedAccount.objects.count() == 0
    session.refresh_from_db()
    assert (session.status, session.managed_account_id, session.completed_at) == ("pending", "", None)
    assert sent.calls == []

    monkeypatch.undo()
    answer = deliver(delivery)
    assert answer.status_code == 200
    assert answer.json()["duplicate"] is False
    session.refresh_from_db()
    assert session.status == "completed"
    assert ConnectedAccount.objects.count() == 1
    assert len(sent.named("connect_session_completed")) == 1


def test_database_failure_while_recording_the_result_rolls_back_the_completion(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the session and account were written still undoes both."""
    session = start(user)
    fake.approve(session.unipost_session_id)
    original_save = WebhookEvent.save

    def failing_save(self: WebhookEvent, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("update_fields"):
            raise DatabaseError("disk full")
        original_save(self, *args, **kwargs)

    monkeypatch.setattr(WebhookEvent, "save", failing_save)
    answer = deliver(fake.outbox[0], Client(raise_request_exception=False))
    assert answer.status_code == 500
    assert WebhookEvent.objects.count() == 0
    assert ConnectedAccount.objects.count() == 0
    session.refresh_from_db()
    assert session.status == "pending"
    assert sent.calls == []


def test_database_failure_on_disconnect_answers_500_and_leaves_the_account_active(
    fake: FakeUniPost, user: Any, sent: SignalLog, deliver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id)
    deliver(fake.outbox[0])
    account = ConnectedAccount.objects.get()
    delivery = fake.webhook(
        "account.disconnected", {"social_account_id": account.managed_account_id, "platform": "linkedin"}
    )

    def broken(account: Any) -> bool:
        raise DatabaseError("deadlock detected")

    monkeypatch.setattr(handlers, "mark_disconnected", broken)
    assert deliver(delivery, Client(raise_request_exception=False)).status_code == 500
    assert WebhookEvent.objects.filter(event_type="account.disconnected").count() == 0
    account.refresh_from_db()
    assert account.status == "active"
    monkeypatch.undo()
    assert deliver(delivery).status_code == 200
    account.refresh_from_db()
    assert account.status == "disconnected"
    assert len(sent.named("account_disconnected")) == 1


def test_webhook_completion_takes_at_most_six_queries(fake: FakeUniPost, user: Any) -> None:
    """Savepoints aside (they are not round trips of their own worth counting here)."""
    session = start(user)
    fake.approve(session.unipost_session_id)
    with CaptureQueriesContext(connection) as queries:
        assert Client().post(URL, **fake.outbox[0].django_client_kwargs()).status_code == 200
    real = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(real) <= 6, real
