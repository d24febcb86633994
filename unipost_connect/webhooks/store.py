"""Storing a verified webhook delivery once, and applying it with its event's handler."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import bounds
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
    if raw_body is None:
        raw_body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    key = webhook_event_key(payload, raw_body)
    event_type = bounds.clip(payload.get("event"), WebhookEvent, "event_type")
    data = payload.get("data")
    data = data if isinstance(data, Mapping) else {}
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = WebhookEvent.objects.create(
                    event_key=key,
                    event_type=event_type,
                    delivery_id=bounds.clip(delivery_id, WebhookEvent, "delivery_id"),
                    payload=dict(payload),
                )
        except IntegrityError:
            return WebhookOutcome(WebhookEvent.objects.get(event_key=key), duplicate=True)
        handler = EVENT_HANDLERS.get(event_type)
        result: str
        if handler is None:
            result, detail = WebhookEvent.Result.IGNORED, "Event type not handled."
        else:
            result, detail = handler(data)
        event.result = result
        event.detail = detail
        event.processed_at = timezone.now()
        event.save(update_fields=["result", "detail", "processed_at"])
    return WebhookOutcome(event, duplicate=False)
