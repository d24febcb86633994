"""The webhook side: verify a delivery (``verify``), read it (``parse``), store it once
(``store``) and apply it with its event's handler (``handlers``).

This package's top level needs no database (the fake UniPost signs with it, outside
any Django project); storing and applying are in ``services`` (the Python API) and
``unipost_connect.webhooks.store``.
"""

from .parse import WebhookPayloadError, parse_payload
from .verify import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    SIGNATURE_PREFIX,
    WebhookError,
    WebhookSignatureError,
    compute_signature,
    verify_signature,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "compute_signature",
    "parse_payload",
    "verify_signature",
]
