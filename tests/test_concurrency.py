"""Exactly once under real concurrency: 20 threads, each with its own PostgreSQL
connection, released together by a barrier onto the same session, event or account.

SQLite serialises writers and has no row locks, so these only mean something on
PostgreSQL (run them with ``scripts/with-postgres``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from tests.helpers import SignalLog, start
from unipost_connect import services
from unipost_connect.client import RemoteSession
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent
from unipost_connect.testing import FakeUniPost

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite has no row locks and serialises writers, so races cannot happen "
        "(run with scripts/with-postgres)",
    ),
]

THREADS = 20


def race(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``threads`` threads released at the same instant; return results.

    Each thread opens its database connection before the barrier (so connecting does not
    spread the start) and closes it at the end.
    """
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in pool), "a thread hung (deadlock?)"
    assert errors == [], errors
    return results


def fresh(session: ConnectSession) -> ConnectSession:
    """Each worker reads its own copy of the row, as a separate process would."""
    return ConnectSession.objects.get(pk=session.pk)


@pytest.mark.parametrize("round_", range(3))
def test_return_webhook_and_reconcile_at_once_complete_once(
    round_: int, fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id, account_name="Alex")
    (delivery,) = fake.outbox
    account_id = delivery.payload["data"]["social_account_id"]
    resent = fake.webhook(
        "account.connected", delivery.payload["data"], event_id="evt_resent"
    )  # another event

    def work(i: int) -> Any:
        mine = fresh(session)
        kind = i % 4
        if kind == 0:  # the browser's return, or the reconcile command
            return services.reconcile_session(mine).status
        if kind == 1:  # UniPost's delivery, possibly retried at the same moment
            return services.apply_webhook_payload(delivery.payload, raw_body=delivery.body).duplicate
        if kind == 2:
            return services.apply_webhook_payload(resent.payload, raw_body=resent.body).duplicate
        return services.complete_session(mine, account_id)

    results = race(work)
    assert len(sent.named("connect_session_completed")) == 1
    assert len(sent.named("account_connected")) == 1
    assert ConnectedAccount.objects.count() == 1
    assert WebhookEvent.objects.count() == 2
    session.refresh_from_db()
    assert (session.status, session.managed_account_id) == ("completed", account_id)
    assert ConnectedAccount.objects.get().account_name in ("", "Alex")
    assert [r for i, r in enumerate(results) if i % 4 == 0] == ["completed"] * 5
    # Each event id was stored by exactly one of its five deliveries.
    assert sorted(r for i, r in enumerate(results) if i % 4 == 1) == [False] + [True] * 4
    assert sorted(r for i, r in enumerate(results) if i % 4 == 2) == [False] + [True] * 4
    (signal,) = sent.named("connect_session_completed")
    assert signal["session"].pk == session.pk
    assert signal["account"].managed_account_id == account_id


def test_complete_session_from_twenty_threads_has_one_winner(
    fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    session = start(user)
    results = race(lambda i: services.complete_session(fresh(session), "sa_race"))
    assert results.count(True) == 1
    assert results.count(False) == THREADS - 1
    assert len(sent.named("connect_session_completed")) == 1
    assert ConnectedAccount.objects.count() == 1


def test_the_same_delivery_twenty_times_at_once_is_stored_and_applied_once(
    fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id)
    (delivery,) = fake.outbox
    results = race(lambda i: services.apply_webhook_payload(delivery.payload, raw_body=delivery.body))
    assert [r.duplicate for r in results].count(False) == 1
    assert {r.event.pk for r in results} == {WebhookEvent.objects.get().pk}
    assert len(sent.named("connect_session_completed")) == 1
    assert ConnectedAccount.objects.count() == 1


def test_ended_without_account_is_sent_once(fake: FakeUniPost, user: Any, sent: SignalLog) -> None:
    session = start(user)
    ConnectSession.objects.filter(pk=session.pk).update(expires_at=timezone.now())
    fake.advance(minutes=31)  # UniPost now answers "expired" too

    def work(i: int) -> bool | None:
        mine = fresh(session)
        kind = i % 4
        if kind == 0:
            return services.end_session(mine, "expired")
        if kind == 1:
            return services.apply_remote_session(
                mine, RemoteSession(id=mine.unipost_session_id or "", status="expired")
            )
        if kind == 2:
            return services.expire_if_overdue(mine)
        assert services.reconcile_session(mine).status == "expired"
        return None  # reconcile_session does not say whether it made the change

    results = race(work)
    assert results.count(True) <= 1
    (signal,) = sent.named("connect_session_ended_without_account")
    assert signal["status"] == "expired"
    assert signal["session"].pk == session.pk
    session.refresh_from_db()
    assert session.status == "expired"


def test_twenty_end_session_calls_send_one_signal(fake: FakeUniPost, user: Any, sent: SignalLog) -> None:
    session = start(user)
    results = race(lambda i: services.end_session(fresh(session), "cancelled"))
    assert results.count(True) == 1
    assert len(sent.named("connect_session_ended_without_account")) == 1


def test_completion_racing_cancellation_ends_one_way(fake: FakeUniPost, user: Any, sent: SignalLog) -> None:
    session = start(user)

    def work(i: int) -> bool:
        if i % 2:
            return services.end_session(fresh(session), "cancelled")
        return services.complete_session(fresh(session), "sa_race")

    results = race(work)
    assert results.count(True) == 1
    session.refresh_from_db()
    completed = sent.named("connect_session_completed")
    ended = sent.named("connect_session_ended_without_account")
    assert len(completed) + len(ended) == 1
    if session.status == "completed":
        assert len(completed) == 1
        assert ConnectedAccount.objects.count() == 1
    else:
        assert session.status == "cancelled"
        assert ConnectedAccount.objects.count() == 0


def test_upsert_of_a_new_account_from_twenty_threads_makes_one_row(user: Any, sent: SignalLog) -> None:
    results = race(
        lambda i: (
            services.upsert_account(user_id=user.pk, managed_account_id="sa_new", platform="linkedin").pk
        )
    )
    assert len(set(results)) == 1
    assert ConnectedAccount.objects.count() == 1
    assert [s["created"] for s in sent.named("account_connected")] == [True]


def test_reconnect_from_twenty_threads_reactivates_once(user: Any, sent: SignalLog) -> None:
    account = services.upsert_account(user_id=user.pk, managed_account_id="sa_1", platform="linkedin")
    services.mark_disconnected(account)
    sent.calls.clear()
    race(lambda i: services.upsert_account(user_id=user.pk, managed_account_id="sa_1", platform="linkedin"))
    assert [s["created"] for s in sent.named("account_connected")] == [False]
    assert ConnectedAccount.objects.get().status == "active"


def test_a_reconnect_by_return_webhook_and_reconcile_at_once_reactivates_once(
    fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    first = start(user)
    fake.approve(first.unipost_session_id or "")
    services.reconcile_session(first)
    account = ConnectedAccount.objects.get()
    failure = fake.fail_token_refresh(account.managed_account_id)
    services.apply_webhook_payload(failure.payload, raw_body=failure.body)
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    connected = fake.outbox[-1]
    sent.calls.clear()

    def work(i: int) -> Any:
        if i % 3 == 0:  # the browser's return, or the reconcile command
            return services.reconcile_session(fresh(session)).status
        if i % 3 == 1:  # UniPost's delivery, retried at the same moment
            return services.apply_webhook_payload(connected.payload, raw_body=connected.body).duplicate
        return services.upsert_account(
            user_id=user.pk,
            managed_account_id=account.managed_account_id,
            platform="linkedin",
            external_user_id=account.external_user_id,
        ).pk

    race(work)
    assert [s["account"].pk for s in sent.named("account_reconnected")] == [account.pk]
    assert sent.named("account_connected") == []
    assert len(sent.named("connect_session_completed")) == 1
    account.refresh_from_db()
    assert account.status == "active"
    assert ConnectedAccount.objects.count() == 1


def test_disconnect_from_twenty_threads_signals_once(user: Any, sent: SignalLog) -> None:
    account = services.upsert_account(user_id=user.pk, managed_account_id="sa_1", platform="linkedin")
    results = race(lambda i: services.mark_disconnected(ConnectedAccount.objects.get(pk=account.pk)))
    assert results.count(True) == 1
    assert len(sent.named("account_disconnected")) == 1


def test_twenty_sessions_of_twenty_users_complete_independently(
    fake: FakeUniPost, django_user_model: Any, sent: SignalLog
) -> None:
    """No lock is wider than its row: different sessions do not block or fail each other."""
    sessions = []
    for i in range(THREADS):
        user = django_user_model.objects.create_user(f"user{i}")
        session = start(user)
        fake.approve(session.unipost_session_id)
        sessions.append(session)
    deliveries = list(fake.outbox)
    results = race(
        lambda i: services.apply_webhook_payload(deliveries[i].payload, raw_body=deliveries[i].body)
    )
    assert [r.event.result for r in results] == ["applied"] * THREADS
    assert ConnectSession.objects.filter(status="completed").count() == THREADS
    assert len(sent.named("connect_session_completed")) == THREADS
    assert ConnectedAccount.objects.count() == THREADS


# -- at UniPost's real pace ---------------------------------------------------------------

LATENCY = 0.3  # seconds UniPost takes to answer, as the issue measured it


@pytest.fixture
def slow_fake(fake: FakeUniPost, monkeypatch: pytest.MonkeyPatch) -> FakeUniPost:
    """The fake answering after 300 ms, and waits that really wait (as in production)."""
    import time

    fake.latency = LATENCY
    monkeypatch.setattr("unipost_connect.client._sleep", time.sleep)
    return fake


def test_twenty_concurrent_clicks_make_one_remote_session(slow_fake: FakeUniPost, user: Any) -> None:
    results = race(lambda i: start(user).url)
    assert slow_fake.requests.count(("POST", "/v1/connect/sessions")) == 1
    assert len(slow_fake.sessions) == 1
    assert len(set(results)) == 1  # every click goes to the same hosted page
    (remote,) = slow_fake.sessions.values()
    assert results[0] == remote.url
    assert ConnectSession.objects.count() == 1


def test_return_webhooks_and_reconcile_at_unipost_pace_complete_once(
    slow_fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    session = start(user)
    slow_fake.approve(session.unipost_session_id, account_name="Alex")
    (delivery,) = slow_fake.outbox

    def work(i: int) -> Any:
        if i % 2:
            return services.apply_webhook_payload(delivery.payload, raw_body=delivery.body).duplicate
        return services.reconcile_session(fresh(session)).status

    results = race(work, threads=12)
    assert len(sent.named("connect_session_completed")) == 1
    assert len(sent.named("account_connected")) == 1
    assert sorted(r for i, r in enumerate(results) if i % 2) == [False] + [True] * 5
    assert [r for i, r in enumerate(results) if not i % 2] == ["completed"] * 6
    session.refresh_from_db()
    assert session.status == "completed"


def test_the_webhook_completes_the_session_unipost_completed_among_several_pending(
    slow_fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    """An older tab's session near its deadline, and a newer one: the user approves the
    older. Deliveries, its return and a reconcile race; only it completes, once."""
    older = start(user)
    slow_fake.advance(minutes=25)  # less than REUSE_MIN_REMAINING left: a click makes another
    ConnectSession.objects.filter(pk=older.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    newer = start(user)
    assert newer.pk != older.pk
    slow_fake.approve(older.unipost_session_id)
    (delivery,) = slow_fake.outbox

    def work(i: int) -> Any:
        if i % 3 == 0:
            return services.apply_webhook_payload(delivery.payload, raw_body=delivery.body).duplicate
        if i % 3 == 1:
            return services.reconcile_session(fresh(older)).status
        return services.reconcile_session(fresh(newer)).status

    race(work, threads=12)
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, newer.status) == ("completed", "pending")
    (completed,) = sent.named("connect_session_completed")
    assert completed["session"].pk == older.pk


def test_twenty_workers_given_one_stored_event_apply_it_once(
    slow_fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    """A worker backend may hand the same event to several workers (a retry, a replay
    beside a live worker): its row lock lets one apply it; the others skip it."""
    session = start(user)
    slow_fake.approve(session.unipost_session_id)
    (delivery,) = slow_fake.outbox
    event = services.store_webhook_payload(delivery.payload, raw_body=delivery.body).event
    results = race(lambda i: services.process_stored_event(event.pk), threads=12)
    assert sorted(results) == [""] * 11 + ["applied"]
    assert len(sent.named("connect_session_completed")) == 1
    event.refresh_from_db()
    assert event.result == "applied"
