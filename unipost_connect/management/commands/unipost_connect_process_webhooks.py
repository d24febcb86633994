"""Apply every stored webhook event still ``received`` (its worker died, or none runs) or
``failed`` (after a fix). Safe beside live workers and on several machines at once: each
event is applied under its row lock, once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...webhooks.store import process_stored_event, unprocessed_event_ids

EXIT_FAILED = 1


class Command(BaseCommand):
    help = "Apply stored webhook events that are still received or failed (a replay)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            metavar="MINUTES",
            help="Only events received at least this many minutes ago, leaving fresher ones to "
            "the task workers (for a cron job beside them).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than: float | None = options["older_than"]
        if older_than is not None and older_than < 0:
            raise CommandError("--older-than must be 0 or more.")
        before = timezone.now() - timedelta(minutes=older_than) if older_than is not None else None
        counts: dict[str, int] = {}
        failed = 0
        for event_id in unprocessed_event_ids(received_before=before):
            try:
                result = process_stored_event(event_id) or "skipped"
            except Exception as exc:  # recorded on the event as failed; go on with the rest
                failed += 1
                self.stderr.write(f"event {event_id}: {type(exc).__name__}: {exc}")
                continue
            counts[result] = counts.get(result, 0) + 1
        summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) or "nothing to do"
        self.stdout.write(f"Processed webhook events: {summary}; {failed} failed.")
        if failed:
            raise CommandError(
                f"{failed} events failed; see their detail in the admin.", returncode=EXIT_FAILED
            )
