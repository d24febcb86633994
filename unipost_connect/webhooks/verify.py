"""Verifying a UniPost webhook delivery's signature (no database here)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

SIGNATURE_HEADER = "X-UniPost-Signature"
EVENT_HEADER = "X-UniPost-Event"
DELIVERY_HEADER = "X-UniPost-Delivery"
SIGNATURE_PREFIX = "sha256="


class WebhookError(Exception):
    """A delivery that must be refused."""


class WebhookSignatureError(WebhookError):
    """Missing, malformed or wrong signature."""


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
