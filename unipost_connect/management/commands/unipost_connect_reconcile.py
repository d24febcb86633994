"""Bring pending connect sessions up to date with UniPost.

Safe from cron on several machines at once: every change is a conditional update, so
two runs that read the same session apply its outcome once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from ... import services
from ...client import get_client
from ...errors import NotFoundError, RateLimitedError, UniPostError
from ...models import ConnectSession

MAX_RATE_LIMIT_WAIT = 60.0
RATE_LIMIT_ATTEMPTS = 3


class Command(BaseCommand):
    help = "Ask UniPost about pending connect sessions and record their outcome; expire overdue ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=float, default=5.0, metavar="MINUTES",
            help="Only sessions created at least this many minutes ago (default 5).",
        )
        parser.add_argument("--limit", type=int, default=None, help="Stop after this many sessions.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows read per query (default 500).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Ask UniPost and report, but change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - timedelta(minutes=options["older_than"])
        limit: int | None = options["limit"]
        dry_run: bool = options["dry_run"]
        client = get_client()
        counts = {"checked": 0, "completed": 0, "expired": 0, "cancelled": 0, "unchanged": 0, "errors": 0}
        started = time.monotonic()
        for session in self._pending(cutoff, options["batch_size"], limit):
            counts["checked"] += 1
            try:
                outcome = self._reconcile(session, client, dry_run)
            except UniPostError as exc:
                counts["errors"] += 1
                self.stderr.write(
                    f"session {session.pk}: {exc.code} {exc.message} (request_id={exc.request_id or '-'})"
                )
                continue
            counts[outcome] = counts.get(outcome, 0) + 1
            if counts["checked"] % 100 == 0:
                self.stdout.write(f"... {counts['checked']} sessions checked")
        elapsed = time.monotonic() - started
        prefix = "[dry run] " if dry_run else ""
        summary = ", ".join(f"{value} {name}" for name, value in counts.items())
        self.stdout.write(self.style.SUCCESS(f"{prefix}Reconciled in {elapsed:.1f}s: {summary}."))

    def _pending(self, cutoff: Any, batch_size: int, limit: int | None) -> Iterator[ConnectSession]:
        """Pending sessions oldest first, read in keyset batches so memory stays flat."""
        seen = 0
        last: tuple[Any, Any] | None = None
        base = ConnectSession.objects.filter(
            status=ConnectSession.Status.PENDING, created_at__lte=cutoff
        ).order_by("created_at", "id")
        while limit is None or seen < limit:
            query = base
            if last is not None:
                query = query.filter(created_at__gte=last[0]).exclude(created_at=last[0], id__lte=last[1])
            size = batch_size if limit is None else min(batch_size, limit - seen)
            batch = list(query[:size])
            if not batch:
                return
            for session in batch:
                yield session
            seen += len(batch)
            last = (batch[-1].created_at, batch[-1].id)

    def _reconcile(self, session: ConnectSession, client: Any, dry_run: bool) -> str:
        if not session.unipost_session_id:
            # Never reached UniPost (the process died mid-start): it can only expire.
            return self._expire_if_overdue(session, dry_run)
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            try:
                remote = client.get_session(session.unipost_session_id)
                break
            except RateLimitedError as exc:
                if attempt == RATE_LIMIT_ATTEMPTS:
                    raise
                wait = min(exc.retry_after or 1.0, MAX_RATE_LIMIT_WAIT)
                self.stderr.write(f"rate limited; waiting {wait:.0f}s")
                time.sleep(wait)
            except NotFoundError:
                # UniPost does not know it; it will never complete.
                return self._expire_if_overdue(session, dry_run)
        if dry_run:
            return remote.status if remote.status in ("completed", "expired", "cancelled") else "unchanged"
        changed = services.apply_remote_session(session, remote)
        if changed:
            return remote.status
        return self._expire_if_overdue(session, dry_run)

    def _expire_if_overdue(self, session: ConnectSession, dry_run: bool) -> str:
        deadline = session.expires_at or session.created_at + services.SESSION_LIFETIME
        if timezone.now() <= deadline:
            return "unchanged"
        if dry_run or services.expire_if_overdue(session):
            return "expired"
        return "unchanged"
