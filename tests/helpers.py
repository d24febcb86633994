"""Helpers shared by the test modules: signal recording and the flow's first steps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.test import Client, RequestFactory

from unipost_connect import services, signals
from unipost_connect.models import ConnectSession

URL = "/unipost/webhook/"
# The fields of a connect session in UniPost's answers (for payload builders and fuzzing).
SESSION_FIELDS = (
    "id",
    "status",
    "url",
    "platform",
    "external_user_id",
    "expires_at",
    "created_at",
    "completed_at",
    "managed_account_id",
    "completed_social_account_id",
)
SIGNALS = (
    "connect_session_completed",
    "connect_session_ended_without_account",
    "account_connected",
    "account_disconnected",
    "account_needs_reconnect",
    "account_reconnected",
)


class SignalLog:
    """Every signal the app sent, in order, as (name, kwargs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def record(self, name: str, kwargs: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((name, kwargs))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for n, kwargs in self.calls if n == name]


@contextmanager
def record_signals() -> Iterator[SignalLog]:
    """Record the app's signals for the ``with`` block (safe across threads)."""
    log = SignalLog()
    receivers = []
    for name in SIGNALS:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            log.record(_name, kwargs)

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((name, receiver))
    try:
        yield log
    finally:
        for name, receiver in receivers:
            getattr(signals, name).disconnect(receiver)


def start(user: Any, platform: str = "linkedin") -> ConnectSession:
    return services.start_session(user, platform, request=RequestFactory().get("/"))


def go_back(client: Client, return_url: str | None, capture: Any) -> Any:
    assert return_url is not None
    parts = urlsplit(return_url)
    with capture(execute=True):
        return client.get(parts.path + "?" + parts.query)
