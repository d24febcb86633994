"""Bring pending connect sessions up to date with UniPost.

Safe from cron on several machines at once: every change is a conditional update, so
two runs that read the same session apply its outcome once. The work is done by
:mod:`unipost_connect.reconcile`; this command reads the options and reports.

Exit status: 0 when the run went through (a failure on one session is recorded on its
row and reported on stderr); 1 when it stopped early because every further call would
fail too (UniPost refused the API key, API_BASE_URL is not UniPost's API, or UniPost
kept rate limiting); 130 after Ctrl-C. The summary line is printed in every case.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ... import reconcile
from ...errors import UniPostError
from ...models import ConnectSession

# Exit codes (through CommandError): stopped before the end, so cron's mail or the
# scheduler's alert says so; 130 is the shell's convention for Ctrl-C (SIGINT).
EXIT_STOPPED = 1
EXIT_INTERRUPTED = 130


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
            "--enqueue",
            action="store_true",
            help="Enqueue one task per due session (TASK_BACKEND) instead of reading here, so the "
            "work spreads over the task workers.",
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
        if options["enqueue"]:
            if dry_run:
                raise CommandError("--enqueue and --dry-run do not go together.")
            enqueued = sum(1 for _ in reconcile.enqueue_pending(cutoff, batch_size=batch_size, limit=limit))
            self.stdout.write(self.style.SUCCESS(f"Enqueued {enqueued} sessions to reconcile."))
            if options["sync_accounts"]:
                owners = sum(1 for _ in reconcile.enqueue_account_syncs())
                self.stdout.write(self.style.SUCCESS(f"Enqueued account syncs for {owners} users."))
            return
        results = reconcile.reconcile_pending(
            cutoff,
            batch_size=batch_size,
            limit=limit,
            workers=workers,
            dry_run=dry_run,
        )
        self._report_sessions(results, batch_size=batch_size, dry_run=dry_run)
        if options["sync_accounts"] and not dry_run:
            self._report_accounts(reconcile.sync_accounts())

    def _report_sessions(
        self, results: Generator[reconcile.Checked, None, None], *, batch_size: int, dry_run: bool
    ) -> None:
        """Print a progress line per batch, each failure, and the summary; exit as it ended."""
        counts = dict.fromkeys(("checked", *reconcile.OUTCOMES, reconcile.ERRORS), 0)
        started = time.monotonic()
        prefix = "[dry run] " if dry_run else ""
        stopped_early = ""
        interrupted = False
        try:
            for checked in results:
                # Counted once the session is dealt with, so an interrupted one is not.
                counts["checked"] += 1
                counts[checked.outcome] += 1
                if checked.error is not None:
                    self._report(checked.session, checked.error)
                stopped_early = checked.stop
                if not stopped_early and counts["checked"] % batch_size == 0:
                    self.stdout.write(f"{prefix}... {self._progress(counts, started)}")
        except KeyboardInterrupt:
            # Ctrl-C: what was applied stays applied (each change is its own conditional
            # update); say how far the run got rather than print a traceback.
            interrupted = True
        finally:
            results.close()  # stops the worker pool now, not when garbage-collected
        verb = "Would reconcile" if dry_run else "Reconciled"
        style = self.style.WARNING if interrupted or stopped_early else self.style.SUCCESS
        self.stdout.write(style(f"{prefix}{verb}: {self._progress(counts, started)}."))
        if interrupted:
            raise CommandError(
                "Interrupted; the remaining sessions wait for the next run.", returncode=EXIT_INTERRUPTED
            )
        if stopped_early:
            raise CommandError(f"{stopped_early}.", returncode=EXIT_STOPPED)

    def _report_accounts(self, results: Iterable[reconcile.AccountsSynced]) -> None:
        changed = errors = 0
        stopped_early = ""
        try:
            for synced in results:
                changed += synced.changed
                if synced.error is not None:
                    errors += 1
                    self.stderr.write(
                        f"accounts of external user {synced.external_user_id}: {synced.error.code} "
                        f"(request_id={synced.error.request_id or '-'})"
                    )
                stopped_early = synced.stop
        except KeyboardInterrupt:
            self.stdout.write(f"Accounts: {changed} updated (status or name), {errors} errors.")
            raise CommandError(
                "Interrupted; the remaining accounts wait for the next run.", returncode=EXIT_INTERRUPTED
            ) from None
        self.stdout.write(f"Accounts: {changed} updated (status or name), {errors} errors.")
        if stopped_early:
            raise CommandError(f"{stopped_early}.", returncode=EXIT_STOPPED)

    def _report(self, session: ConnectSession, exc: UniPostError) -> None:
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
