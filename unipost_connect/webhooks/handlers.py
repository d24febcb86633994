"""What each webhook event does, one handler per event type (``EVENT_HANDLERS``).

A handler takes the event's ``data`` and answers ``(result, detail)`` for the stored
event; it runs inside the transaction that stored the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from .. import bounds
from ..accounts import (
    ACCOUNT_CONFLICT,
    conflict_fields,
    mark_disconnected,
    mark_reconnect_required,
    owned_by,
    upsert_account,
)
from ..client import RemoteSession, get_client
from ..contract import REFRESH_FAILURE_REASONS
from ..errors import UniPostError
from ..models import ConnectedAccount, ConnectSession, WebhookEvent
from ..platforms import ALL_PLATFORMS
from ..sessions import apply_remote_session, check_about, complete_session

logger = logging.getLogger("unipost_connect")


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    return value.strip() if isinstance(value, str) else ""


def _apply_account_connected(data: Mapping[str, Any]) -> tuple[str, str]:
    account_id = _text(data, "social_account_id")
    platform = _text(data, "platform").lower()
    external_user_id = _text(data, "external_user_id")
    connection_type = _text(data, "connection_type")
    ignored = WebhookEvent.Result.IGNORED
    if not account_id or not external_user_id:
        return ignored, "No social_account_id or external_user_id (not a Connect account)."
    if connection_type and connection_type.lower() != "managed":
        return ignored, f"connection_type {connection_type[:32]!r} is not a Connect account."
    if platform not in ALL_PLATFORMS:
        return ignored, f"Platform {platform[:32]!r} is not one this app knows."
    # Values our columns cannot hold would fail the insert (and make UniPost retry a
    # delivery that can never succeed): keep the event, apply nothing.
    if not bounds.fits(account_id, ConnectedAccount, "managed_account_id") or not bounds.fits(
        external_user_id, ConnectSession, "external_user_id"
    ):
        return ignored, "social_account_id or external_user_id is malformed."
    account_name = _text(data, "account_name")
    profile_id = _text(data, "profile_id")
    confirmed = _session_completed_with(account_id, external_user_id, platform)
    if confirmed is not None:
        session, remote = confirmed
        completed = complete_session(
            session,
            account_id,
            account_name=account_name,
            profile_id=profile_id,
            completed_at=bounds.plausible_datetime(remote.completed_at),
        )
        if completed and session.error_code == ACCOUNT_CONFLICT:
            return WebhookEvent.Result.CONFLICT, f"Completed session {session.pk}; {session.error_message}"
        if completed:
            return WebhookEvent.Result.APPLIED, f"Completed session {session.pk}."
        owner_id = session.user_id
    else:
        any_session = (
            ConnectSession.objects.filter(external_user_id=external_user_id)
            .only("user_id")
            .order_by("-created_at")
            .first()
        )
        if any_session is None:
            detail = f"No local user for external_user_id {external_user_id[:64]!r}."
            return WebhookEvent.Result.UNKNOWN_USER, detail
        owner_id = any_session.user_id
    account = upsert_account(
        user_id=owner_id,
        managed_account_id=account_id,
        platform=platform,
        account_name=account_name,
        external_user_id=external_user_id,
        profile_id=profile_id,
    )
    if not owned_by(account, external_user_id=external_user_id, user_id=owner_id):
        return WebhookEvent.Result.CONFLICT, conflict_fields(account, owner_id)["error_message"]
    return WebhookEvent.Result.APPLIED, f"Account {account_id} recorded."


# The webhook must answer within UniPost's 5 seconds: the reads that find which session
# an account.connected event completed share this budget, each bounded by its own
# (short) timeouts rather than the site's READ_TIMEOUT, and make one attempt.
WEBHOOK_CONFIRM_BUDGET = 3.0

WEBHOOK_CONFIRM_TIMEOUT = (1.0, 2.0)

# Sessions of one user and platform asked about, newest first.
WEBHOOK_CONFIRM_MAX_SESSIONS = 3

# UniPost retries a delivery for about 5 minutes.
WEBHOOK_LATE_COMPLETION = timedelta(minutes=10)


def _confirm_timeout(remaining: float) -> tuple[float, float] | None:
    """(connect, read) timeouts for one confirming read, together no more than
    ``remaining`` seconds; None when too little is left to be worth a try."""
    connect, read = WEBHOOK_CONFIRM_TIMEOUT
    if remaining < 0.2:
        return None
    share = min(1.0, remaining / (connect + read))
    return (connect * share, read * share)


def _session_completed_with(
    account_id: str, external_user_id: str, platform: str
) -> tuple[ConnectSession, RemoteSession] | None:
    """The pending session UniPost reports completed with ``account_id`` (and that
    report), if any.

    The event names no session, and a user may have several pending on one platform
    (an old tab, one near its deadline): only UniPost knows which one the account came
    from, so each is read, newest first, within the budget. What UniPost says about the
    others (ended, or completed with another account) is applied on the way.
    """
    # A session marked expired here may still have been completed in time at UniPost (its
    # late webhook retried for minutes): recently expired ones are asked about too.
    completable = Q(status=ConnectSession.Status.PENDING) | Q(
        status=ConnectSession.Status.EXPIRED, expires_at__gte=timezone.now() - WEBHOOK_LATE_COMPLETION
    )
    candidates = (
        ConnectSession.objects.filter(completable, external_user_id=external_user_id, platform=platform)
        .exclude(unipost_session_id=None)
        .order_by("-created_at")[:WEBHOOK_CONFIRM_MAX_SESSIONS]
    )
    client = get_client()
    deadline = time.monotonic() + WEBHOOK_CONFIRM_BUDGET
    for session in candidates:
        timeout = _confirm_timeout(deadline - time.monotonic())
        if timeout is None:
            logger.warning("No time left to confirm connect session %s for a webhook.", session.pk)
            break
        try:
            remote = client.get_session(session.unipost_session_id or "", max_retries=0, timeout=timeout)
            if remote.status == "completed" and remote.managed_account_id == account_id:
                check_about(session, remote)
                return session, remote
            apply_remote_session(session, remote)
        except UniPostError as exc:
            logger.warning(
                "Could not confirm connect session %s for a webhook (%s); leaving it to reconcile.",
                session.pk,
                exc.code,
            )
    return None


def _apply_account_disconnected(data: Mapping[str, Any]) -> tuple[str, str]:
    account_id = _text(data, "social_account_id")
    if not bounds.fits(account_id, ConnectedAccount, "managed_account_id"):
        return WebhookEvent.Result.IGNORED, "social_account_id is malformed."
    account = ConnectedAccount.objects.filter(managed_account_id=account_id).first() if account_id else None
    if account is None:
        return WebhookEvent.Result.UNKNOWN_USER, f"No local account {account_id[:64]!r}."
    reason = _text(data, "reason").lower()
    if reason in REFRESH_FAILURE_REASONS:
        # UniPost keeps the account (reconnect_required); a new session brings it back.
        mark_reconnect_required(account, reason=reason)
        return WebhookEvent.Result.APPLIED, f"Account {account_id} needs reconnecting ({reason})."
    mark_disconnected(account)
    return WebhookEvent.Result.APPLIED, f"Account {account_id} disconnected ({reason[:32] or 'no reason'})."


EVENT_HANDLERS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
    "account.connected": _apply_account_connected,
    "account.disconnected": _apply_account_disconnected,
}
