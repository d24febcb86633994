"""The services Python API: return urls, a user's sessions, completing and ending sessions
once, values too long to store, matching webhooks to sessions, reconciling against the fake,
and signals only after commit."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone

from tests.helpers import SignalLog, start
from unipost_connect import services
from unipost_connect.client import RemoteSession
from unipost_connect.errors import NotFoundError, UniPostResponseError
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Any:
    """``with committed():`` runs the block's on-commit callbacks as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def connected(session: ConnectSession, account_id: str = "sa_1", **extra: Any) -> dict[str, Any]:
    data = {
        "social_account_id": account_id,
        "profile_id": "pr_default",
        "platform": session.platform,
        "account_name": "Alex",
        "external_user_id": session.external_user_id,
        "connection_type": "managed",
    }
    return {"event": "account.connected", "data": {**data, **extra}}


# -- return urls and a user's sessions --------------------------------------------------------

SESSION_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_return_url_uses_return_base_url_over_the_request(settings: Any) -> None:
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "RETURN_BASE_URL": "https://www.example.com/"}
    request = RequestFactory().get("/", HTTP_HOST="internal:8000")
    url = services.build_return_url(SESSION_ID, request)
    assert url == f"https://www.example.com/unipost/return/{SESSION_ID}/"


def test_return_url_from_the_request() -> None:
    url = services.build_return_url(SESSION_ID, RequestFactory().get("/"))
    assert url == f"http://testserver/unipost/return/{SESSION_ID}/"


def test_return_url_without_request_or_base_url_names_the_setting() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"RETURN_BASE_URL"):
        services.build_return_url(SESSION_ID)


def test_anonymous_user_has_no_sessions(user: Any, fake: FakeUniPost) -> None:
    services.start_session(user, "linkedin", request=RequestFactory().get("/"))
    assert len(services.user_sessions(user)) == 1
    assert services.user_sessions(AnonymousUser()) == []


def test_user_sessions_newest_first_and_limited(user: Any, other_user: Any, fake: FakeUniPost) -> None:
    request = RequestFactory().get("/")
    first = services.start_session(user, "linkedin", request=request)
    second = services.start_session(user, "bluesky", request=request)
    services.start_session(other_user, "linkedin", request=request)
    assert services.user_sessions(user) == [second, first]
    assert services.user_sessions(user, limit=1) == [second]


# -- completing and ending ----------------------------------------------------------------


def test_complete_session_is_once(fake: FakeUniPost, user: Any, sent: SignalLog, committed: Any) -> None:
    session = start(user)
    stale = ConnectSession.objects.get(pk=session.pk)
    with committed():
        assert services.complete_session(session, "sa_1", account_name="Alex") is True
        assert services.complete_session(stale, "sa_other") is False
    assert (session.status, session.managed_account_id) == ("completed", "sa_1")
    assert session.completed_at is not None
    # The loser is shown what the winner recorded, not its own attempt.
    assert (stale.status, stale.managed_account_id) == ("completed", "sa_1")
    assert ConnectedAccount.objects.get().managed_account_id == "sa_1"
    (signal,) = sent.named("connect_session_completed")
    assert signal["session"].pk == session.pk
    assert signal["session"].status == "completed"
    assert signal["account"].managed_account_id == "sa_1"
    assert signal["account"].user == user


def test_complete_session_clears_an_earlier_error(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    ConnectSession.objects.filter(pk=session.pk).update(error_code="INTERNAL_ERROR", error_message="boom")
    services.complete_session(session, "sa_1")
    session.refresh_from_db()
    assert (session.error_code, session.error_message) == ("", "")


def test_end_session_is_once(fake: FakeUniPost, user: Any, sent: SignalLog, committed: Any) -> None:
    session = start(user)
    with committed():
        assert services.end_session(session, "cancelled") is True
        assert services.end_session(session, "cancelled") is False
        assert services.end_session(session, "expired") is False
    session.refresh_from_db()
    assert session.status == "cancelled"
    (signal,) = sent.named("connect_session_ended_without_account")
    assert signal["status"] == "cancelled"
    assert signal["session"].status == "cancelled"


@pytest.mark.parametrize("status", ["completed", "pending", "failed", "bogus"])
def test_end_session_refuses_a_status_that_is_not_an_ending(
    fake: FakeUniPost, user: Any, status: str
) -> None:
    session = start(user)
    with pytest.raises(ValueError):
        services.end_session(session, status)


def test_completed_session_cannot_be_ended(
    fake: FakeUniPost, user: Any, sent: SignalLog, committed: Any
) -> None:
    session = start(user)
    with committed():
        services.complete_session(session, "sa_1")
        assert services.end_session(session, "expired") is False
    assert session.status == "completed"
    assert sent.named("connect_session_ended_without_account") == []


def test_expired_locally_then_completed_by_a_late_answer(
    fake: FakeUniPost, user: Any, sent: SignalLog, committed: Any
) -> None:
    session = start(user)
    with committed():
        assert services.end_session(session, "expired") is True
        assert services.complete_session(session, "sa_1") is True
    assert session.status == "completed"
    assert len(sent.named("connect_session_ended_without_account")) == 1
    assert len(sent.named("connect_session_completed")) == 1


def test_cancelled_session_is_never_completed(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    services.end_session(session, "cancelled")
    assert services.complete_session(session, "sa_1") is False
    assert session.status == "cancelled"
    assert ConnectedAccount.objects.count() == 0


def test_expire_if_overdue(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    assert services.expire_if_overdue(session) is False
    ConnectSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    session.refresh_from_db()
    assert services.expire_if_overdue(session) is True
    assert session.status == "expired"
    assert services.expire_if_overdue(session) is False


def test_signals_wait_for_the_commit(fake: FakeUniPost, user: Any, sent: SignalLog, committed: Any) -> None:
    session = start(user)
    with committed():
        services.complete_session(session, "sa_1")
        assert sent.calls == []  # still inside the transaction
    assert [name for name, _ in sent.calls] == ["account_connected", "connect_session_completed"]


def test_rolled_back_completion_sends_nothing_and_leaves_nothing(
    fake: FakeUniPost, user: Any, sent: SignalLog, committed: Any
) -> None:
    session = start(user)
    with committed(), pytest.raises(RuntimeError), transaction.atomic():
        services.complete_session(session, "sa_1")
        raise RuntimeError("the caller's own work failed")
    session.refresh_from_db()
    assert session.status == "pending"
    assert ConnectedAccount.objects.count() == 0
    assert sent.calls == []


# -- upsert_account -------------------------------------------------------------------------


def test_upsert_account_keeps_one_row_per_managed_account(user: Any, sent: SignalLog, committed: Any) -> None:
    with committed():
        first = services.upsert_account(user_id=user.pk, managed_account_id="sa_1", platform="linkedin")
        second = services.upsert_account(
            user_id=user.pk, managed_account_id="sa_1", platform="linkedin", account_name="Alex"
        )
    assert first.pk == second.pk
    assert ConnectedAccount.objects.get().account_name == "Alex"
    # An empty name never erases a known one.
    services.upsert_account(user_id=user.pk, managed_account_id="sa_1", platform="linkedin")
    assert ConnectedAccount.objects.get().account_name == "Alex"
    assert [s["created"] for s in sent.named("account_connected")] == [True]


def test_upsert_account_reactivates(user: Any, sent: SignalLog, committed: Any) -> None:
    with committed():
        account = services.upsert_account(user_id=user.pk, managed_account_id="sa_1", platform="linkedin")
        services.mark_disconnected(account)
        again = services.upsert_account(user_id=user.pk, managed_account_id="sa_1", platform="linkedin")
    assert again.pk == account.pk
    assert (again.status, again.disconnected_at) == ("active", None)
    assert [s["created"] for s in sent.named("account_connected")] == [True, False]


# -- apply_remote_session and reconcile_session ------------------------------------------------


def remote(session: ConnectSession, status: str, **extra: Any) -> RemoteSession:
    return RemoteSession(id=session.unipost_session_id or "", status=status, **extra)


def test_apply_remote_session_outcomes(fake: FakeUniPost, user: Any) -> None:
    pending = start(user)
    assert services.apply_remote_session(pending, remote(pending, "pending")) is False
    later = timezone.now() + timedelta(minutes=20)
    assert services.apply_remote_session(pending, remote(pending, "pending", expires_at=later)) is False
    pending.refresh_from_db()
    assert pending.expires_at == later
    assert services.apply_remote_session(pending, remote(pending, "weird_new_status")) is False
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert services.apply_remote_session(pending, remote(pending, "cancelled")) is True
    assert pending.status == "cancelled"


def test_apply_remote_completed_without_account_is_an_error(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    with pytest.raises(UniPostResponseError):
        services.apply_remote_session(session, remote(session, "completed"))
    session.refresh_from_db()
    assert session.status == "pending"


def test_reconcile_session_against_the_fake(
    fake: FakeUniPost, user: Any, sent: SignalLog, committed: Any
) -> None:
    session = start(user)
    assert services.reconcile_session(session).status == "pending"
    fake.approve(session.unipost_session_id)
    with committed():
        assert services.reconcile_session(session).status == "completed"
        assert services.reconcile_session(session).status == "completed"
    assert session.managed_account_id == fake.sessions[session.unipost_session_id].managed_account_id
    assert len(sent.named("connect_session_completed")) == 1


def test_reconcile_session_sees_lazy_expiry(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    fake.advance(minutes=31)
    assert services.reconcile_session(session).status == "expired"


def test_reconcile_session_failure_keeps_status_and_records_the_error(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    fake.fail_next("get", 404)
    with pytest.raises(NotFoundError):
        services.reconcile_session(session)
    session.refresh_from_db()
    assert session.status == "pending"
    assert session.error_code == "NOT_FOUND"
    assert session.request_id == fake.request_ids[-1]


# -- values too long for their columns ----------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "managed_account_id", "url"])
def test_values_too_long_for_their_columns_are_refused(fake: Any, user: Any, field: str) -> None:
    # Bounding for storage lives beside the models (unipost_connect.bounds), not in the
    # client: the flow refuses the answer, and the row keeps the error.
    if field == "managed_account_id":
        session = services.start_session(user, "linkedin", request=RequestFactory().get("/"))
        data = fake.sessions[session.unipost_session_id or ""].as_json()
        data.update(status="completed", managed_account_id="x" * 3000)
        fake.fail_next("get", 200, body=json.dumps({"data": data}))
        with pytest.raises(UniPostResponseError, match=field):
            services.reconcile_session(session)
    else:
        data = {
            "id": "9e2b7c41-6d3a-4f58-b0c2-7a1e5d8f3b96",
            "status": "pending",
            "url": "https://app.unipost.test/connect/linkedin?session=x&state=s",
        }
        data[field] = ("https://app.unipost.test/" if field == "url" else "") + "x" * 3000
        fake.fail_next("create", 201, body=json.dumps({"data": data}))
        with pytest.raises(UniPostResponseError, match=field):
            services.start_session(user, "linkedin", request=RequestFactory().get("/"))
        session = ConnectSession.objects.get()
    session.refresh_from_db()
    assert session.error_code == "INVALID_RESPONSE"
    assert len(session.url) <= 2048


# -- apply_webhook_payload and matching events to sessions --------------------------------------


def approved(fake: FakeUniPost, session: ConnectSession) -> str:
    """Approve ``session`` at the fake, as the user would; the managed account id."""
    fake.approve(session.unipost_session_id or "")
    return fake.sessions[session.unipost_session_id or ""].managed_account_id or ""


def test_apply_webhook_payload_python_api(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    payload = connected(session, approved(fake, session))
    first = services.apply_webhook_payload(payload)
    again = services.apply_webhook_payload(dict(payload))
    assert (first.duplicate, again.duplicate) == (False, True)
    assert first.event.pk == again.event.pk
    assert first.event.event_key.startswith("sha256:")
    assert first.event.result == "applied"
    session.refresh_from_db()
    assert session.status == "completed"


def test_webhook_for_another_platform_completes_nothing(fake: FakeUniPost, user: Any) -> None:
    session = start(user, "linkedin")
    outcome = services.apply_webhook_payload(connected(session, platform="bluesky"))
    assert outcome.event.result == "applied"  # the account is recorded for the user...
    session.refresh_from_db()
    assert session.status == "pending"  # ...but the LinkedIn session is not its source
    assert ConnectedAccount.objects.get().platform == "bluesky"


def _two_pending_sessions(user: Any) -> tuple[ConnectSession, ConnectSession]:
    """An older pending session left behind, and a newer one (as after a long pause)."""
    older = start(user)
    ConnectSession.objects.filter(pk=older.pk).update(
        created_at=timezone.now() - timedelta(minutes=25), expires_at=timezone.now() + timedelta(minutes=5)
    )
    older.refresh_from_db()
    newer = start(user)  # the older one has under REUSE_MIN_REMAINING left: a new one
    assert newer.pk != older.pk
    return older, newer


def test_webhook_completes_the_newest_pending_session(fake: FakeUniPost, user: Any) -> None:
    older, newer = _two_pending_sessions(user)
    fake.approve(newer.unipost_session_id)
    services.apply_webhook_payload(fake.outbox[-1].payload)
    newer.refresh_from_db()
    older.refresh_from_db()
    assert (older.status, newer.status) == ("pending", "completed")


def test_echo_of_a_return_does_not_complete_an_older_pending_session(fake: FakeUniPost, user: Any) -> None:
    older, newer = _two_pending_sessions(user)
    fake.approve(newer.unipost_session_id)
    services.reconcile_session(newer)  # the browser's return came first
    assert newer.status == "completed"
    outcome = services.apply_webhook_payload(fake.outbox[-1].payload)
    assert outcome.event.result == "applied"
    older.refresh_from_db()
    assert older.status == "pending"
    assert ConnectSession.objects.filter(status="completed").count() == 1


def test_echo_of_an_older_sessions_return_does_not_complete_the_newer_one(
    fake: FakeUniPost, user: Any
) -> None:
    older, newer = _two_pending_sessions(user)
    fake.advance(seconds=5)  # UniPost's times are whole seconds; let the user take some
    fake.approve(older.unipost_session_id)  # the user finished the tab left open
    services.reconcile_session(older)
    assert older.status == "completed"
    services.apply_webhook_payload(fake.outbox[-1].payload)
    newer.refresh_from_db()
    assert newer.status == "pending"


def test_late_event_does_not_complete_a_session_started_after_it(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    payload = connected(session, "sa_9")
    payload["timestamp"] = (timezone.now() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ConnectSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    services.apply_webhook_payload(payload)
    session.refresh_from_db()
    assert session.status == "pending"
    assert ConnectedAccount.objects.get().managed_account_id == "sa_9"


def test_reconnect_later_completes_the_new_session(fake: FakeUniPost, user: Any) -> None:
    first = start(user)
    account_id = approved(fake, first)
    services.complete_session(first, account_id)
    ConnectSession.objects.filter(pk=first.pk).update(
        created_at=timezone.now() - timedelta(days=7), completed_at=timezone.now() - timedelta(days=7)
    )
    second = start(user)
    assert approved(fake, second) == account_id  # OAuth platforms reuse the managed account
    payload = connected(second, account_id)
    payload["timestamp"] = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    services.apply_webhook_payload(payload)
    second.refresh_from_db()
    assert (second.status, second.managed_account_id) == ("completed", account_id)


@pytest.mark.parametrize(
    "timestamp",
    [
        None,
        "",
        "not a date",
        "2026-13-45T99:00:00Z",
        12345,
        "2026-04-08T10:00:00",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00-14:00",
    ],
)
def test_odd_timestamps_are_ignored(fake: FakeUniPost, user: Any, timestamp: Any) -> None:
    # The event's time decides nothing (UniPost is asked which session completed), so an
    # odd one is neither an error nor a reason to leave the session pending.
    session = start(user)
    payload = connected(session, approved(fake, session))
    payload["timestamp"] = timestamp
    services.apply_webhook_payload(payload)
    session.refresh_from_db()
    assert session.status == "completed"


def test_webhook_completion_time_is_unipost_s(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    fake.advance(seconds=30)
    payload = connected(session, approved(fake, session))
    payload["timestamp"] = "2020-01-01T00:00:00Z"  # not the event's to say
    services.apply_webhook_payload(payload)
    session.refresh_from_db()
    remote = fake.sessions[session.unipost_session_id or ""]
    assert remote.completed_at is not None
    assert session.completed_at == remote.completed_at.replace(microsecond=0)


def test_webhook_event_kept_once_even_when_unknown(user: Any) -> None:
    payload = {
        "event": "account.connected",
        "event_id": "evt_1",
        "data": {"social_account_id": "sa", "external_user_id": "ghost", "platform": "linkedin"},
    }
    assert services.apply_webhook_payload(payload).event.result == "unknown_user"
    assert services.apply_webhook_payload(payload).duplicate is True
    assert WebhookEvent.objects.count() == 1
