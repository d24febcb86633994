"""Work on Django's task framework: webhooks stored and applied by a task, replays, the
admin's "Process again", and reconcile fanned out as one task per session.

A worker backend is stood in for by the framework's DummyBackend, which keeps what is
enqueued without running it; the tests then run the tasks themselves, as a worker would.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

from tests.helpers import URL, SignalLog, go_back, start
from unipost_connect import services, tasks
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db

# The DummyBackend beside the ImmediateBackend of whichever framework is in use.
DUMMY = tasks.ImmediateBackend.__module__.replace("immediate", "dummy") + ".DummyBackend"
WORKERS = {"default": {"BACKEND": DUMMY}}


@pytest.fixture
def worker_backend(settings: Any) -> Iterator[Any]:
    """Tasks are kept for a worker instead of running in the request."""
    with override_settings(TASKS=WORKERS):
        backend = tasks.backend()
        backend.clear()
        yield backend


def enqueued(backend: Any, job: Any) -> list[tuple[Any, ...]]:
    return [tuple(r.args) for r in backend.results if r.task.func is job.func]


def run_enqueued(backend: Any, job: Any, django_capture_on_commit_callbacks: Any) -> list[Any]:
    """Run what a worker would, in order, with each task's commit callbacks."""
    results = []
    for args in enqueued(backend, job):
        with django_capture_on_commit_callbacks(execute=True):
            results.append(job.call(*args))
    return results


def deliver(delivery: Any, capture: Any) -> Any:
    with capture(execute=True):
        return Client().post(URL, **delivery.django_client_kwargs())


# -- the webhook on a worker backend -----------------------------------------------------


def test_with_a_worker_backend_the_webhook_stores_and_enqueues_but_applies_nothing(
    fake: FakeUniPost,
    user: Any,
    worker_backend: Any,
    sent: SignalLog,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    calls_before = len(fake.requests)
    answer = deliver(fake.outbox[-1], django_capture_on_commit_callbacks)
    assert answer.json() == {"received": True, "duplicate": False, "result": "received"}
    assert len(fake.requests) == calls_before  # no call to UniPost in the request
    session.refresh_from_db()
    assert session.status == "pending"
    assert ConnectedAccount.objects.count() == 0
    assert sent.calls == []
    (event,) = WebhookEvent.objects.all()
    assert enqueued(worker_backend, tasks.process_webhook_event) == [(event.pk,)]


def test_with_a_worker_backend_a_delivery_is_stored_in_one_statement(
    fake: FakeUniPost,
    user: Any,
    worker_backend: Any,
    django_capture_on_commit_callbacks: Any,
    django_assert_num_queries: Any,
) -> None:
    """The receiver's cost on a worker backend: the event's INSERT (no transaction, no
    savepoint); a repeat of it reads the stored row instead."""
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    with django_assert_num_queries(1) as first:
        deliver(fake.outbox[-1], django_capture_on_commit_callbacks)
    assert "ON CONFLICT DO NOTHING" in first.captured_queries[0]["sql"]
    with django_assert_num_queries(2):
        answer = deliver(fake.outbox[-1], django_capture_on_commit_callbacks)
    assert answer.json()["duplicate"] is True
    assert WebhookEvent.objects.count() == 1
    assert len(enqueued(worker_backend, tasks.process_webhook_event)) == 1


def test_the_task_applies_the_stored_event_once(
    fake: FakeUniPost,
    user: Any,
    worker_backend: Any,
    sent: SignalLog,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    deliver(fake.outbox[-1], django_capture_on_commit_callbacks)
    deliver(fake.outbox[-1], django_capture_on_commit_callbacks)  # UniPost's retry: a duplicate
    (event,) = WebhookEvent.objects.all()
    assert run_enqueued(worker_backend, tasks.process_webhook_event, django_capture_on_commit_callbacks) == [
        "applied"
    ]
    # Run again (a retry, a replay, a second worker): nothing more happens.
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.process_webhook_event.call(event.pk) == ""
    session.refresh_from_db()
    assert session.status == "completed"
    assert len(sent.named("connect_session_completed")) == 1
    event.refresh_from_db()
    assert event.result == "applied" and event.processed_at is not None


def test_a_failing_task_marks_the_event_failed_for_a_replay(
    fake: FakeUniPost,
    user: Any,
    worker_backend: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    deliver(fake.outbox[-1], django_capture_on_commit_callbacks)
    (event,) = WebhookEvent.objects.all()

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr("unipost_connect.sessions.upsert_account", broken)
    with pytest.raises(RuntimeError):
        tasks.process_webhook_event.call(event.pk)
    event.refresh_from_db()
    assert (event.result, event.detail) == ("failed", "RuntimeError: database went away")
    session.refresh_from_db()
    assert session.status == "pending"  # rolled back: nothing half-applied
    monkeypatch.undo()
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("unipost_connect_process_webhooks", stdout=out)
    assert "1 applied" in out.getvalue()
    session.refresh_from_db()
    assert session.status == "completed"


# -- replay ----------------------------------------------------------------------------------


def stored(fake: FakeUniPost, user: Any, capture: Any) -> list[WebhookEvent]:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    with capture(execute=True):
        services.store_webhook_payload(fake.outbox[-1].payload, raw_body=fake.outbox[-1].body)
    return list(WebhookEvent.objects.all())


def test_process_webhooks_applies_what_is_still_received_once(
    fake: FakeUniPost, user: Any, sent: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    (event,) = stored(fake, user, django_capture_on_commit_callbacks)
    assert event.result == "received"
    for expected in ("1 applied", "nothing to do"):
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("unipost_connect_process_webhooks", stdout=out)
        assert expected in out.getvalue()
    assert len(sent.named("connect_session_completed")) == 1


def test_process_webhooks_older_than_leaves_fresh_events_to_the_workers(
    fake: FakeUniPost, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    (event,) = stored(fake, user, django_capture_on_commit_callbacks)
    out = StringIO()
    call_command("unipost_connect_process_webhooks", "--older-than", "5", stdout=out)
    assert "nothing to do" in out.getvalue()
    event.refresh_from_db()
    assert event.result == "received"


def test_process_webhooks_refuses_a_negative_age() -> None:
    with pytest.raises(CommandError, match="--older-than"):
        call_command("unipost_connect_process_webhooks", "--older-than", "-1")


def test_the_admin_processes_received_events_again(
    fake: FakeUniPost, user: Any, admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    (event,) = stored(fake, user, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(
            "/admin/unipost_connect/webhookevent/",
            {"action": "process_again", "_selected_action": [str(event.pk)]},
            follow=True,
        )
    assert answer.status_code == 200
    assert "1 event handed to processing." in answer.content.decode()
    event.refresh_from_db()
    assert event.result == "applied"


# -- reconcile on workers ------------------------------------------------------------------


def test_reconcile_enqueue_makes_one_task_per_due_session(
    fake: FakeUniPost, django_user_model: Any, worker_backend: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sessions = [start(django_user_model.objects.create_user(f"u{i}")) for i in range(5)]
    for session in sessions[:3]:
        fake.approve(session.unipost_session_id or "")
    out = StringIO()
    call_command(
        "unipost_connect_reconcile", "--older-than", "0", "--enqueue", "--batch-size", "2", stdout=out
    )
    assert "Enqueued 5 sessions to reconcile." in out.getvalue()
    assert sorted(enqueued(worker_backend, tasks.reconcile_session)) == sorted((str(s.pk),) for s in sessions)
    statuses = run_enqueued(worker_backend, tasks.reconcile_session, django_capture_on_commit_callbacks)
    assert sorted(statuses) == ["completed"] * 3 + ["pending"] * 2
    assert ConnectSession.objects.filter(status="completed").count() == 3
    # A task that runs twice, or after the session was settled, changes nothing.
    assert tasks.reconcile_session.call(str(sessions[0].pk)) == "completed"
    assert tasks.reconcile_session.call("00000000-0000-0000-0000-000000000000") == ""


def test_reconcile_enqueue_refuses_a_dry_run() -> None:
    with pytest.raises(CommandError, match="--enqueue"):
        call_command("unipost_connect_reconcile", "--enqueue", "--dry-run")


def test_with_the_immediate_backend_enqueued_work_runs_at_once(fake: FakeUniPost, user: Any) -> None:
    assert tasks.runs_inline()
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    call_command("unipost_connect_reconcile", "--older-than", "0", "--enqueue", stdout=StringIO())
    session.refresh_from_db()
    assert session.status == "completed"


def test_reconcile_enqueue_sync_accounts_makes_one_task_per_account_owner(
    fake: FakeUniPost, django_user_model: Any, worker_backend: Any, django_capture_on_commit_callbacks: Any
) -> None:
    users = [django_user_model.objects.create_user(f"owner{i}") for i in range(3)]
    for user in users:
        session = start(user)
        fake.approve(session.unipost_session_id or "")
        with django_capture_on_commit_callbacks(execute=True):
            services.reconcile_session(session)
    worker_backend.clear()
    first = ConnectedAccount.objects.get(user=users[0])
    fake.accounts[first.managed_account_id].status = "reconnect_required"
    out = StringIO()
    call_command("unipost_connect_reconcile", "--enqueue", "--sync-accounts", stdout=out)
    assert "Enqueued account syncs for 3 users." in out.getvalue()
    assert sorted(enqueued(worker_backend, tasks.sync_account_statuses)) == sorted(
        (str(user.pk),) for user in users
    )
    # One row changed per owner: each account gets its name, the first also its status.
    synced = run_enqueued(worker_backend, tasks.sync_account_statuses, django_capture_on_commit_callbacks)
    assert synced == [1, 1, 1]
    assert ConnectedAccount.objects.filter(account_name="").count() == 0
    first.refresh_from_db()
    assert first.status == ConnectedAccount.Status.RECONNECT_REQUIRED


def test_on_a_worker_backend_a_task_names_the_account_a_return_completed(
    fake: FakeUniPost, user: Any, worker_backend: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The session's answer carries no account name; the account list does."""
    session = start(user)
    fake.approve(session.unipost_session_id or "", account_name="Ada's page")
    with django_capture_on_commit_callbacks(execute=True):
        services.reconcile_session(session, name_account=True)
    account = ConnectedAccount.objects.get(user=user)
    assert account.account_name == ""
    # Not "quick": nobody waits on a worker.
    assert enqueued(worker_backend, tasks.sync_account_statuses) == [
        (session.external_user_id, "linkedin", False)
    ]
    synced = run_enqueued(worker_backend, tasks.sync_account_statuses, django_capture_on_commit_callbacks)
    assert synced == [1]
    account.refresh_from_db()
    assert account.account_name == "Ada's page"


def test_with_the_immediate_backend_the_return_names_the_account_at_once(
    fake: FakeUniPost, user: Any, user_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    session = start(user)
    back = fake.approve(session.unipost_session_id or "", account_name="Ada's page")
    calls_before = len(fake.requests)
    go_back(user_client, back, django_capture_on_commit_callbacks)
    assert fake.requests[calls_before:] == [
        ("GET", f"/v1/connect/sessions/{session.unipost_session_id}"),
        ("GET", "/v1/accounts"),
    ]
    assert ConnectedAccount.objects.get(user=user).account_name == "Ada's page"


def test_the_reconcile_command_makes_no_extra_call_for_names(
    fake: FakeUniPost, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """At scale the webhook names the accounts: reconciling reads sessions only."""
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    calls_before = len(fake.requests)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("unipost_connect_reconcile", "--older-than", "0", stdout=StringIO())
    assert [method_path[1] for method_path in fake.requests[calls_before:]] == [
        f"/v1/connect/sessions/{session.unipost_session_id}"
    ]


def test_a_failing_name_read_does_not_spoil_the_return(
    fake: FakeUniPost, user: Any, user_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    session = start(user)
    back = fake.approve(session.unipost_session_id or "")
    fake.fail_next("accounts", 500)
    calls_before = len(fake.requests)
    answer = go_back(user_client, back, django_capture_on_commit_callbacks)
    # One short attempt, no retries: the user is waiting, and the webhook names it anyway.
    assert [path for _, path in fake.requests[calls_before:]].count("/v1/accounts") == 1
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.status == "completed"
    assert ConnectedAccount.objects.get(user=user).account_name == ""  # the webhook will name it


def test_a_queue_that_refuses_the_task_is_no_500(
    fake: FakeUniPost,
    user: Any,
    worker_backend: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A broker down after the commit: the user's return and UniPost's delivery still get
    their answers; the event stays received for the replay command."""
    session = start(user)
    back = fake.approve(session.unipost_session_id or "")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(worker_backend, "enqueue", refuse)
    browser = Client()
    browser.force_login(user)
    parts = urlsplit(back or "")
    with django_capture_on_commit_callbacks(execute=True) as ran:
        assert browser.get(f"{parts.path}?{parts.query}").status_code == 302  # the name task refused
    assert ran  # the enqueue was tried
    session.refresh_from_db()
    assert session.status == "completed"
    answer = deliver(fake.outbox[-1], django_capture_on_commit_callbacks)
    assert answer.status_code == 200
    (event,) = WebhookEvent.objects.all()
    assert event.result == "received"
    assert "the broker is down" in caplog.text
