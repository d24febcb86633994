"""Tables of the bench app (created with ``migrate --run-syncdb``; no migrations)."""

from __future__ import annotations

from django.db import models


class BaselineEvent(models.Model):
    """What the baseline webhook view stores: the raw body, one row per request."""

    body = models.TextField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"baseline event {self.pk}"


class SignalRecord(models.Model):
    """One row per completion / ended signal a site process received (load-run audit)."""

    kind = models.CharField(max_length=32)
    session_id = models.CharField(max_length=64, db_index=True)
    account_id = models.CharField(max_length=128, blank=True)
    pid = models.IntegerField()
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.session_id}"
