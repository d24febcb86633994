"""Test control: fake-only routes under ``/_fake/``, served by :mod:`.server`, so a
benchmark can drive and inspect the fake from another process. The live API has none.

They are authorised with the same ``Authorization: Bearer <api key>`` (else 401) and
answer ``{"data": ...}``; they add no latency, take no injected faults and are not
counted in ``fake.requests``.

- ``POST /_fake/accounts/{id}/fail-refresh`` (optional ``reason`` as a form or JSON
  field, default ``refresh_failed``): ``fake.fail_token_refresh(id, reason)``; the
  account becomes ``reconnect_required`` and ``account.disconnected`` is sent. 404 for
  an unknown account, 409 when it is not active, 422 for an unknown reason.
- ``GET /_fake/accounts``: every account with its status, ``disconnected`` ones too
  (``GET /v1/accounts`` has no paging beyond its 100 and hides those).
- ``GET /_fake/sessions`` (optional ``external_user_id``, ``platform``): every session the
  fake created, lazy expiry applied, so extra creates can be counted.
- ``GET /_fake/webhooks``: ``{"emitted", "started", "finished", "delivered", "failed",
  "in_flight"}`` for the deliveries to the server's webhook URL (only ``emitted``
  without one), so a caller can wait until the last has ended.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..contract import REFRESH_FAILURE_REASONS
from .records import FakeResponse

if TYPE_CHECKING:
    from .delivery import WebhookSender
    from .fake import FakeUniPost

CONTROL_PREFIX = "/_fake/"
_FAIL_REFRESH = re.compile(r"/_fake/accounts/([^/]+)/fail-refresh")
_SESSION_FILTERS = ("external_user_id", "platform")


def answer(
    fake: FakeUniPost,
    webhooks: WebhookSender | None,
    method: str,
    path: str,
    query: str,
    authorized: bool,
    body: bytes,
) -> FakeResponse:
    """Answer a ``/_fake/`` request; ``authorized``: it carried the fake's API key."""
    if not authorized:
        return _error(401, "Invalid or missing API key")
    path = path.rstrip("/")
    match = _FAIL_REFRESH.fullmatch(path)
    if match and method == "POST":
        return _fail_refresh(fake, match.group(1), _form_or_json(body).get("reason") or "refresh_failed")
    if method != "GET":
        return _error(404, f"No test-control route {method} {path}")
    if path == "/_fake/accounts":
        return _data([account.as_json() for account in fake._accounts_matching({}, disconnected_too=True)])
    if path == "/_fake/sessions":
        wanted = {k: v[0] for k, v in parse_qs(query).items() if k in _SESSION_FILTERS}
        return _data([session.as_json() for session in fake._sessions_matching(wanted)])
    if path == "/_fake/webhooks":
        sent = webhooks.summary() if webhooks is not None else {}
        return _data({"emitted": len(fake.outbox), **sent})
    return _error(404, f"No test-control route {method} {path}")


def _fail_refresh(fake: FakeUniPost, account_id: str, reason: str) -> FakeResponse:
    if reason not in REFRESH_FAILURE_REASONS:
        return _error(422, f"reason must be one of {' '.join(sorted(REFRESH_FAILURE_REASONS))}")
    account = fake.accounts.get(account_id)
    if account is None:
        return _error(404, "Account not found")
    try:
        delivery = fake.fail_token_refresh(account_id, reason=reason)
    except ValueError as exc:  # not active (already failed, or disconnected)
        return _error(409, str(exc))
    return _data({"account": account.as_json(), "event": delivery.event})


def _data(data: Any) -> FakeResponse:
    return _json(200, {"data": data})


def _error(status: int, message: str) -> FakeResponse:
    return _json(status, {"error": {"code": "FAKE_CONTROL", "message": message}})


def _json(status: int, payload: dict[str, Any]) -> FakeResponse:
    return FakeResponse(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _form_or_json(body: bytes) -> dict[str, str]:
    """The fields of a form or JSON object body (strings only; anything else is ignored)."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(text).items()}
