from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig
from django.conf import settings


class BenchConfig(AppConfig):
    name = "bench"
    label = "bench"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if not getattr(settings, "BENCH_RECORD_SIGNALS", False):
            return
        from unipost_connect import signals

        signals.connect_session_completed.connect(_record_completed, dispatch_uid="bench.completed")
        signals.connect_session_ended_without_account.connect(_record_ended, dispatch_uid="bench.ended")


def _record_completed(sender: Any, session: Any, account: Any, **kwargs: Any) -> None:
    from .models import SignalRecord

    SignalRecord.objects.create(
        kind="completed",
        session_id=str(session.pk),
        account_id=getattr(account, "managed_account_id", "") or "",
        pid=os.getpid(),
    )


def _record_ended(sender: Any, session: Any, status: str, **kwargs: Any) -> None:
    from .models import SignalRecord

    SignalRecord.objects.create(kind=f"ended:{status}", session_id=str(session.pk), pid=os.getpid())
