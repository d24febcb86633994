"""The Python API, for sites that build their own views: start a session for a user,
reconcile a session, apply a webhook payload, manage accounts.

The flow lives in its domain modules (``start``, ``sessions``, ``accounts``,
``webhooks``); this module is their documented face, re-exporting what the README
describes, so a site imports one place. Names not here are internal and may change.
"""

from __future__ import annotations

from .accounts import (
    button_accounts,
    can_manage,
    disconnect_account,
    mark_disconnected,
    mark_reconnect_required,
    sync_account_statuses,
    upsert_account,
    user_accounts,
)
from .errors import UniPostError
from .sessions import (
    apply_remote_session,
    complete_session,
    end_session,
    expire_if_overdue,
    is_overdue,
    reconcile_session,
    record_error,
    user_sessions,
)
from .start import (
    ExternalUserIdError,
    StartInProgressError,
    UnknownPlatformError,
    build_return_url,
    check_external_user_id,
    start_session,
)
from .webhooks.receive import accept_webhook_payload
from .webhooks.store import (
    WebhookOutcome,
    apply_webhook_payload,
    process_stored_event,
    store_webhook_payload,
    webhook_event_key,
)

__all__ = [
    "ExternalUserIdError",
    "StartInProgressError",
    "UniPostError",
    "UnknownPlatformError",
    "WebhookOutcome",
    "accept_webhook_payload",
    "apply_remote_session",
    "apply_webhook_payload",
    "build_return_url",
    "button_accounts",
    "can_manage",
    "check_external_user_id",
    "complete_session",
    "disconnect_account",
    "end_session",
    "expire_if_overdue",
    "is_overdue",
    "mark_disconnected",
    "mark_reconnect_required",
    "process_stored_event",
    "reconcile_session",
    "record_error",
    "start_session",
    "store_webhook_payload",
    "sync_account_statuses",
    "upsert_account",
    "user_accounts",
    "user_sessions",
    "webhook_event_key",
]
