"""Accepting a verified delivery: applied at once where tasks run inline, else stored
``received`` and handed to a worker, so the request answers UniPost without waiting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import tasks
from .store import WebhookOutcome, apply_webhook_payload, store_webhook_payload


def accept_webhook_payload(
    payload: Mapping[str, Any], *, raw_body: bytes | None = None, delivery_id: str = ""
) -> WebhookOutcome:
    """Store a *verified* payload once and see that it is applied once.

    With an inline backend (Django's default ImmediateBackend) it is stored and applied
    in one transaction, as :func:`~unipost_connect.webhooks.store.apply_webhook_payload`
    does; otherwise the outcome is ``received`` and a task applies it after commit.
    """
    if tasks.runs_inline():
        return apply_webhook_payload(payload, raw_body=raw_body, delivery_id=delivery_id)
    # No transaction of its own: two statements, the event's INSERT then the task's. A
    # process that dies between them leaves the event ``received`` with no task; the
    # replay command (``unipost_connect_process_webhooks --older-than``) applies it.
    outcome = store_webhook_payload(payload, raw_body=raw_body, delivery_id=delivery_id)
    if not outcome.duplicate:
        tasks.enqueue_on_commit(tasks.process_webhook_event, outcome.event.pk)
    return outcome
