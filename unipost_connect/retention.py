"""Retention: delete stored webhook events and finished sessions older than ``RETENTION_DAYS``.

The engine behind ``manage.py unipost_connect_prune`` and the ``prune`` task; it prints
nothing and parses nothing, it yields each batch for its caller to report.

What goes, and what never does:

- a webhook event whose processing is over (``applied``, ``unknown_user``, ``ignored``,
  ``conflict``) and that was *received* before the cutoff. One still ``received`` or
  ``failed`` is work not yet done (a worker or a replay will apply it): it is kept however
  old it is.
- a *finished* session (``completed``, ``expired``, ``cancelled``, ``failed``) last
  changed (``updated_at``) before the cutoff. Every change of status writes
  ``updated_at``, so for a finished session it is when it finished (or later): one that
  started long ago but finished yesterday is kept. A ``pending`` session is never deleted
  (reconcile expires it first).
- never a :class:`~unipost_connect.models.ConnectedAccount`: it is the site's record of
  what UniPost holds, however old.

Rows are read in keyset batches on ``(time, pk)`` and deleted by primary key, one batch
per statement (and per transaction), so memory is flat, locks are short, and a run can
be stopped at any point. The delete repeats the conditions, so a row that changed since it
was read (an event taken up for a replay) is kept; two runs at once delete each row once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .conf import app_settings
from .models import ConnectSession, WebhookEvent

# Explicit lists, not "everything but ...": a status or result added later is kept until
# someone decides it is final (tests check every value is classified).
FINISHED_STATUSES: tuple[str, ...] = (
    ConnectSession.Status.COMPLETED,
    ConnectSession.Status.EXPIRED,
    ConnectSession.Status.CANCELLED,
    ConnectSession.Status.FAILED,
)
PROCESSED_RESULTS: tuple[str, ...] = (
    WebhookEvent.Result.APPLIED,
    WebhookEvent.Result.UNKNOWN_USER,
    WebhookEvent.Result.IGNORED,
    WebhookEvent.Result.CONFLICT,
)

DEFAULT_BATCH_SIZE = 1000

EVENTS = "webhook events"
SESSIONS = "sessions"
KINDS = (EVENTS, SESSIONS)

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class Batch:
    """One batch of rows of one kind (:data:`EVENTS` or :data:`SESSIONS`) deleted, or
    that a dry run would delete."""

    kind: str
    count: int


def cutoff(days: int, *, now: datetime | None = None) -> datetime:
    """The instant before which rows are old enough to go."""
    return (now or timezone.now()) - timedelta(days=days)


def old_events(before: datetime) -> models.QuerySet[WebhookEvent]:
    """Webhook events done with and received before ``before``."""
    return WebhookEvent.objects.filter(result__in=PROCESSED_RESULTS, received_at__lt=before)


def old_sessions(before: datetime) -> models.QuerySet[ConnectSession]:
    """Finished sessions last changed before ``before`` (read on the ``(updated_at, id)``
    index, migration 0004)."""
    return ConnectSession.objects.filter(status__in=FINISHED_STATUSES, updated_at__lt=before)


def prune(
    days: int | None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Iterator[Batch]:
    """Delete old webhook events, then old finished sessions, a batch at a time.

    ``days`` is ``RETENTION_DAYS`` (None keeps everything: nothing is read or deleted).
    Yields each batch once it is deleted; a dry run reads the same batches and deletes
    nothing. Stopping the iteration stops the run; what was deleted stays deleted.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if days is None:
        return
    before = cutoff(days, now=now)
    yield from _prune(EVENTS, old_events(before), "received_at", batch_size, dry_run)
    yield from _prune(SESSIONS, old_sessions(before), "updated_at", batch_size, dry_run)


def prune_configured(*, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False) -> dict[str, int]:
    """:func:`prune` with ``RETENTION_DAYS``, to the end; how many rows of each kind went.

    Raises :class:`~unipost_connect.conf.SettingError` for a value it cannot use.
    """
    counts = dict.fromkeys(KINDS, 0)
    for batch in prune(app_settings.RETENTION_DAYS, batch_size=batch_size, dry_run=dry_run):
        counts[batch.kind] += batch.count
    return counts


def _prune(
    kind: str, rows: models.QuerySet[M], time_field: str, batch_size: int, dry_run: bool
) -> Iterator[Batch]:
    for pks in _pk_batches(rows, time_field, batch_size):
        if dry_run:
            count = len(pks)
        else:
            # The same conditions again: a row changed since it was read stays.
            count, _ = rows.filter(pk__in=pks).delete()
        if count:
            yield Batch(kind, count)


def _pk_batches(rows: models.QuerySet[M], time_field: str, batch_size: int) -> Iterator[list[Any]]:
    """The primary keys of ``rows``, oldest first, in keyset batches on ``(time_field, pk)``.

    A keyset, not "the first N again": deleted rows stay in PostgreSQL's indexes until
    vacuum, so re-reading from the start would step over every row deleted so far, each
    batch (quadratic); and a dry run deletes nothing, so it must move on by itself. Ties on
    the time are split by pk, so no row is skipped or read twice at a boundary.
    """
    ordered = rows.order_by(time_field, "pk")
    last: tuple[datetime, Any] | None = None
    while True:
        query = ordered
        if last is not None:
            # (time, pk) > last, with the plain range bound first so the index seeks to it
            # (as reconcile.pending_sessions does).
            query = query.filter(**{f"{time_field}__gte": last[0]}).filter(
                Q(**{f"{time_field}__gt": last[0]}) | Q(pk__gt=last[1])
            )
        keys: list[tuple[datetime, Any]] = list(query.values_list(time_field, "pk")[:batch_size])
        if not keys:
            return
        last = keys[-1]
        yield [pk for _, pk in keys]
        if len(keys) < batch_size:
            return  # that was the last of them: spare the empty query
