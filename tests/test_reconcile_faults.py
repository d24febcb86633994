"""The reconcile command under every upstream fault of the shared table (tests/faults.py).

Two sessions UniPost has completed, only the first (the oldest, read first) faulted. For
each fault: the exact reads and waits, the error kept on the row and reported once, and
whether the run carried on to the second session or stopped (exit 1, so cron notices).
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase

from tests.faults import (
    RECONCILE_FAULTS,
    Fault,
    approved,
    assert_error_kept,
    calls_to,
    client_sleeps,
    fault_id,
    remote_session,
)
from unipost_connect import reconcile as engine
from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("fault", RECONCILE_FAULTS, ids=fault_id)
def test_reconcile(fault: Fault, fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # One hook for every wait: the clients' retries and the run's own pacing of 429s.
    waits = client_sleeps(monkeypatch)
    first = remote_session(user, minutes_ago=10)  # oldest: read first, and the only one faulted
    second = remote_session(user, minutes_ago=5)
    expected = fault.tries_at("reconcile")
    fault.inject(fake, "get", approved(fake, first), expected.calls)
    approved(fake, second)

    out, err = StringIO(), StringIO()
    stopped: pytest.ExceptionInfo[CommandError] | None = None
    with TestCase.captureOnCommitCallbacks(execute=True):
        if fault.stops_reconcile:
            with pytest.raises(CommandError) as stopped:
                call_command("unipost_connect_reconcile", "--older-than", "0", stdout=out, stderr=err)
        else:
            call_command("unipost_connect_reconcile", "--older-than", "0", stdout=out, stderr=err)

    assert calls_to(fake, "GET", f"/v1/connect/sessions/{first.unipost_session_id}") == expected.calls
    assert tuple(waits) == expected.sleeps
    assert max(waits, default=0) <= engine.MAX_RATE_LIMIT_WAIT
    first.refresh_from_db()
    second.refresh_from_db()
    errors = err.getvalue()
    summary = out.getvalue()
    assert str(second.pk) not in errors

    outcome = fault.reconcile_outcome or fault.read_outcome
    if outcome != "error":
        assert errors == ""
        assert "0 errors" in summary
        assert first.error_code == ""
        assert first.status == (ConnectSession.Status.COMPLETED if outcome == "completed" else "pending")
        if outcome == "pending":
            assert "1 unknown" in summary
        if outcome == "unchanged":
            assert "1 unchanged" in summary
    else:
        assert first.status == ConnectSession.Status.PENDING
        assert_error_kept(first, fault, fake)
        report = [line for line in errors.splitlines() if str(first.pk) in line]
        assert len(report) == 1 and fault.code in report[0]
        assert "1 errors" in summary

    if fault.stops_reconcile:
        # Every further call would fail the same way: the run stops (exit 1, so cron
        # notices), the rest waits for the next one.
        assert stopped is not None
        assert "stopped early" in str(stopped.value)
        assert stopped.value.returncode == 1
        assert calls_to(fake, "GET", f"/v1/connect/sessions/{second.unipost_session_id}") == 0
        assert second.status == ConnectSession.Status.PENDING
        assert second.error_code == ""
    else:
        # It carried on: the next session was read and applied.
        assert calls_to(fake, "GET", f"/v1/connect/sessions/{second.unipost_session_id}") == 1
        assert second.status == ConnectSession.Status.COMPLETED
        assert "2 checked" in summary
