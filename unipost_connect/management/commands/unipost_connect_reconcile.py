"""Bring pending connect sessions up to date with UniPost.

Safe from cron on several machines at once: every change is a conditional update, so
two runs that read the same session apply its outcome once.

Pending sessions are read oldest first in keyset batches, so memory stays flat however
many there are. With ``--workers N`` the HTTP reads run on a thread pool (a bounded
window of them in flight); every database read and write stays on the main thread.

Exit status: 0 when the run went through (a failure on one session is recorded on its
row and reported on stderr); 1 when it stopped early because every further call would
fail too (UniPost refused the API key, API_BASE_URL is not UniPost's API, or UniPost
kept rate limiting); 130 after Ctrl-C. The summary line is printed in every case.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from ... import bounds, services
from ...client import RemoteSession, UniPostClient, get_client
from ...conf import app_settings
from ...contract import DEFAULT_BASE_URL, TERMINAL_STATUSES
from ...errors import (
    AuthenticationError,
    EndpointNotFoundError,
    NotFoundError,
    RateLimitedError,
    UniPostError,
)
from ...models import ConnectedAccount, ConnectSession

# A Retry-After longer than this is not slept through in one go.
MAX_RATE_LIMIT_WAIT = 60.0
# Reads of one session refused with 429 before the run gives up (and stops: UniPost is
# asking to be left alone, so the rest waits for the next run).
RATE_LIMIT_ATTEMPTS = 3
# In-flight reads per worker.
WINDOW_PER_WORKER = 2

OUTCOMES = ("completed", "expired", "cancelled", "unchanged", "unknown")

# Exit codes (through CommandError): stopped before the end, so cron's mail or the
# scheduler's alert says so; 130 is the shell's convention for Ctrl-C (SIGINT).
EXIT_STOPPED = 1
EXIT_INTERRUPTED = 130


def sleep(seconds: float) -> None:
    """Every wait of the command (and of its client's retries) goes through here.

    Tests replace it (``monkeypatch.setattr(module, "sleep", ...)``) to run without
    waiting and to see the waits asked for.
    """
    time.sleep(seconds)


def _sleep(seconds: float) -> None:
    sleep(seconds)  # looked up at call time, so patching ``sleep`` works


@dataclass(frozen=True)
class Fetched:
    """What UniPost said about one session (or why it could not be asked)."""

    remote: RemoteSession | None = None
    not_found: bool = False
    error: UniPostError | None = None
    asked: bool = True


class RateLimitExhausted(Exception):
    pass


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
    return ""


class Command(BaseCommand):
    help = "Ask UniPost about pending connect sessions and record their outcome; expire overdue ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=5.0,
            metavar="MINUTES",
            help="Only sessions created at least this many minutes ago (default 5).",
        )
        parser.add_argument("--limit", type=int, default=None, help="Stop after this many sessions.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows read per query (default 500).")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            metavar="N",
            help="Concurrent reads from UniPost (default 1). Database writes stay sequential.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Ask UniPost and report, but change nothing."
        )
        parser.add_argument(
            "--sync-accounts",
            action="store_true",
            help="Also copy each connected account's status (active / reconnect required) from UniPost.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        limit: int | None = options["limit"]
        batch_size: int = options["batch_size"]
        workers: int = options["workers"]
        older_than: float = options["older_than"]
        if limit is not None and limit < 0:
            raise CommandError("--limit must be 0 or more.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more.")
        dry_run: bool = options["dry_run"]
        cutoff = timezone.now() - timedelta(minutes=older_than)

        self._local = threading.local()
        self._clients: list[UniPostClient] = []
        self._clients_lock = threading.Lock()
        self._stop = threading.Event()
        counts = dict.fromkeys(("checked", *OUTCOMES, "errors"), 0)
        started = time.monotonic()
        prefix = "[dry run] " if dry_run else ""
        stopped_early = ""
        interrupted = False
        results = self._fetch_all(self._pending(cutoff, batch_size, limit), workers)
        try:
            for session, fetched in results:
                # Counted once the session is dealt with, so an interrupted one is not.
                try:
                    outcome = self._apply(session, fetched, dry_run)
                except RateLimitExhausted:
                    outcome = "errors"
                    self._failed(session, fetched.error, dry_run)
                    stopped_early = "UniPost kept rate limiting; stopped early, run again later"
                except UniPostError as exc:
                    outcome = "errors"
                    self._failed(session, exc, dry_run)
                    stopped_early = stop_reason(exc)
                counts["checked"] += 1
                counts[outcome] += 1
                if stopped_early:
                    break
                if counts["checked"] % batch_size == 0:
                    self.stdout.write(f"{prefix}... {self._progress(counts, started)}")
        except KeyboardInterrupt:
            # Ctrl-C: what was applied stays applied (each change is its own conditional
            # update); say how far the run got rather than print a traceback.
            interrupted = True
        finally:
            results.close()  # stops the worker pool now, not when garbage-collected
            for client in self._clients:
                client.http.close()
        summary = self._progress(counts, started)
        verb = "Would reconcile" if dry_run else "Reconciled"
        style = self.style.WARNING if interrupted or stopped_early else self.style.SUCCESS
        self.stdout.write(style(f"{prefix}{verb}: {summary}."))
        if interrupted:
            raise CommandError(
                "Interrupted; the remaining sessions wait for the next run.", returncode=EXIT_INTERRUPTED
            )
        if stopped_early:
            raise CommandError(f"{stopped_early}.", returncode=EXIT_STOPPED)
        if options["sync_accounts"] and not dry_run:
            self._sync_accounts()

    def _sync_accounts(self) -> None:
        """One ``GET /v1/accounts`` per end user who has a live account here."""
        users = (
            ConnectedAccount.objects.exclude(status=ConnectedAccount.Status.DISCONNECTED)
            .exclude(external_user_id="")
            .values_list("external_user_id", flat=True)
            .distinct()
            .order_by("external_user_id")
        )
        client = get_client()
        changed = errors = 0
        stopped_early = ""
        try:
            for external_user_id in users.iterator(chunk_size=500):
                try:
                    changed += services.sync_account_statuses(external_user_id, client=client)
                except UniPostError as exc:
                    errors += 1
                    self.stderr.write(
                        f"accounts of external user {external_user_id}: {exc.code} "
                        f"(request_id={exc.request_id or '-'})"
                    )
                    stopped_early = stop_reason(exc)
                    if isinstance(exc, RateLimitedError):
                        # The client already waited as long as it may; the rest can wait too.
                        stopped_early = "UniPost kept rate limiting; stopped early, run again later"
                    if stopped_early:
                        break
        except KeyboardInterrupt:
            self.stdout.write(f"Accounts: {changed} status changes, {errors} errors.")
            raise CommandError(
                "Interrupted; the remaining accounts wait for the next run.", returncode=EXIT_INTERRUPTED
            ) from None
        self.stdout.write(f"Accounts: {changed} status changes, {errors} errors.")
        if stopped_early:
            raise CommandError(f"{stopped_early}.", returncode=EXIT_STOPPED)

    # -- reading ---------------------------------------------------------------------

    def _pending(self, cutoff: datetime, batch_size: int, limit: int | None) -> Iterator[ConnectSession]:
        """Pending sessions oldest first, read in keyset batches so memory stays flat.

        The key is ``(created_at, id)``: rows sharing a ``created_at`` are split by id,
        so none is skipped or read twice at a batch boundary. Rows this run changes drop
        out of ``status=pending``; the keyset is unaffected (an OFFSET would skip rows).
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

    def _fetch_all(
        self, sessions: Iterable[ConnectSession], workers: int
    ) -> Generator[tuple[ConnectSession, Fetched], None, None]:
        """Each session with UniPost's answer, in order. Reads run on ``workers`` threads."""
        if workers == 1:
            for session in sessions:
                yield session, self._fetch(session)
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
            return self._fetch(session)
        finally:
            # A worker only talks HTTP, but anything it might have opened (a settings
            # hook, a signal) must not leak a database connection per thread.
            connections.close_all()

    def _fetch(self, session: ConnectSession) -> Fetched:
        if not session.unipost_session_id:
            return Fetched(asked=False)
        if self._stop.is_set():
            return Fetched(asked=False)
        client = self._client()
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            try:
                return Fetched(remote=client.get_session(session.unipost_session_id))
            except NotFoundError:
                return Fetched(not_found=True)
            except RateLimitedError as exc:
                if attempt == RATE_LIMIT_ATTEMPTS or self._stop.is_set():
                    return Fetched(error=exc)
                retry_after = exc.retry_after if exc.retry_after is not None else 1.0
                _sleep(min(max(retry_after, 1.0), MAX_RATE_LIMIT_WAIT))
            except UniPostError as exc:
                if stop_reason(exc):
                    self._stop.set()  # the run stops at this one: start no more reads
                return Fetched(error=exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _client(self) -> UniPostClient:
        """One client (one pooled HTTP session) per thread; its retry waits use :func:`sleep`."""
        client: UniPostClient | None = getattr(self._local, "client", None)
        if client is None:
            client = UniPostClient(
                app_settings.API_KEY,
                app_settings.API_BASE_URL,
                timeout=app_settings.TIMEOUT,
                max_retries=app_settings.MAX_RETRIES,
                retry_max_wait=app_settings.RETRY_MAX_WAIT,
                sleep=_sleep,
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    # -- applying --------------------------------------------------------------------

    def _apply(self, session: ConnectSession, fetched: Fetched, dry_run: bool) -> str:
        if fetched.error is not None:
            if isinstance(fetched.error, RateLimitedError):
                raise RateLimitExhausted
            raise fetched.error
        remote = fetched.remote
        if remote is None:
            if fetched.asked is False and session.unipost_session_id:
                return "unchanged"  # the run is stopping; left for the next one
            # Never reached UniPost (the process died mid-start), or UniPost does not
            # know it: it will never complete, so it can only expire.
            return self._expire_if_overdue(session, dry_run)
        status = remote.status
        if dry_run:
            if status in TERMINAL_STATUSES:
                if status == "completed" and not remote.managed_account_id:
                    return "unknown"
                return status
        elif services.apply_remote_session(session, remote):
            return status
        if status == "pending":
            expires_at = bounds.plausible_datetime(remote.expires_at)
            if expires_at:
                session.expires_at = expires_at  # UniPost's deadline is the one that counts
            return self._expire_if_overdue(session, dry_run)
        if status in TERMINAL_STATUSES and not dry_run:
            return "unchanged"  # another worker, the return or a webhook got there first
        return "unknown"

    @staticmethod
    def _expire_if_overdue(session: ConnectSession, dry_run: bool) -> str:
        if not services.is_overdue(session):
            return "unchanged"
        if dry_run or services.expire_if_overdue(session):
            return "expired"
        return "unchanged"

    # -- output ----------------------------------------------------------------------

    def _failed(self, session: ConnectSession, exc: UniPostError | None, dry_run: bool) -> None:
        """Report the session's error and keep it on the row (its status stays as it was)."""
        self._report(session, exc)
        if exc is not None and not dry_run:
            services.record_error(session, exc)

    def _report(self, session: ConnectSession, exc: UniPostError | None) -> None:
        if exc is None:  # pragma: no cover - defensive
            return
        status = f"HTTP {exc.status}" if exc.status is not None else "no answer"
        self.stderr.write(
            f"session {session.pk} (UniPost {session.unipost_session_id}): {exc.code}, {status}: "
            f"{exc.message} (request_id={exc.request_id or '-'})"
        )

    @staticmethod
    def _progress(counts: dict[str, int], started: float) -> str:
        elapsed = time.monotonic() - started
        rate = counts["checked"] / elapsed if elapsed > 0 else 0.0
        parts = ", ".join(f"{counts[name]} {name}" for name in counts)
        return f"{parts} in {elapsed:.1f}s ({rate:.0f}/s)"
