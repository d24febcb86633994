"""Verifying and parsing UniPost webhook deliveries (no database here)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable
from typing import Any

SIGNATURE_HEADER = "X-UniPost-Signature"
EVENT_HEADER = "X-UniPost-Event"
DELIVERY_HEADER = "X-UniPost-Delivery"
SIGNATURE_PREFIX = "sha256="


class WebhookError(Exception):
    """A delivery that must be refused."""


class WebhookSignatureError(WebhookError):
    """Missing, malformed or wrong signature."""


class WebhookPayloadError(WebhookError):
    """The (correctly signed) body is not a UniPost event."""


def compute_signature(body: bytes, secret: str) -> str:
    """The header value UniPost sends for ``body``: ``sha256=<lowercase hex HMAC>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(body: bytes, header: str | None, secrets: Iterable[str]) -> None:
    """Raise :class:`WebhookSignatureError` unless ``header`` signs ``body`` with a secret.

    Several secrets are accepted so one can be rotated without downtime. Every secret is
    compared in constant time.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        raise WebhookSignatureError("No webhook secret is configured; refusing every delivery.")
    if not header:
        raise WebhookSignatureError(f"Missing {SIGNATURE_HEADER} header.")
    header = header.strip()
    if not header.startswith(SIGNATURE_PREFIX):
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} must start with {SIGNATURE_PREFIX!r}.")
    given = header[len(SIGNATURE_PREFIX) :].encode("ascii", "replace")
    matched = False
    for secret in secrets:
        expected = compute_signature(body, secret)[len(SIGNATURE_PREFIX) :].encode()
        # No early exit: the time taken does not depend on which secret matched.
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise WebhookSignatureError("Webhook signature does not match.")


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
