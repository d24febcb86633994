"""Reading a verified webhook body into an event (no database here)."""

from __future__ import annotations

import json
import math
from typing import Any

from .verify import WebhookError


class WebhookPayloadError(WebhookError):
    """The (correctly signed) body is not a UniPost event."""


def parse_payload(body: bytes) -> dict[str, Any]:
    """The event object of a verified body, or :class:`WebhookPayloadError`.

    Besides the shape, it refuses what could never be stored as JSON in the database
    (``NaN``/``Infinity``, NUL characters, unpaired surrogates): such a body would fail
    on every retry instead of being refused once.
    """
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except WebhookPayloadError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WebhookPayloadError("Webhook body is not JSON.") from exc
    if not isinstance(payload, dict):
        raise WebhookPayloadError("Webhook body is not a JSON object.")
    _check_storable(payload)
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise WebhookPayloadError("Webhook body has no 'event'.")
    data = payload.get("data", {})
    if not isinstance(data, dict):
        raise WebhookPayloadError("Webhook 'data' is not an object.")
    return payload


def _refuse_constant(name: str) -> Any:
    raise WebhookPayloadError(f"Webhook body contains {name}, which is not JSON.")


def _check_storable(value: Any) -> None:
    # Iterative, so nesting as deep as json.loads accepts cannot exhaust the stack here.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")  # json.loads pairs valid surrogates; a lone one fails here
            except UnicodeEncodeError:
                raise WebhookPayloadError("Webhook body contains an unpaired surrogate.") from None
            if "\x00" in item:
                raise WebhookPayloadError("Webhook body contains a NUL character.")
        elif isinstance(item, float) and not math.isfinite(item):
            raise WebhookPayloadError("Webhook body contains a number too large to store.")
