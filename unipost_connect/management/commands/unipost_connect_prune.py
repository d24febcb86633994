"""Delete stored webhook events and finished sessions older than ``RETENTION_DAYS``.

For cron (daily is plenty), beside reconcile; safe on several machines at once and
beside live workers. The rules (what goes, what is always kept) are
:mod:`unipost_connect.retention`'s; this command reads the options and reports.

Exit status: 0 when the run went through (nothing to delete included); 1 when
``RETENTION_DAYS`` cannot be used; 130 after Ctrl-C, which prints what was deleted so
far (each batch is its own statement: what went is gone, the rest waits for the next run).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ... import retention
from ...conf import SettingError, app_settings

EXIT_INTERRUPTED = 130


class Command(BaseCommand):
    help = (
        "Delete webhook events done with and finished sessions older than "
        "UNIPOST_CONNECT['RETENTION_DAYS'] (pending sessions, unapplied events and accounts are kept)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.DEFAULT_BATCH_SIZE,
            help=f"Rows deleted per statement (default {retention.DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        dry_run: bool = options["dry_run"]
        verbosity: int = options["verbosity"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            days = app_settings.RETENTION_DAYS
        except SettingError as exc:
            # The same words as check E009, without a traceback in cron's mail.
            raise CommandError(str(exc)) from exc
        prefix = "[dry run] " if dry_run else ""
        if days is None:
            self.stdout.write(
                f"{prefix}RETENTION_DAYS is None: every webhook event and session is kept; nothing pruned."
            )
            return
        now = timezone.now()
        before = retention.cutoff(days, now=now)
        counts = dict.fromkeys(retention.KINDS, 0)
        interrupted = False
        try:
            for batch in retention.prune(days, batch_size=batch_size, dry_run=dry_run, now=now):
                counts[batch.kind] += batch.count
                if verbosity >= 2:
                    verb = "would delete" if dry_run else "deleted"
                    self.stdout.write(
                        f"{prefix}... {verb} {batch.count} {batch.kind} ({counts[batch.kind]} so far)"
                    )
        except KeyboardInterrupt:
            interrupted = True
        verb = "Would delete" if dry_run else "Deleted"
        summary = (
            f"{prefix}{verb} {counts[retention.EVENTS]} webhook events received and "
            f"{counts[retention.SESSIONS]} finished sessions last changed before "
            f"{before.isoformat(timespec='seconds')} (RETENTION_DAYS={days}); pending sessions, "
            "events not yet applied and accounts are kept."
        )
        style = self.style.WARNING if interrupted else self.style.SUCCESS
        self.stdout.write(style(summary))
        if interrupted:
            raise CommandError("Interrupted; the rest waits for the next run.", returncode=EXIT_INTERRUPTED)
