"""Work the app hands to Django's task framework, so it can run off the request and
spread over as many workers as a site runs.

The site chooses the engine in ``TASKS`` and names it with ``UNIPOST_CONNECT
['TASK_BACKEND']`` (and the queue with ``TASK_QUEUE``). With Django's default
``ImmediateBackend`` a task runs at once, in the process that enqueued it; with a worker
backend (django-tasks-db's ``db_worker``, RQ, Celery) a worker picks it up.

Only ids cross into a task, and every task may run twice (a retry, a replay, two workers
at once): each does its work through the flow's exactly-once updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction

from .conf import app_settings

# Django's own framework from 6.0; the django-tasks backport on 5.2. Chosen here only.
if TYPE_CHECKING:
    from django_tasks import task, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.backends.immediate import ImmediateBackend
    from django_tasks.base import Task
else:
    try:
        from django.tasks import Task, task, task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.backends.immediate import ImmediateBackend
    except ImportError:  # Django 5.2
        from django_tasks import task, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.backends.immediate import ImmediateBackend
        from django_tasks.base import Task


@task()
def process_webhook_event(event_id: int) -> str:
    """Apply one stored webhook event that is still ``received`` (or ``failed``), once.

    Returns the event's result, or "" when another worker has it or it was done.
    """
    from .webhooks.store import process_stored_event

    return process_stored_event(event_id)


@task()
def reconcile_session(session_id: str) -> str:
    """Ask UniPost about one pending session and apply the answer; its status after."""
    from .reconcile import reconcile_one

    return reconcile_one(session_id)


@task()
def sync_account_statuses(external_user_id: str, platform: str = "", quick: bool = False) -> int:
    """Copy one owner's account statuses (and missing names) from UniPost, on one platform
    or all; rows changed. ``quick``: one short attempt (a user may be waiting)."""
    from .accounts import sync_account_statuses as sync

    return sync(external_user_id, platform=platform or None, quick=quick)


@task()
def prune() -> dict[str, int]:
    """Delete what ``RETENTION_DAYS`` no longer keeps (as ``unipost_connect_prune`` does);
    how many rows of each kind went. For a scheduler that enqueues tasks instead of cron."""
    from .retention import prune_configured

    return prune_configured()


def backend() -> BaseTaskBackend:
    """The task backend the app enqueues on (``TASK_BACKEND``, an alias of ``TASKS``)."""
    return task_backends[app_settings.TASK_BACKEND]


def backend_aliases() -> list[str]:
    """The aliases ``settings.TASKS`` defines (the framework's default when it is unset)."""
    return list(task_backends.settings)


def runs_inline() -> bool:
    """True when enqueued work runs at once in this process (Django's ImmediateBackend)."""
    return isinstance(backend(), ImmediateBackend)


def enqueue(job: Task[Any, Any], *args: Any) -> None:
    """Enqueue ``job(*args)`` on the configured backend and queue."""
    job.using(backend=app_settings.TASK_BACKEND, queue_name=app_settings.TASK_QUEUE).enqueue(*args)


def enqueue_on_commit(job: Task[Any, Any], *args: Any) -> None:
    """Enqueue once the current transaction commits, so a worker finds what it is for.

    ``robust``: a queue that cannot take it (a broker down) is logged by Django, never
    turned into a 500 for the request that committed. What it was for stays findable:
    a stored event stays ``received`` for the replay command, a session ``pending`` for
    the reconcile command, a missing name for the webhook or the next sync.
    """

    def enqueue_committed() -> None:  # a function: Django logs a robust failure by its name
        enqueue(job, *args)

    transaction.on_commit(enqueue_committed, robust=True)
