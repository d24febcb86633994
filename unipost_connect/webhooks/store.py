"""Storing a verified webhook delivery once, and applying it with its event's handler."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import bounds
from ..db import insert_unless_conflict
from ..models import WebhookEvent
from .handlers import EVENT_HANDLERS


def webhook_event_key(payload: Mapping[str, Any], raw_body: bytes) -> str:
    """The event's unique key: its ``event_id``, else a hash of the body.

    UniPost sends ``account.*`` events without ``event_id`` and resends a delivery byte
    for byte, so the body's hash identifies it. An ``event_id`` too long for the column
    is hashed too, never cut: two ids sharing a beginning must stay two events.
    """
    event_id = payload.get("event_id")
    if isinstance(event_id, str) and event_id.strip():
        return bounds.fitting_key(event_id.strip(), WebhookEvent, "event_key", prefix="event_id-sha256:")
    return "sha256:" + hashlib.sha256(raw_body).hexdigest()


@dataclass(frozen=True)
class WebhookOutcome:
    event: WebhookEvent
    duplicate: bool


def apply_webhook_payload(
    payload: Mapping[str, Any], *, raw_body: bytes | None = None, delivery_id: str = ""
) -> WebhookOutcome:
    """Store a *verified* webhook payload once and apply it, in one transaction.

    A repeat of the same event changes nothing. If applying fails the whole transaction
    rolls back (nothing half-applied), so UniPost's retry starts clean.
    """
    with transaction.atomic():
        event, created = _store(payload, raw_body, delivery_id)
        if created:
            _apply(event)
    return WebhookOutcome(event, duplicate=not created)


def store_webhook_payload(
    payload: Mapping[str, Any], *, raw_body: bytes | None = None, delivery_id: str = ""
) -> WebhookOutcome:
    """Store a *verified* webhook payload once, ``received``, to be applied later by
    :func:`process_stored_event` (a task). Nothing of it is applied here.

    One statement when it is new (``INSERT … ON CONFLICT DO NOTHING RETURNING``, no
    transaction of its own): the receiver's whole cost on a worker backend.
    """
    raw_body = _raw(payload, raw_body)
    event = _new_event(payload, raw_body, delivery_id)
    if insert_unless_conflict(event):
        return WebhookOutcome(event, duplicate=False)
    return WebhookOutcome(WebhookEvent.objects.get(event_key=event.event_key), duplicate=True)


def process_stored_event(event_id: int) -> str:
    """Apply a stored event still ``received`` or ``failed``, exactly once; its result.

    Its row stays locked while it is applied, and a second worker given the same event
    skips it (answering ""). A failure is recorded as ``failed`` with its reason, for a
    replay; a worker killed mid-way leaves the event as it was, and nothing applied.
    """
    due = (WebhookEvent.Result.RECEIVED, WebhookEvent.Result.FAILED)
    try:
        with transaction.atomic():
            event = (
                WebhookEvent.objects.select_for_update(skip_locked=True)
                .filter(pk=event_id, result__in=due)
                .first()
            )
            if event is None:
                return ""
            _apply(event)
    except Exception as exc:
        detail = bounds.clip(f"{type(exc).__name__}: {exc}", WebhookEvent, "detail")
        WebhookEvent.objects.filter(pk=event_id, result__in=due).update(
            result=WebhookEvent.Result.FAILED, detail=detail, processed_at=timezone.now()
        )
        raise
    return str(event.result)


def _store(payload: Mapping[str, Any], raw_body: bytes | None, delivery_id: str) -> tuple[WebhookEvent, bool]:
    """The event's row, and whether this call stored it (a repeat finds the first one)."""
    event = _new_event(payload, _raw(payload, raw_body), delivery_id)
    try:
        with transaction.atomic():
            event.save(force_insert=True)
    except IntegrityError:
        return WebhookEvent.objects.get(event_key=event.event_key), False
    return event, True


def _raw(payload: Mapping[str, Any], raw_body: bytes | None) -> bytes:
    """The delivery's bytes; for a payload handed over without them, a canonical dump."""
    if raw_body is not None:
        return raw_body
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _new_event(payload: Mapping[str, Any], raw_body: bytes, delivery_id: str) -> WebhookEvent:
    return WebhookEvent(
        event_key=webhook_event_key(payload, raw_body),
        event_type=bounds.clip(payload.get("event"), WebhookEvent, "event_type"),
        delivery_id=bounds.clip(delivery_id, WebhookEvent, "delivery_id"),
        payload=dict(payload),
    )


def _apply(event: WebhookEvent) -> None:
    """Run the event's handler and record its result on the row."""
    data = event.payload.get("data") if isinstance(event.payload, Mapping) else None
    handler = EVENT_HANDLERS.get(event.event_type)
    result: str
    if handler is None:
        result, detail = WebhookEvent.Result.IGNORED, "Event type not handled."
    else:
        result, detail = handler(data if isinstance(data, Mapping) else {})
    event.result = result
    event.detail = detail
    event.processed_at = timezone.now()
    event.save(update_fields=["result", "detail", "processed_at"])


def unprocessed_event_ids(*, received_before: datetime | None = None, batch_size: int = 500) -> Iterator[int]:
    """Ids of stored events still ``received`` or ``failed``, oldest first, read in keyset
    batches (memory stays flat); with ``received_before``, only those received earlier."""
    due = WebhookEvent.objects.filter(
        result__in=(WebhookEvent.Result.RECEIVED, WebhookEvent.Result.FAILED)
    ).order_by("pk")
    if received_before is not None:
        due = due.filter(received_at__lt=received_before)
    last = 0
    while True:
        batch = list(due.filter(pk__gt=last).values_list("pk", flat=True)[:batch_size])
        if not batch:
            return
        yield from batch
        last = batch[-1]
