"""Retention: ``unipost_connect_prune`` and :mod:`unipost_connect.retention`.

What goes (processed webhook events received, and finished sessions last changed, before
the cutoff) and what always stays (pending sessions, events not yet applied, accounts);
batches; the dry run; ``RETENTION_DAYS`` None and its refusals; the command's output.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from unipost_connect import retention, sessions, tasks
from unipost_connect.conf import SettingError, app_settings
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent

pytestmark = pytest.mark.django_db

NOW = timezone.now()
OLD = NOW - timedelta(days=91)
YOUNG = NOW - timedelta(days=89)
_serial = itertools.count()

Status = ConnectSession.Status
Result = WebhookEvent.Result


def configured(**values: Any) -> override_settings:
    return override_settings(UNIPOST_CONNECT={"API_KEY": "up_test_key", **values})


def session(user: Any, status: str, *, updated: datetime, created: datetime | None = None) -> ConnectSession:
    row = ConnectSession.objects.create(
        user=user,
        platform="linkedin",
        external_user_id=str(user.pk),
        unipost_session_id=f"cs_{next(_serial)}",
        status=status,
    )
    # updated_at is auto_now: a save would overwrite it, an update does not.
    ConnectSession.objects.filter(pk=row.pk).update(created_at=created or updated, updated_at=updated)
    return row


def event(result: str, *, received: datetime) -> WebhookEvent:
    return WebhookEvent.objects.create(
        event_key=f"evt_{next(_serial)}",
        event_type="account.connected",
        payload={"event": "account.connected", "data": {}},
        result=result,
        received_at=received,
    )


def check_ids(**values: Any) -> list[str]:
    with configured(WEBHOOK_SECRET="whsec_x", **values):
        return [
            m.id for m in run_checks(tags=[Tags.compatibility]) if (m.id or "").startswith("unipost_connect.")
        ]


def pks(model: Any) -> set[Any]:
    return set(model.objects.values_list("pk", flat=True))


def prune(days: int | None = 90, **kwargs: Any) -> dict[str, int]:
    counts = dict.fromkeys(retention.KINDS, 0)
    for batch in retention.prune(days, now=NOW, **kwargs):
        counts[batch.kind] += batch.count
    return counts


def run(*args: str) -> str:
    out = StringIO()
    call_command("unipost_connect_prune", *args, stdout=out)
    return out.getvalue()


# -- what goes and what stays -------------------------------------------------------------


def test_every_status_and_result_is_classified():
    # A status or result added later must be decided on here, not pruned by default.
    assert set(retention.FINISHED_STATUSES) == set(Status.values) - {Status.PENDING}
    assert set(retention.PROCESSED_RESULTS) == set(Result.values) - {Result.RECEIVED, Result.FAILED}


@pytest.mark.parametrize("status", retention.FINISHED_STATUSES)
def test_a_finished_session_older_than_the_retention_goes(user, status):
    old = session(user, status, updated=OLD)
    young = session(user, status, updated=YOUNG)
    assert prune() == {retention.EVENTS: 0, retention.SESSIONS: 1}
    assert pks(ConnectSession) == {young.pk}
    assert old.pk not in pks(ConnectSession)


def test_a_pending_session_is_never_deleted(user):
    stale = session(user, Status.PENDING, updated=NOW - timedelta(days=3650))
    assert prune(1) == {retention.EVENTS: 0, retention.SESSIONS: 0}
    assert pks(ConnectSession) == {stale.pk}


def test_a_session_is_judged_by_when_it_finished_not_when_it_started(user):
    # Started a year ago, finished (updated) yesterday: kept for another RETENTION_DAYS.
    late = session(user, Status.COMPLETED, created=NOW - timedelta(days=365), updated=NOW - timedelta(days=1))
    assert prune() == {retention.EVENTS: 0, retention.SESSIONS: 0}
    assert pks(ConnectSession) == {late.pk}


def test_finishing_a_session_restarts_its_retention(user):
    # The rule rests on the flow writing updated_at when a session finishes.
    long_pending = session(user, Status.PENDING, updated=NOW - timedelta(days=365))
    assert sessions.end_session(long_pending, Status.CANCELLED)
    assert list(retention.prune(90)) == []
    assert pks(ConnectSession) == {long_pending.pk}


def test_the_cutoff_is_exclusive(user):
    at = session(user, Status.EXPIRED, updated=NOW - timedelta(days=90))
    just_before = session(user, Status.EXPIRED, updated=NOW - timedelta(days=90, microseconds=1))
    prune()
    assert pks(ConnectSession) == {at.pk}
    assert just_before.pk not in pks(ConnectSession)


@pytest.mark.parametrize("result", retention.PROCESSED_RESULTS)
def test_a_processed_event_received_before_the_cutoff_goes(result):
    event(result, received=OLD)
    young = event(result, received=YOUNG)
    assert prune() == {retention.EVENTS: 1, retention.SESSIONS: 0}
    assert pks(WebhookEvent) == {young.pk}


@pytest.mark.parametrize("result", [Result.RECEIVED, Result.FAILED])
def test_an_event_not_yet_applied_is_kept_however_old(result):
    waiting = event(result, received=NOW - timedelta(days=3650))
    assert prune(1) == {retention.EVENTS: 0, retention.SESSIONS: 0}
    assert pks(WebhookEvent) == {waiting.pk}


def test_accounts_are_never_deleted(user):
    ancient = NOW - timedelta(days=3650)
    accounts = [
        ConnectedAccount.objects.create(
            user=user, managed_account_id=f"ma_{status}", platform="linkedin", status=status
        )
        for status in ConnectedAccount.Status.values
    ]
    ConnectedAccount.objects.update(
        connected_at=ancient, disconnected_at=ancient, created_at=ancient, updated_at=ancient
    )
    session(user, Status.COMPLETED, updated=ancient)  # its session goes, its account stays
    assert prune(1)[retention.SESSIONS] == 1
    assert pks(ConnectedAccount) == {a.pk for a in accounts}


def test_a_row_changed_after_it_was_read_is_kept(user, monkeypatch):
    # Between the read of a batch and its delete, a replay took an event up again and a
    # session was touched: the delete repeats the conditions, so both stay.
    taken_up = event(Result.APPLIED, received=OLD)
    touched = session(user, Status.FAILED, updated=OLD)
    gone = session(user, Status.FAILED, updated=OLD)
    read = retention._pk_batches

    def read_then_change(rows: Any, time_field: str, batch_size: int) -> Any:
        for batch in read(rows, time_field, batch_size):
            WebhookEvent.objects.filter(pk=taken_up.pk).update(result=Result.RECEIVED)
            ConnectSession.objects.filter(pk=touched.pk).update(updated_at=NOW)
            yield batch

    monkeypatch.setattr(retention, "_pk_batches", read_then_change)
    assert prune() == {retention.EVENTS: 0, retention.SESSIONS: 1}
    assert pks(WebhookEvent) == {taken_up.pk}
    assert pks(ConnectSession) == {touched.pk}
    assert gone.pk not in pks(ConnectSession)


# -- batches ---------------------------------------------------------------------------


def test_rows_go_in_batches_of_the_size_given(user):
    for _ in range(7):
        session(user, Status.COMPLETED, updated=OLD)
        event(Result.APPLIED, received=OLD)
    kept = session(user, Status.PENDING, updated=OLD)
    batches = list(retention.prune(90, batch_size=3, now=NOW))
    assert [(b.kind, b.count) for b in batches] == [
        (retention.EVENTS, 3),
        (retention.EVENTS, 3),
        (retention.EVENTS, 1),
        (retention.SESSIONS, 3),
        (retention.SESSIONS, 3),
        (retention.SESSIONS, 1),
    ]
    assert pks(ConnectSession) == {kept.pk}
    assert not WebhookEvent.objects.exists()


def test_each_read_is_limited_to_one_batch(user):
    # Flat memory: no statement reads more than a batch, whatever the table holds.
    for _ in range(5):
        session(user, Status.EXPIRED, updated=OLD)
        event(Result.IGNORED, received=OLD)
    with CaptureQueriesContext(connection) as queries:
        list(retention.prune(90, batch_size=2, now=NOW))
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert reads and all(sql.endswith("LIMIT 2") for sql in reads)
    # 3 batches of each kind (2, 2, 1): the short last one ends the paging without another read.
    assert len(reads) == 6


def test_rows_sharing_a_time_are_split_by_key_none_skipped_none_twice(user):
    rows = {session(user, Status.CANCELLED, updated=OLD).pk for _ in range(9)}
    for _ in range(9):
        event(Result.UNKNOWN_USER, received=OLD)
    seen = [
        pk for batch in retention._pk_batches(retention.old_sessions(NOW), "updated_at", 2) for pk in batch
    ]
    assert sorted(seen) == sorted(rows)  # a dry run pages without deleting: no repeats
    assert prune(batch_size=2) == {retention.EVENTS: 9, retention.SESSIONS: 9}
    assert not ConnectSession.objects.exists() and not WebhookEvent.objects.exists()


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        list(retention.prune(90, batch_size=0))


# -- dry run, None ---------------------------------------------------------------------------


def test_a_dry_run_counts_the_same_rows_and_deletes_nothing(user):
    for status in retention.FINISHED_STATUSES:
        session(user, status, updated=OLD)
    session(user, Status.PENDING, updated=OLD)
    for result in Result.values:
        event(result, received=OLD)
    before = (pks(ConnectSession), pks(WebhookEvent))
    dry = prune(dry_run=True, batch_size=2)
    assert (pks(ConnectSession), pks(WebhookEvent)) == before
    assert dry == {retention.EVENTS: 4, retention.SESSIONS: 4}
    assert prune(batch_size=2) == dry


def test_none_keeps_everything(user):
    session(user, Status.COMPLETED, updated=NOW - timedelta(days=3650))
    event(Result.APPLIED, received=NOW - timedelta(days=3650))
    with CaptureQueriesContext(connection) as queries:
        assert list(retention.prune(None)) == []
    assert not queries.captured_queries  # nothing is even read
    with configured(RETENTION_DAYS=None):
        assert app_settings.RETENTION_DAYS is None
        out = run()
    assert out == "RETENTION_DAYS is None: every webhook event and session is kept; nothing pruned.\n"
    assert ConnectSession.objects.count() == 1 and WebhookEvent.objects.count() == 1


# -- settings --------------------------------------------------------------------------------


def test_the_default_is_90_days():
    with configured():
        assert app_settings.RETENTION_DAYS == 90
    with configured(RETENTION_DAYS=1):
        assert app_settings.RETENTION_DAYS == 1


@pytest.mark.parametrize("value", [0, -5, "90", 1.5, 90.0, True, [90]])
def test_an_unusable_retention_is_refused_naming_the_key(value):
    with configured(RETENTION_DAYS=value):
        with pytest.raises(SettingError) as caught:
            app_settings.RETENTION_DAYS  # noqa: B018
        assert caught.value.key == "RETENTION_DAYS"
        assert str(caught.value).startswith(
            "UNIPOST_CONNECT['RETENTION_DAYS'] must be a whole number of days"
        )
        assert "None to keep everything" in caught.value.fix
        # The command says the same, without a traceback; the check reports it as E009.
        with pytest.raises(CommandError, match=r"UNIPOST_CONNECT\['RETENTION_DAYS'\] must be"):
            run()
        with pytest.raises(SettingError, match="RETENTION_DAYS"):
            tasks.prune.call()
    assert check_ids(RETENTION_DAYS=value) == ["unipost_connect.E009"]


@pytest.mark.parametrize("value", [None, 1, 90, 3650])
def test_a_usable_retention_passes_the_checks(value):
    assert check_ids(API_KEY="up_live_x", RETENTION_DAYS=value) == []


# -- the command and the task -------------------------------------------------------------------


def seed(user: Any) -> None:
    now = timezone.now()
    for _ in range(3):
        session(user, Status.COMPLETED, updated=now - timedelta(days=100))
        event(Result.APPLIED, received=now - timedelta(days=100))
    session(user, Status.PENDING, updated=now - timedelta(days=100))
    event(Result.FAILED, received=now - timedelta(days=100))
    session(user, Status.COMPLETED, updated=now - timedelta(days=1))


def test_the_command_deletes_and_says_what_and_before_when(user):
    seed(user)
    out = run()
    (line,) = out.splitlines()
    assert line.startswith("Deleted 3 webhook events received and 3 finished sessions last changed before ")
    assert line.endswith(
        " (RETENTION_DAYS=90); pending sessions, events not yet applied and accounts are kept."
    )
    stamp = line.split(" before ")[1].split(" (")[0]
    assert abs(datetime.fromisoformat(stamp) - (timezone.now() - timedelta(days=90))) < timedelta(minutes=1)
    assert ConnectSession.objects.count() == 2 and WebhookEvent.objects.count() == 1
    assert run().startswith("Deleted 0 webhook events received and 0 finished sessions")


def test_the_command_dry_run_says_what_would_go_and_changes_nothing(user):
    seed(user)
    out = run("--dry-run", "--batch-size", "2")
    assert out.startswith("[dry run] Would delete 3 webhook events received and 3 finished sessions ")
    assert ConnectSession.objects.count() == 5 and WebhookEvent.objects.count() == 4


def test_the_command_reports_each_batch_when_verbose(user):
    seed(user)
    lines = run("--batch-size", "2", "-v", "2").splitlines()
    assert lines[:4] == [
        "... deleted 2 webhook events (2 so far)",
        "... deleted 1 webhook events (3 so far)",
        "... deleted 2 sessions (2 so far)",
        "... deleted 1 sessions (3 so far)",
    ]
    assert lines[4].startswith("Deleted 3 webhook events")


def test_the_command_follows_the_setting(user):
    seed(user)
    with configured(RETENTION_DAYS=365):
        assert "Deleted 0 webhook events received and 0 finished sessions" in run()
        assert "(RETENTION_DAYS=365)" in run()


def test_the_command_refuses_a_batch_size_below_one():
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        run("--batch-size", "0")


def test_the_command_reports_what_went_when_interrupted(user, monkeypatch):
    seed(user)

    def interrupted(days: Any, **kwargs: Any) -> Any:
        yield retention.Batch(retention.EVENTS, 3)
        raise KeyboardInterrupt

    monkeypatch.setattr(retention, "prune", interrupted)
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("unipost_connect_prune", stdout=out)
    assert caught.value.returncode == 130
    assert out.getvalue().startswith("Deleted 3 webhook events received and 0 finished sessions")


def test_the_prune_task_does_what_the_command_does(user):
    seed(user)
    result = tasks.prune.enqueue()  # the ImmediateBackend: runs here, now
    assert result.return_value == {retention.EVENTS: 3, retention.SESSIONS: 3}
    assert ConnectSession.objects.count() == 2 and WebhookEvent.objects.count() == 1
