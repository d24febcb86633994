from __future__ import annotations

import json
import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import TestCase, override_settings
from django.utils import timezone

from unipost_connect import reconcile as engine
from unipost_connect import services, signals
from unipost_connect.client import UniPostClient, get_client
from unipost_connect.models import ConnectedAccount, ConnectSession

pytestmark = pytest.mark.django_db


def make_session(
    user: Any,
    *,
    minutes_ago: float = 10,
    platform: str = "linkedin",
    remote: bool = True,
    created_at: Any = None,
    profile_id: str = "",
) -> ConnectSession:
    """A local pending session; with ``remote`` also a pending one at the fake."""
    created = created_at or timezone.now() - timedelta(minutes=minutes_ago)
    fields: dict[str, Any] = {}
    if remote:
        answer = get_client().create_session(
            platform=platform, external_user_id=str(user.pk), return_url="https://site.test/back"
        )
        fields = {"unipost_session_id": answer.id, "url": answer.url, "expires_at": answer.expires_at}
    return ConnectSession.objects.create(
        user=user,
        platform=platform,
        profile_id=profile_id,
        external_user_id=str(user.pk),
        created_at=created,
        **fields,
    )


def reconcile(*args: str, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    # Signals go out on commit; run the callbacks the test transaction holds back.
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("unipost_connect_reconcile", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def reconcile_stopped(*args: str, **options: Any) -> tuple[str, str, CommandError]:
    """Run the command expecting it to stop early: its output and the CommandError it raised."""
    out, err = StringIO(), StringIO()
    with TestCase.captureOnCommitCallbacks(execute=True):
        with pytest.raises(CommandError) as info:
            call_command("unipost_connect_reconcile", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue(), info.value


def status_of(session: ConnectSession) -> str:
    session.refresh_from_db()
    return session.status


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the run (its own pacing, and its clients' retries) asks for, without waiting."""
    asked: list[float] = []
    monkeypatch.setattr("unipost_connect.client._sleep", asked.append)
    return asked


@pytest.fixture
def sent() -> Any:
    """Counts of the session signals, per session id."""
    record: dict[str, list[Any]] = {"completed": [], "ended": []}

    def on_completed(sender: Any, session: Any, account: Any, **kwargs: Any) -> None:
        record["completed"].append((session.pk, account.managed_account_id))

    def on_ended(sender: Any, session: Any, status: str, **kwargs: Any) -> None:
        record["ended"].append((session.pk, status))

    signals.connect_session_completed.connect(on_completed)
    signals.connect_session_ended_without_account.connect(on_ended)
    yield record
    signals.connect_session_completed.disconnect(on_completed)
    signals.connect_session_ended_without_account.disconnect(on_ended)


def test_abandoned_but_completed_session_becomes_completed_with_its_account(fake, user, sent):
    session = make_session(user)
    fake.approve(session.unipost_session_id)  # the user never came back
    out, err = reconcile()
    assert status_of(session) == "completed"
    assert session.managed_account_id == fake.sessions[session.unipost_session_id].managed_account_id
    account = ConnectedAccount.objects.get(user=user)
    assert account.managed_account_id == session.managed_account_id
    assert account.platform == "linkedin"
    assert sent["completed"] == [(session.pk, account.managed_account_id)]
    assert "1 checked, 1 completed" in out
    assert err == ""


def test_old_session_becomes_expired(fake, user, sent):
    session = make_session(user, minutes_ago=31)
    fake.advance(minutes=31)
    out, _ = reconcile()
    assert status_of(session) == "expired"
    assert sent["ended"] == [(session.pk, "expired")]
    assert "1 expired" in out


def test_cancelled_session_becomes_cancelled(fake, user, sent):
    session = make_session(user)
    fake.deny(session.unipost_session_id)
    reconcile()
    assert status_of(session) == "cancelled"
    assert sent["ended"] == [(session.pk, "cancelled")]
    assert not ConnectedAccount.objects.exists()


def test_still_pending_at_unipost_is_left_pending(fake, user, sent):
    session = make_session(user)
    fake.error(session.unipost_session_id)  # an authorization error leaves it pending
    out, _ = reconcile()
    assert status_of(session) == "pending"
    assert "1 unchanged" in out
    assert sent == {"completed": [], "ended": []}


def test_unipost_deadline_is_the_one_that_counts(fake, user):
    session = make_session(user)
    # Locally we believe it is overdue, but UniPost (which decides) still has it pending.
    ConnectSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    reconcile()
    assert status_of(session) == "pending"
    assert session.expires_at == fake.sessions[session.unipost_session_id].expires_at.replace(microsecond=0)


def test_session_that_never_reached_unipost_expires_after_its_deadline(fake, user, sent):
    overdue = make_session(user, minutes_ago=31, remote=False)
    # Another target: only one start per user and target can be in flight.
    recent = make_session(user, minutes_ago=10, remote=False, profile_id="pr_other")
    out, _ = reconcile()
    assert status_of(overdue) == "expired"
    assert status_of(recent) == "pending"
    assert sent["ended"] == [(overdue.pk, "expired")]
    assert fake.requests == []  # nothing to ask UniPost
    assert "2 checked, 0 completed, 1 expired, 0 cancelled, 1 unchanged" in out


def test_session_unknown_to_unipost_expires_once_overdue(fake, user):
    overdue = make_session(user, minutes_ago=31, remote=False)
    overdue.unipost_session_id = "cs_gone"
    overdue.save()
    recent = make_session(user, minutes_ago=10, remote=False)
    recent.unipost_session_id = "cs_gone_too"
    recent.save()
    reconcile()
    assert status_of(overdue) == "expired"
    assert status_of(recent) == "pending"


def test_unknown_remote_status_leaves_the_session_pending(fake, user):
    session = make_session(user)
    body = {"data": {"id": session.unipost_session_id, "status": "Completed", "managed_account_id": "sa_1"}}
    fake.fail_next("get", 200, body=json.dumps(body))
    out, _ = reconcile()
    assert status_of(session) == "pending"
    assert "1 unknown" in out
    assert not ConnectedAccount.objects.exists()


def test_rate_limit_honours_retry_after_and_goes_on(fake, user, waits):
    first, second = make_session(user, minutes_ago=20), make_session(user, minutes_ago=10)
    fake.approve(first.unipost_session_id)
    fake.approve(second.unipost_session_id)
    fake.rate_limit_next("get", retry_after=30)  # longer than the client's own retry cap
    out, err = reconcile()
    assert waits == [30]
    assert "rate" not in err.lower()
    assert status_of(first) == "completed"
    assert status_of(second) == "completed"
    assert "2 completed" in out and "0 errors" in out


def test_short_retry_after_is_waited_through_the_same_sleep(fake, user, waits):
    session = make_session(user)
    fake.approve(session.unipost_session_id)
    fake.rate_limit_next("get", retry_after=2)
    reconcile()
    assert waits == [2]
    assert status_of(session) == "completed"


def test_a_retry_after_of_an_hour_is_capped(fake, user, waits):
    session = make_session(user)
    fake.rate_limit_next("get", retry_after=3600)
    reconcile()
    assert waits == [engine.MAX_RATE_LIMIT_WAIT]
    assert status_of(session) == "pending"


def test_persistent_rate_limiting_stops_the_run_and_reports_it(fake, user, waits):
    sessions = [make_session(user, minutes_ago=20 - i) for i in range(3)]
    for session in sessions:
        fake.approve(session.unipost_session_id)
    fake.rate_limit_next("get", retry_after=10, times=engine.RATE_LIMIT_ATTEMPTS)
    out, err, stopped = reconcile_stopped()
    assert waits == [10] * (engine.RATE_LIMIT_ATTEMPTS - 1)
    assert f"session {sessions[0].pk}" in err and "RATE_LIMITED" in err
    assert "stopped early" in str(stopped)
    assert stopped.returncode != 0
    assert [status_of(s) for s in sessions] == ["pending"] * 3
    assert "1 checked" in out and "1 errors" in out


def test_server_error_on_one_session_is_reported_and_the_others_processed(fake, user, waits):
    failing = make_session(user, minutes_ago=20)
    others = [make_session(user, minutes_ago=10), make_session(user, minutes_ago=5)]
    for session in (failing, *others):
        fake.approve(session.unipost_session_id)
    # The client retries a 500 twice, so fail all three attempts of the first read.
    fake.fail_next("get", 500, message="boom", headers={"X-Request-Id": "req_boom"}, times=3)
    out, err = reconcile()
    assert status_of(failing) == "pending"
    assert [status_of(s) for s in others] == ["completed", "completed"]
    assert f"session {failing.pk}" in err
    assert "INTERNAL_ERROR" in err and "HTTP 500" in err and "request_id=req_boom" in err
    assert str(others[0].pk) not in err
    assert "3 checked, 2 completed" in out and "1 errors" in out


def test_html_502_is_reported_with_its_code(fake, user, waits):
    session = make_session(user)
    fake.fail_next("get", 502, body="<html>Bad gateway</html>", headers={"X-Request-Id": "req_px"}, times=3)
    _, err = reconcile()
    assert "HTTP_502" in err and "request_id=req_px" in err
    assert status_of(session) == "pending"


def test_dry_run_changes_nothing_but_reports(fake, user, sent):
    completed = make_session(user, minutes_ago=20)
    cancelled = make_session(user, minutes_ago=15)
    overdue = make_session(user, minutes_ago=40, remote=False)
    fake.approve(completed.unipost_session_id)
    fake.deny(cancelled.unipost_session_id)
    out, _ = reconcile("--dry-run")
    assert [status_of(s) for s in (completed, cancelled, overdue)] == ["pending"] * 3
    assert not ConnectedAccount.objects.exists()
    assert sent == {"completed": [], "ended": []}
    assert "[dry run] Would reconcile: 3 checked, 1 completed, 1 expired, 1 cancelled, 0 unchanged" in out


def test_older_than_is_respected(fake, user):
    old = make_session(user, minutes_ago=20)
    young = make_session(user, minutes_ago=2)
    for session in (old, young):
        fake.approve(session.unipost_session_id)
    reconcile()  # default: 5 minutes
    assert status_of(old) == "completed"
    assert status_of(young) == "pending"
    reconcile("--older-than", "1")
    assert status_of(young) == "completed"


def test_limit_is_respected_oldest_first(fake, user):
    sessions = [make_session(user, minutes_ago=30 - i) for i in range(5)]
    for session in sessions:
        fake.approve(session.unipost_session_id)
    out, _ = reconcile("--limit", "2", "--batch-size", "1")
    assert [status_of(s) for s in sessions] == ["completed"] * 2 + ["pending"] * 3
    assert "2 checked" in out
    out, _ = reconcile(limit=0)
    assert "0 checked" in out


def test_progress_line_per_batch_and_summary(fake, user):
    for i in range(5):
        make_session(user, minutes_ago=20 - i)
    out, _ = reconcile("--batch-size", "2")
    lines = out.strip().splitlines()
    assert [line.split(",")[0] for line in lines[:2]] == ["... 2 checked", "... 4 checked"]
    assert lines[-1].startswith("Reconciled: 5 checked, 0 completed, 0 expired, 0 cancelled, 5 unchanged")
    assert "/s)" in lines[-1]


def test_keyset_batches_handle_equal_created_at(fake, user):
    same = timezone.now() - timedelta(minutes=10)
    sessions = [make_session(user, created_at=same) for _ in range(7)]
    fake.requests.clear()
    out, _ = reconcile("--batch-size", "3")
    asked = [path.rsplit("/", 1)[1] for method, path in fake.requests if method == "GET"]
    assert sorted(asked) == sorted(s.unipost_session_id for s in sessions)  # each once, none skipped
    assert "7 checked" in out


def test_keyset_batches_do_not_skip_rows_changed_during_the_run(fake, user):
    same = timezone.now() - timedelta(minutes=10)
    sessions = [make_session(user, created_at=same) for _ in range(7)]
    for session in sessions:
        fake.approve(session.unipost_session_id)
    reconcile("--batch-size", "2")
    assert {status_of(s) for s in sessions} == {"completed"}


def test_running_twice_changes_nothing_the_second_time(fake, user, sent):
    completed = make_session(user, minutes_ago=20)
    cancelled = make_session(user, minutes_ago=15)
    expired = make_session(user, minutes_ago=40, remote=False)
    fake.approve(completed.unipost_session_id)
    fake.deny(cancelled.unipost_session_id)
    reconcile()
    first = {s.pk: (status_of(s), s.updated_at) for s in (completed, cancelled, expired)}
    out, _ = reconcile()
    second = {s.pk: (status_of(s), s.updated_at) for s in (completed, cancelled, expired)}
    assert first == second
    assert "0 checked" in out
    assert len(sent["completed"]) == 1
    assert sorted(status for _, status in sent["ended"]) == ["cancelled", "expired"]
    assert ConnectedAccount.objects.count() == 1


def test_an_outcome_recorded_meanwhile_is_not_applied_twice(fake, user, sent, monkeypatch):
    session = make_session(user)
    fake.approve(session.unipost_session_id)
    # The return view completes it between the command's read and its write.
    real_get = UniPostClient.get_session

    def get_then_return_view(self: Any, session_id: str) -> Any:
        remote = real_get(self, session_id)
        services.complete_session(
            ConnectSession.objects.get(unipost_session_id=session_id), remote.managed_account_id
        )
        return remote

    monkeypatch.setattr(UniPostClient, "get_session", get_then_return_view)
    out, _ = reconcile()
    assert status_of(session) == "completed"
    assert len(sent["completed"]) == 1
    assert "1 unchanged" in out


def _dataset(fake: Any, user: Any) -> list[ConnectSession]:
    sessions = []
    for i in range(24):
        # Sessions that never reached UniPost each on their own profile: one start per
        # user and target can be in flight.
        never_started = i % 6 == 5
        session = make_session(
            user, minutes_ago=60 - i, remote=not never_started, profile_id=f"pr_{i}" if never_started else ""
        )
        if i % 6 == 0:
            fake.approve(session.unipost_session_id)
        elif i % 6 == 1:
            fake.deny(session.unipost_session_id)
        sessions.append(session)
    return sessions


@pytest.mark.parametrize("workers", [1, 2, 4, 8])
def test_workers_give_the_same_results(fake, user, monkeypatch, workers):
    closed_in: list[str] = []
    real_close_all = connections.close_all

    def spy_close_all() -> None:
        closed_in.append(threading.current_thread().name)
        real_close_all()

    monkeypatch.setattr(connections, "close_all", spy_close_all)
    sessions = _dataset(fake, user)
    out, _ = reconcile("--batch-size", "5", "--workers", str(workers))
    assert [status_of(s) for s in sessions] == [
        ("completed", "cancelled", "pending", "pending", "pending", "expired")[i % 6] for i in range(24)
    ]
    # LinkedIn reuses one managed account per end user.
    assert ConnectedAccount.objects.filter(user=user).count() == 1
    summary = out.strip().splitlines()[-1].split(" in ")[0]
    assert summary == (
        "Reconciled: 24 checked, 4 completed, 4 expired, 4 cancelled, 12 unchanged, 0 unknown, 0 errors"
    )
    if workers == 1:
        assert closed_in == []  # no worker threads
    else:
        # Every read ran on a worker thread, which closed its database connections after it.
        assert len(closed_in) == 24
        assert all(name.startswith("unipost-reconcile") for name in closed_in)


def test_workers_survive_a_failing_session(fake, user, waits):
    sessions = [make_session(user, minutes_ago=30 - i) for i in range(6)]
    for session in sessions:
        fake.approve(session.unipost_session_id)
    # Reads run in parallel, so turn the client's own retries off to fail exactly one.
    fake.fail_next("get", 500, headers={"X-Request-Id": "req_w"})
    with override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "MAX_RETRIES": 0}):
        out, err = reconcile("--workers", "3")
    assert "request_id=req_w" in err
    assert "5 completed" in out and "1 errors" in out
    assert sorted(status_of(s) for s in sessions) == ["completed"] * 5 + ["pending"]


@pytest.mark.parametrize(
    "args", [("--workers", "0"), ("--batch-size", "0"), ("--limit", "-1"), ("--older-than", "-5")]
)
def test_bad_options_are_refused(args):
    with pytest.raises(CommandError):
        reconcile(*args)


# -- stopping early: what every further call would also hit ---------------------------------


def test_authentication_failure_stops_the_run_and_says_what_to_fix(fake, user, waits):
    sessions = [make_session(user, minutes_ago=20 - i) for i in range(3)]
    for session in sessions:
        fake.approve(session.unipost_session_id)
    fake.requests.clear()
    fake.api_key = "up_test_rotated"  # the site's key no longer works
    out, err, stopped = reconcile_stopped()
    assert len(fake.requests) == 1  # not once more per pending session
    assert stopped.returncode != 0
    assert "UNIPOST_CONNECT['API_KEY']" in str(stopped)
    assert f"session {sessions[0].pk}" in err and "UNAUTHORIZED" in err and "HTTP 401" in err
    # The error stays on the row it happened to; the summary is printed as usual.
    sessions[0].refresh_from_db()
    assert sessions[0].error_code == "UNAUTHORIZED"
    assert [status_of(s) for s in sessions] == ["pending"] * 3
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(
        "Reconciled: 1 checked, 0 completed, 0 expired, 0 cancelled, 0 unchanged, 0 unknown, 1 errors in "
    )


def test_authentication_failure_stops_the_workers_too(fake, user, waits):
    sessions = [make_session(user, minutes_ago=30 - i) for i in range(12)]
    fake.requests.clear()
    fake.api_key = "up_test_rotated"
    out, _, stopped = reconcile_stopped("--workers", "3")
    assert "UNIPOST_CONNECT['API_KEY']" in str(stopped)
    assert "1 errors" in out
    # At most the reads already in flight went out, not one per session.
    assert len(fake.requests) <= 3 * engine.WINDOW_PER_WORKER
    assert [status_of(s) for s in sessions] == ["pending"] * 12


def test_plain_404_from_a_wrong_base_url_is_not_an_unknown_session(fake, user, sent):
    session = make_session(user, minutes_ago=40)
    overdue = timezone.now() - timedelta(minutes=5)
    ConnectSession.objects.filter(pk=session.pk).update(expires_at=overdue)
    others = [make_session(user, minutes_ago=35), make_session(user, minutes_ago=30)]
    # The live router's answer for a route it does not have (API_BASE_URL points elsewhere).
    fake.fail_next(
        "get", 404, body="404 page not found", headers={"Content-Type": "text/plain", "X-Request-Id": "req_r"}
    )
    out, err, stopped = reconcile_stopped()
    session.refresh_from_db()
    # A JSON NOT_FOUND would expire this overdue session; a wrong endpoint says nothing about it.
    assert session.status == "pending"
    assert session.expires_at == overdue
    assert (session.error_code, session.request_id) == ("ENDPOINT_NOT_FOUND", "req_r")
    assert sent == {"completed": [], "ended": []}
    assert "ENDPOINT_NOT_FOUND" in err and "HTTP 404" in err
    assert "UNIPOST_CONNECT['API_BASE_URL']" in str(stopped)
    assert stopped.returncode != 0
    assert [status_of(s) for s in others] == ["pending", "pending"]
    assert "1 checked" in out and "1 errors" in out


def test_an_error_on_one_session_does_not_make_the_exit_code_non_zero(fake, user, waits):
    make_session(user)
    fake.fail_next("get", 500, times=3)
    out, err = reconcile()  # no CommandError: the run went to the end
    assert "1 errors" in out and "INTERNAL_ERROR" in err


def test_sync_accounts_stops_at_an_authentication_failure(fake, user, django_user_model):
    for n, name in enumerate(("a", "b", "c")):
        owner = django_user_model.objects.create_user(name)
        ConnectedAccount.objects.create(
            user=owner, platform="linkedin", managed_account_id=f"sa_{n}", external_user_id=str(owner.pk)
        )
    fake.requests.clear()
    fake.api_key = "up_test_rotated"
    _, err, stopped = reconcile_stopped("--sync-accounts")
    assert [method for method, _ in fake.requests] == ["GET"]
    assert "UNAUTHORIZED" in err
    assert "UNIPOST_CONNECT['API_KEY']" in str(stopped)


def test_ctrl_c_prints_the_summary_and_exits_130(fake, user, monkeypatch):
    sessions = [make_session(user, minutes_ago=30 - i) for i in range(4)]
    for session in sessions:
        fake.approve(session.unipost_session_id)
    real_get = UniPostClient.get_session
    calls = []

    def get_then_ctrl_c(self: Any, session_id: str, **kwargs: Any) -> Any:
        calls.append(session_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_get(self, session_id, **kwargs)

    monkeypatch.setattr(UniPostClient, "get_session", get_then_ctrl_c)
    out, err, stopped = reconcile_stopped()
    assert stopped.returncode == 130
    assert "nterrupted" in str(stopped)
    assert [status_of(s) for s in sessions] == ["completed", "completed", "pending", "pending"]
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(
        "Reconciled: 2 checked, 2 completed, 0 expired, 0 cancelled, 0 unchanged, 0 unknown, 0 errors in "
    )
    assert "Traceback" not in err
