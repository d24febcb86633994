"""Which session an ``account.connected`` webhook completes.

The event names no session. A late webhook of a session the browser's return already
completed must never complete the user's next attempt (found by the load run's audit:
connect, come back, start again at once, deny — and the first webhook marked the denied
attempt completed).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from tests.helpers import go_back, record_signals, start
from unipost_connect import services
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost
from unipost_connect.testing.server import FakeUniPostServer
from unipost_connect.webhooks import handlers

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def first_connection_then_a_second_attempt(
    fake: FakeUniPost, user: Any, browser: Client, capture: Any, *, seconds_between: float
) -> tuple[ConnectSession, ConnectSession]:
    first = start(user)
    go_back(browser, fake.approve(first.unipost_session_id or ""), capture)
    first.refresh_from_db()
    assert first.status == "completed"
    fake.advance(seconds=seconds_between)
    second = start(user)
    assert second.pk != first.pk
    return first, second


@pytest.mark.parametrize("seconds_between", [0, 5], ids=["same-second", "seconds-later"])
def test_a_late_webhook_does_not_complete_the_next_attempt(
    fake: FakeUniPost,
    user: Any,
    browser: Client,
    django_capture_on_commit_callbacks: Any,
    seconds_between: float,
) -> None:
    _first, second = first_connection_then_a_second_attempt(
        fake, user, browser, django_capture_on_commit_callbacks, seconds_between=seconds_between
    )
    late = fake.outbox[-1]  # the first session's account.connected, delivered only now
    with record_signals() as sent, django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/unipost/webhook/", **late.django_client_kwargs())
    assert answer.status_code == 200
    second.refresh_from_db()
    assert second.status == "pending"
    assert sent.named("connect_session_completed") == []
    # The user then denies the second attempt: it ends cancelled, as UniPost says.
    go_back(browser, fake.deny(second.unipost_session_id or ""), django_capture_on_commit_callbacks)
    second.refresh_from_db()
    assert second.status == "cancelled"
    assert ConnectedAccount.objects.count() == 1


def test_the_webhook_of_the_attempt_itself_completes_it(
    fake: FakeUniPost, user: Any, browser: Client, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = first_connection_then_a_second_attempt(
        fake, user, browser, django_capture_on_commit_callbacks, seconds_between=0
    )
    fake.approve(second.unipost_session_id or "")  # the user never comes back
    own = fake.outbox[-1]
    with record_signals() as sent, django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/unipost/webhook/", **own.django_client_kwargs())
    assert answer.json()["result"] == "applied"
    second.refresh_from_db()
    assert second.status == "completed"  # confirmed with UniPost: same second as its creation
    assert len(sent.named("connect_session_completed")) == 1
    assert second.managed_account_id == first.managed_account_id  # OAuth: the same account


def test_when_unipost_cannot_confirm_the_session_is_left_pending_and_the_account_kept(
    fake: FakeUniPost, user: Any, browser: Client, django_capture_on_commit_callbacks: Any
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    fake.fail_next("get", 503, times=5)
    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/unipost/webhook/", **fake.outbox[-1].django_client_kwargs())
    assert answer.status_code == 200
    session.refresh_from_db()
    assert session.status == "pending"  # the return or the reconcile command settles it
    assert ConnectedAccount.objects.filter(user=user).count() == 1


def test_an_event_older_than_the_session_never_completes_it(
    fake: FakeUniPost, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    session = start(user)
    stale = fake.webhook(
        "account.connected",
        {
            "social_account_id": "sa_linkedin_old",
            "platform": "linkedin",
            "external_user_id": session.external_user_id,
            "connection_type": "managed",
        },
    )
    ConnectSession.objects.filter(pk=session.pk).update(status="cancelled")
    fake.advance(seconds=10)  # a new attempt, made at UniPost after the event happened
    newer = start(user)
    with django_capture_on_commit_callbacks(execute=True):
        Client().post("/unipost/webhook/", **stale.django_client_kwargs())
    newer.refresh_from_db()
    assert newer.status == "pending"


def test_of_several_pending_sessions_the_one_unipost_completed_is_completed(
    fake: FakeUniPost, user: Any, browser: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """An older tab's session near its deadline and a newer one, both pending. The user
    approves in the older tab: the newer one, created seconds before the event, is still
    pending at UniPost and must stay so."""
    older = start(user)
    fake.advance(minutes=25)  # less than REUSE_MIN_REMAINING left: the next click makes another
    ConnectSession.objects.filter(pk=older.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    newer = start(user)
    assert newer.pk != older.pk
    fake.advance(seconds=5)
    fake.approve(older.unipost_session_id or "")
    with record_signals() as sent, django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/unipost/webhook/", **fake.outbox[-1].django_client_kwargs())
    assert answer.json()["result"] == "applied"
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, newer.status) == ("completed", "pending")
    (completed,) = sent.named("connect_session_completed")
    assert completed["session"].pk == older.pk


@pytest.mark.parametrize("pending", [1, 3])
def test_the_webhook_answers_well_within_five_seconds_when_unipost_is_slow(
    user: Any, browser: Client, django_capture_on_commit_callbacks: Any, pending: int
) -> None:
    """The confirming reads share a budget of their own, not the site's 10 s read timeout,
    however many pending sessions there are to ask about."""
    fake = FakeUniPost(api_key="up_test_key", webhook_secret="whsec_test")
    server = FakeUniPostServer(fake).start()
    try:
        settings = {"API_KEY": "up_test_key", "API_BASE_URL": server.base_url, "WEBHOOK_SECRET": "whsec_test"}
        with override_settings(UNIPOST_CONNECT=settings):
            for _ in range(pending - 1):  # older tabs, each near its deadline when the next is made
                older = start(user)
                ConnectSession.objects.filter(pk=older.pk).update(expires_at=timezone.now())
            session = start(user)
            assert ConnectSession.objects.filter(user=user).count() == pending
            ConnectSession.objects.filter(user=user).update(status="pending")
            fake.approve(session.unipost_session_id or "")
            fake.latency = 8.0  # every answer from now on takes longer than UniPost waits
            began = time.monotonic()
            with django_capture_on_commit_callbacks(execute=True):
                answer = browser.post("/unipost/webhook/", **fake.outbox[-1].django_client_kwargs())
            elapsed = time.monotonic() - began
    finally:
        fake.latency = 0.0
        server.stop()
    assert answer.status_code == 200
    assert elapsed < handlers.WEBHOOK_CONFIRM_BUDGET + 0.5
    session.refresh_from_db()
    assert session.status == "pending"  # unconfirmed: its return or reconcile settles it
    assert ConnectedAccount.objects.filter(user=user).count() == 1


def test_a_late_webhook_completes_a_session_marked_expired_here_that_unipost_completed(
    fake: FakeUniPost, user: Any, browser: Client, django_capture_on_commit_callbacks: Any
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    services.end_session(session, "expired")  # the reconcile command got there first
    with record_signals() as sent, django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/unipost/webhook/", **fake.outbox[-1].django_client_kwargs())
    assert answer.json()["result"] == "applied"
    session.refresh_from_db()
    assert session.status == "completed"
    assert len(sent.named("connect_session_completed")) == 1
