"""``unipost_connect.reconcile``: the bulk reconcile engine, without the command around it."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import TestCase, override_settings
from django.utils import timezone

from tests.helpers import SignalLog
from tests.test_reconcile_command import make_session
from unipost_connect import reconcile
from unipost_connect.client import RemoteSession, UniPostClient, get_client
from unipost_connect.contract import DEFAULT_BASE_URL
from unipost_connect.errors import (
    AuthenticationError,
    EndpointNotFoundError,
    RateLimitedError,
    ServerError,
)
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


def answer(session: ConnectSession) -> reconcile.Fetched:
    """What the fake says about ``session`` now, as the engine's reader would fetch it."""
    return reconcile.Fetched(remote=get_client().get_session(session.unipost_session_id or ""))


def settled(session: ConnectSession, fetched: reconcile.Fetched, **options: Any) -> reconcile.Checked:
    # Signals go out on commit; run the callbacks the test transaction holds back.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return reconcile.settle(session, fetched, **options)


def run(**options: Any) -> list[reconcile.Checked]:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return list(reconcile.reconcile_pending(timezone.now(), **options))


def fresh(session: ConnectSession) -> ConnectSession:
    return ConnectSession.objects.get(pk=session.pk)


# -- stop_reason ------------------------------------------------------------------------------


def test_stop_reason_names_the_setting_to_fix_for_a_refused_key() -> None:
    reason = reconcile.stop_reason(AuthenticationError("bad key", status=401))
    assert "UNIPOST_CONNECT['API_KEY']" in reason and "stopped early" in reason


def test_stop_reason_names_the_base_url_for_an_endpoint_that_is_not_unipost() -> None:
    reason = reconcile.stop_reason(EndpointNotFoundError("no route", status=404))
    assert "UNIPOST_CONNECT['API_BASE_URL']" in reason and DEFAULT_BASE_URL in reason


def test_stop_reason_says_to_run_again_later_when_rate_limited() -> None:
    assert "run again later" in reconcile.stop_reason(RateLimitedError("slow down", status=429))


def test_stop_reason_is_empty_for_an_error_of_one_session() -> None:
    assert reconcile.stop_reason(ServerError("boom", status=500)) == ""


# -- pending_sessions -------------------------------------------------------------------------


def test_pending_sessions_are_oldest_first_and_created_before_the_cutoff(
    fake: FakeUniPost, user: Any
) -> None:
    sessions = [make_session(user, minutes_ago=minutes) for minutes in (5, 30, 20, 1)]
    ConnectSession.objects.filter(pk=sessions[2].pk).update(status=ConnectSession.Status.CANCELLED)
    cutoff = timezone.now() - timedelta(minutes=3)
    listed = list(reconcile.pending_sessions(cutoff, batch_size=1))
    assert listed == [sessions[1], sessions[0]]


def test_pending_sessions_split_equal_created_at_by_id_and_honour_the_limit(
    fake: FakeUniPost, user: Any
) -> None:
    same = timezone.now() - timedelta(minutes=10)
    sessions = sorted((make_session(user, created_at=same) for _ in range(5)), key=lambda s: s.pk)
    assert list(reconcile.pending_sessions(timezone.now(), batch_size=2)) == sessions
    assert list(reconcile.pending_sessions(timezone.now(), batch_size=2, limit=3)) == sessions[:3]
    assert list(reconcile.pending_sessions(timezone.now(), limit=0)) == []


# -- settle -----------------------------------------------------------------------------------


def test_settle_applies_a_completion_with_its_account(fake: FakeUniPost, user: Any, sent: SignalLog) -> None:
    session = make_session(user)
    fake.approve(session.unipost_session_id or "")
    checked = settled(session, answer(session))
    assert (checked.outcome, checked.error, checked.stop) == ("completed", None, "")
    assert fresh(session).status == "completed"
    assert ConnectedAccount.objects.get(user=user).managed_account_id == fresh(session).managed_account_id
    assert len(sent.named("connect_session_completed")) == 1


def test_settle_in_a_dry_run_reports_the_same_outcome_and_changes_nothing(
    fake: FakeUniPost, user: Any, sent: SignalLog
) -> None:
    session = make_session(user)
    fake.approve(session.unipost_session_id or "")
    checked = settled(session, answer(session), dry_run=True)
    assert checked.outcome == "completed"
    assert fresh(session).status == "pending"
    assert not ConnectedAccount.objects.exists()
    assert sent.calls == []


@pytest.mark.parametrize("dry_run", [False, True])
def test_settle_refuses_an_answer_it_cannot_apply_in_a_dry_run_too(
    fake: FakeUniPost, user: Any, dry_run: bool
) -> None:
    # The dry run decides through the same code: a completion without its account is an
    # error there as well, not a guess of its own.
    session = make_session(user)
    remote = RemoteSession(id=session.unipost_session_id or "", status="completed", request_id="req_c")
    checked = settled(session, reconcile.Fetched(remote=remote), dry_run=dry_run)
    assert checked.outcome == reconcile.ERRORS
    assert checked.error is not None and checked.error.request_id == "req_c"
    assert checked.stop == ""
    row = fresh(session)
    assert row.status == "pending"
    assert row.error_code == ("" if dry_run else checked.error.code)


def test_settle_expires_an_overdue_session_unipost_does_not_know(fake: FakeUniPost, user: Any) -> None:
    overdue = make_session(user, minutes_ago=31, remote=False)
    recent = make_session(user, minutes_ago=10, remote=False, profile_id="pr_other")
    assert settled(overdue, reconcile.Fetched()).outcome == "expired"
    assert settled(recent, reconcile.Fetched()).outcome == "unchanged"
    assert (fresh(overdue).status, fresh(recent).status) == ("expired", "pending")


def test_settle_takes_unipost_deadline_for_a_session_still_pending_there(
    fake: FakeUniPost, user: Any
) -> None:
    session = make_session(user)
    ConnectSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    session.refresh_from_db()
    fetched = answer(session)
    assert settled(session, fetched).outcome == "unchanged"
    assert fresh(session).status == "pending"
    assert fetched.remote is not None and fresh(session).expires_at == fetched.remote.expires_at


def test_settle_leaves_a_session_another_worker_completed_unchanged(fake: FakeUniPost, user: Any) -> None:
    session = make_session(user)
    fake.approve(session.unipost_session_id or "")
    fetched = answer(session)
    assert settled(fresh(session), fetched).outcome == "completed"
    assert settled(session, fetched).outcome == "unchanged"  # its copy still says pending


def test_settle_calls_an_unknown_remote_status_unknown(fake: FakeUniPost, user: Any) -> None:
    session = make_session(user)
    remote = RemoteSession(id=session.unipost_session_id or "", status="paused")
    assert settled(session, reconcile.Fetched(remote=remote)).outcome == "unknown"
    assert fresh(session).status == "pending"


def test_settle_records_a_read_error_and_says_when_to_stop(fake: FakeUniPost, user: Any) -> None:
    session = make_session(user)
    error = AuthenticationError("Invalid API key", status=401, request_id="req_k")
    checked = settled(session, reconcile.Fetched(error=error))
    assert (checked.outcome, checked.error) == (reconcile.ERRORS, error)
    assert "UNIPOST_CONNECT['API_KEY']" in checked.stop
    assert (fresh(session).error_code, fresh(session).request_id) == (error.code, "req_k")


def test_settle_leaves_a_skipped_session_for_the_next_run(fake: FakeUniPost, user: Any) -> None:
    session = make_session(user, minutes_ago=40, remote=False)  # overdue, yet not touched
    assert settled(session, reconcile.Fetched(skipped=True)).outcome == "unchanged"
    assert fresh(session).status == "pending"


# -- reconcile_pending ------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 3])
def test_reconcile_pending_settles_every_session_in_order(fake: FakeUniPost, user: Any, workers: int) -> None:
    sessions = [make_session(user, minutes_ago=30 - i) for i in range(6)]
    fake.approve(sessions[0].unipost_session_id or "")
    fake.deny(sessions[1].unipost_session_id or "")
    checked = run(batch_size=2, workers=workers)
    assert [c.session.pk for c in checked] == [s.pk for s in sessions]
    assert [c.outcome for c in checked] == ["completed", "cancelled"] + ["unchanged"] * 4


def test_reconcile_pending_ends_after_a_failure_every_call_would_share(fake: FakeUniPost, user: Any) -> None:
    sessions = [make_session(user, minutes_ago=30 - i) for i in range(3)]
    fake.requests.clear()
    fake.api_key = "up_test_rotated"
    checked = run()
    assert [(c.session.pk, c.outcome) for c in checked] == [(sessions[0].pk, reconcile.ERRORS)]
    assert "UNIPOST_CONNECT['API_KEY']" in checked[0].stop
    assert len(fake.requests) == 1


def test_reconcile_pending_paces_rate_limits_through_the_client_sleep(
    fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("unipost_connect.client._sleep", waits.append)
    session = make_session(user)
    fake.approve(session.unipost_session_id or "")
    fake.rate_limit_next("get", retry_after=3600, times=reconcile.RATE_LIMIT_ATTEMPTS)
    checked = run()
    assert waits == [reconcile.MAX_RATE_LIMIT_WAIT] * (reconcile.RATE_LIMIT_ATTEMPTS - 1)
    assert checked[0].outcome == reconcile.ERRORS
    assert "rate limiting" in checked[0].stop


def test_reconcile_pending_reads_with_clients_built_from_settings(
    fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_session(user, minutes_ago=20)
    make_session(user, minutes_ago=10)
    built: list[UniPostClient] = []
    real_init = UniPostClient.__init__

    def spy_init(self: UniPostClient, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(UniPostClient, "__init__", spy_init)
    with override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "READ_TIMEOUT": 7.5}):
        run(workers=2)
    assert built, "the engine built no client"
    assert {client.timeout[1] for client in built} == {7.5}
    assert len(built) <= 2  # one per thread, not one per session


def test_closing_reconcile_pending_early_stops_its_worker_threads(fake: FakeUniPost, user: Any) -> None:
    sessions = [make_session(user, minutes_ago=30 - i) for i in range(8)]
    results = reconcile.reconcile_pending(timezone.now(), workers=2)
    first = next(results)
    results.close()
    assert first.session.pk == sessions[0].pk
    assert not [t for t in threading.enumerate() if t.name.startswith("unipost-reconcile")]


# -- sync_accounts ----------------------------------------------------------------------------


def accounts_of(django_user_model: Any, *names: str) -> list[ConnectedAccount]:
    accounts = []
    for n, name in enumerate(names):
        owner = django_user_model.objects.create_user(name)
        accounts.append(
            ConnectedAccount.objects.create(
                user=owner, platform="linkedin", managed_account_id=f"sa_{n}", external_user_id=str(owner.pk)
            )
        )
    return accounts


def test_sync_accounts_yields_each_end_user_once(fake: FakeUniPost, django_user_model: Any) -> None:
    accounts = accounts_of(django_user_model, "a", "b")
    ConnectedAccount.objects.filter(pk=accounts[1].pk).update(status=ConnectedAccount.Status.DISCONNECTED)
    synced = list(reconcile.sync_accounts())
    assert [s.external_user_id for s in synced] == [accounts[0].external_user_id]
    assert (synced[0].changed, synced[0].error, synced[0].stop) == (0, None, "")


def test_sync_accounts_goes_on_after_one_user_fails(fake: FakeUniPost, django_user_model: Any) -> None:
    accounts_of(django_user_model, "a", "b")
    fake.fail_next("accounts", 500)  # the first list only: this client does not retry
    synced = list(reconcile.sync_accounts(client=UniPostClient.from_settings(max_retries=0)))
    assert [s.error is not None for s in synced] == [True, False]
    assert synced[0].stop == ""


def test_sync_accounts_ends_at_an_authentication_failure(fake: FakeUniPost, django_user_model: Any) -> None:
    accounts_of(django_user_model, "a", "b", "c")
    fake.api_key = "up_test_rotated"
    synced = list(reconcile.sync_accounts())
    assert len(synced) == 1
    assert isinstance(synced[0].error, AuthenticationError)
    assert "UNIPOST_CONNECT['API_KEY']" in synced[0].stop
