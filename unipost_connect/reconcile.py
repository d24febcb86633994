"""Bring pending connect sessions up to date with UniPost, in bulk.

The engine behind ``manage.py unipost_connect_reconcile``; it prints nothing and parses
nothing, it yields what happened to each session for its caller to report.

Pending sessions are read oldest first in keyset batches, so memory stays flat however
many there are. With ``workers`` above 1 the HTTP reads run on a thread pool (a bounded
window of them in flight); every database read and write stays on the calling thread.

What an answer means for a session is decided by
:func:`~unipost_connect.sessions.apply_remote_session`, the same call the return view's
reconcile makes; every change is a conditional update, so runs on several machines at
once, the return and the webhook apply each outcome once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import Q

from . import accounts, sessions
from . import client as client_module
from .client import RemoteSession, UniPostClient, get_client
from .conf import app_settings
from .contract import DEFAULT_BASE_URL, TERMINAL_STATUSES
from .errors import (
    AuthenticationError,
    EndpointNotFoundError,
    NotFoundError,
    RateLimitedError,
    UniPostError,
)
from .models import ConnectedAccount, ConnectSession

# A Retry-After longer than this is not slept through in one go.
MAX_RATE_LIMIT_WAIT = 60.0
# Reads of one session refused with 429 before the run gives up (and stops: UniPost is
# asking to be left alone, so the rest waits for the next run).
RATE_LIMIT_ATTEMPTS = 3
# In-flight reads per worker.
WINDOW_PER_WORKER = 2

# What can become of a session in a run, in the order a summary lists them; a session
# whose read or write failed is counted under ERRORS.
OUTCOMES = ("completed", "expired", "cancelled", "unchanged", "unknown")
ERRORS = "errors"


def stop_reason(exc: UniPostError) -> str:
    """Why no further call can succeed after ``exc`` (and what to fix), or "" to go on."""
    if isinstance(exc, AuthenticationError):
        return (
            f"UniPost refused the API key ({exc.code}, HTTP {exc.status or '-'}); stopped early: "
            "check UNIPOST_CONNECT['API_KEY'] (a workspace API key, up_live_… or up_test_…)"
        )
    if isinstance(exc, EndpointNotFoundError):
        return (
            f"{app_settings.API_BASE_URL} answered HTTP 404 without UniPost's error answer; stopped "
            f"early: check UNIPOST_CONNECT['API_BASE_URL'] (UniPost's is {DEFAULT_BASE_URL})"
        )
    if isinstance(exc, RateLimitedError):
        # Whoever raised it already waited as long as it may; the rest can wait too.
        return "UniPost kept rate limiting; stopped early, run again later"
    return ""


@dataclass(frozen=True)
class Fetched:
    """What UniPost said about one session.

    ``remote`` is None when UniPost has no such session, or the session never reached
    it (the process died mid-start); ``error`` when UniPost could not be asked;
    ``skipped`` when it was not asked because the run is stopping.
    """

    remote: RemoteSession | None = None
    error: UniPostError | None = None
    skipped: bool = False


@dataclass(frozen=True)
class Checked:
    """One session dealt with: its outcome (an :data:`OUTCOMES` name or :data:`ERRORS`)."""

    session: ConnectSession
    outcome: str
    error: UniPostError | None = None
    # Why the run stops after this session (what to fix), or "" when it goes on.
    stop: str = ""


def pending_sessions(
    cutoff: datetime, *, batch_size: int = 500, limit: int | None = None
) -> Iterator[ConnectSession]:
    """Pending sessions created at or before ``cutoff``, oldest first, in keyset batches.

    The key is ``(created_at, id)``: rows sharing a ``created_at`` are split by id, so
    none is skipped or read twice at a batch boundary. Rows the caller changes drop out
    of ``status=pending``; the keyset is unaffected (an OFFSET would skip rows).
    """
    seen = 0
    base = ConnectSession.objects.filter(
        status=ConnectSession.Status.PENDING, created_at__lte=cutoff
    ).order_by("created_at", "id")
    last: tuple[datetime, Any] | None = None
    while limit is None or seen < limit:
        query = base
        if last is not None:
            # (created_at, id) > last, with the plain range bound first so the
            # (status, created_at) index seeks straight to it instead of scanning
            # every earlier pending row (SQLite cannot seek on the OR alone).
            query = query.filter(created_at__gte=last[0]).filter(
                Q(created_at__gt=last[0]) | Q(id__gt=last[1])
            )
        size = batch_size if limit is None else min(batch_size, limit - seen)
        batch = list(query[:size])
        if not batch:
            return
        last = (batch[-1].created_at, batch[-1].id)
        seen += len(batch)
        yield from batch


def settle(session: ConnectSession, fetched: Fetched, *, dry_run: bool = False) -> Checked:
    """Apply UniPost's answer to ``session`` (or, overdue without one, expire it).

    A dry run makes the very same changes in a transaction and rolls it back, so what it
    reports is decided by the code the real run uses, never guessed beside it. The
    app's signals go out on commit, so a dry run sends none (Django's own ``post_save``
    of an existing account row still fires inside it); a failure is reported but not
    recorded on the row. Either way ``session`` itself shows the change it reports.
    """
    if fetched.skipped:
        return Checked(session, "unchanged")  # left for the next run
    error = fetched.error
    if error is None:
        try:
            with transaction.atomic():
                outcome = _outcome(session, fetched.remote)
                if dry_run:
                    transaction.set_rollback(True)
        except UniPostError as exc:  # an answer that cannot be applied (it changed nothing)
            error = exc
        else:
            return Checked(session, outcome)
    if not dry_run:
        sessions.record_error(session, error)  # its status stays as it was
    return Checked(session, ERRORS, error=error, stop=stop_reason(error))


def _outcome(session: ConnectSession, remote: RemoteSession | None) -> str:
    if remote is None:
        # It will never complete, so it can only expire.
        return "expired" if sessions.expire_if_overdue(session) else "unchanged"
    if sessions.apply_remote_session(session, remote):
        return remote.status
    if remote.status == "pending":
        # apply_remote_session took UniPost's deadline onto ``session``: the one that counts.
        return "expired" if sessions.expire_if_overdue(session) else "unchanged"
    if remote.status in TERMINAL_STATUSES:
        return "unchanged"  # another worker, the return or a webhook got there first
    return "unknown"


def reconcile_pending(
    cutoff: datetime,
    *,
    batch_size: int = 500,
    limit: int | None = None,
    workers: int = 1,
    dry_run: bool = False,
) -> Generator[Checked, None, None]:
    """Settle every pending session created at or before ``cutoff``, oldest first.

    Yields each session once it is dealt with, and ends after the first whose
    :attr:`Checked.stop` says every further call would fail too. Close the generator
    (or let an exception, Ctrl-C included, leave it) to stop early: the pool's threads
    and every client's connections are released before it returns.
    """
    reader = _Reader()
    sessions = pending_sessions(cutoff, batch_size=batch_size, limit=limit)
    try:
        with closing(reader.fetch_all(sessions, workers)) as answers:
            for session, fetched in answers:
                checked = settle(session, fetched, dry_run=dry_run)
                yield checked
                if checked.stop:
                    return
    finally:
        reader.close()


def reconcile_one(session_id: str) -> str:
    """Reconcile one session by its id, as a task does; its status after ("" if gone).

    A session no longer pending is left alone, so a task that runs twice (or after the
    return or a webhook settled the session) changes nothing.
    """
    session = ConnectSession.objects.filter(pk=session_id).first()
    if session is None:
        return ""
    if session.status == ConnectSession.Status.PENDING:
        settle(session, _Reader(client=get_client()).fetch(session))
    return str(session.status)


def enqueue_pending(
    cutoff: datetime, *, batch_size: int = 500, limit: int | None = None
) -> Iterator[ConnectSession]:
    """Enqueue a reconcile task for each pending session due (see
    :func:`pending_sessions`), yielding each as it is enqueued; memory stays flat."""
    from . import tasks

    for session in pending_sessions(cutoff, batch_size=batch_size, limit=limit):
        tasks.enqueue(tasks.reconcile_session, str(session.pk))
        yield session


class _Reader:
    """Reads sessions from UniPost on one thread or a pool, one client per thread (or
    the one ``client`` given, for a single thread)."""

    def __init__(self, client: UniPostClient | None = None) -> None:
        self._given = client
        self._local = threading.local()
        self._clients: list[UniPostClient] = []
        self._clients_lock = threading.Lock()
        self._stop = threading.Event()

    def fetch_all(
        self, sessions: Iterable[ConnectSession], workers: int
    ) -> Generator[tuple[ConnectSession, Fetched], None, None]:
        """Each session with UniPost's answer, in order. Reads run on ``workers`` threads."""
        if workers == 1:
            for session in sessions:
                yield session, self.fetch(session)
            return
        window: deque[tuple[ConnectSession, Future[Fetched]]] = deque()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unipost-reconcile")
        try:
            for session in sessions:
                window.append((session, pool.submit(self._fetch_in_worker, session)))
                if len(window) >= workers * WINDOW_PER_WORKER:
                    first, future = window.popleft()
                    yield first, future.result()
            while window:
                first, future = window.popleft()
                yield first, future.result()
        finally:
            # Stopped early (or failed): drop what has not started, wait for the rest.
            self._stop.set()
            for _, future in window:
                future.cancel()
            pool.shutdown(wait=True)

    def _fetch_in_worker(self, session: ConnectSession) -> Fetched:
        try:
            return self.fetch(session)
        finally:
            # A worker only talks HTTP, but anything it might have opened (a settings
            # hook, a signal) must not leak a database connection per thread.
            connections.close_all()

    def fetch(self, session: ConnectSession) -> Fetched:
        if not session.unipost_session_id:
            return Fetched()  # nothing to ask
        if self._stop.is_set():
            return Fetched(skipped=True)
        client = self._client()
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            try:
                return Fetched(remote=client.get_session(session.unipost_session_id))
            except NotFoundError:
                return Fetched()
            except RateLimitedError as exc:
                if attempt == RATE_LIMIT_ATTEMPTS or self._stop.is_set():
                    return Fetched(error=exc)
                # The client does not sleep through a long Retry-After; the run paces
                # itself instead, through the client's hook (looked up now, so tests
                # that patch it see every wait).
                retry_after = exc.retry_after if exc.retry_after is not None else 1.0
                client_module._sleep(min(max(retry_after, 1.0), MAX_RATE_LIMIT_WAIT))
            except UniPostError as exc:
                if stop_reason(exc):
                    self._stop.set()  # the run stops at this one: start no more reads
                return Fetched(error=exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _client(self) -> UniPostClient:
        # One client (one pooled HTTP session) per thread: a requests.Session is not
        # guaranteed thread-safe.
        client: UniPostClient | None = self._given or getattr(self._local, "client", None)
        if client is None:
            client = UniPostClient.from_settings()
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.http.close()


@dataclass(frozen=True)
class AccountsSynced:
    """One end user's accounts copied from UniPost: how many rows changed, or the error."""

    external_user_id: str
    changed: int = 0
    error: UniPostError | None = None
    # Why the sync stops after this user (what to fix), or "" when it goes on.
    stop: str = ""


def sync_accounts(*, client: UniPostClient | None = None) -> Iterator[AccountsSynced]:
    """Copy account statuses from UniPost: one ``GET /v1/accounts`` per end user who has
    a live account here. Ends after the first failure every further call would share."""
    client = client or get_client()
    for external_user_id in _account_owners():
        try:
            changed = accounts.sync_account_statuses(external_user_id, client=client)
        except UniPostError as exc:
            stop = stop_reason(exc)
            yield AccountsSynced(external_user_id, error=exc, stop=stop)
            if stop:
                return
        else:
            yield AccountsSynced(external_user_id, changed=changed)


def enqueue_account_syncs() -> Iterator[str]:
    """Enqueue one account-status sync task per end user with a live account here,
    yielding each external user id as it is enqueued; memory stays flat."""
    from . import tasks

    for external_user_id in _account_owners():
        tasks.enqueue(tasks.sync_account_statuses, external_user_id)
        yield external_user_id


def _account_owners() -> Iterator[str]:
    """External user ids with an account not disconnected, in order, streamed."""
    owners = (
        ConnectedAccount.objects.exclude(status=ConnectedAccount.Status.DISCONNECTED)
        .exclude(external_user_id="")
        .values_list("external_user_id", flat=True)
        .distinct()
        .order_by("external_user_id")
    )
    return owners.iterator(chunk_size=500)
