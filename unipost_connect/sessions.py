"""A connect session's truth, applied: reconcile with UniPost, complete (with its
account), end, expire, record an error.

Every state change is a conditional ``UPDATE … WHERE status IN (…)``, so the return
view, the webhook and the reconcile command may race on different workers and each
session completes (and signals) exactly once. Signals go out after commit.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from . import bounds, signals
from .accounts import conflict_fields, owned_by, upsert_account
from .client import RemoteSession, UniPostClient, get_client
from .contract import SESSION_LIFETIME
from .db import change_once, mirror
from .errors import UniPostError, UniPostResponseError
from .models import ConnectedAccount, ConnectSession

if TYPE_CHECKING:
    from django.contrib.auth.models import _AnyUser

logger = logging.getLogger("unipost_connect")

# A session marked expired locally may still be completed by a late webhook or read:
# the account exists at UniPost either way.
_COMPLETABLE = (ConnectSession.Status.PENDING, ConnectSession.Status.EXPIRED)


def check_about(session: ConnectSession, remote: RemoteSession, *, check_id: bool = True) -> None:
    """Refuse an answer that is not about ``session``: nothing of it may be applied."""
    wrong = []
    if check_id and remote.id != session.unipost_session_id:
        wrong.append("id")
    if remote.external_user_id and remote.external_user_id.strip() != session.external_user_id:
        wrong.append("external_user_id")
    if remote.platform and remote.platform.strip().lower() != session.platform:
        wrong.append("platform")
    if wrong:
        logger.warning(
            "UniPost's answer for connect session %s has another %s; ignored.",
            session.pk,
            " and ".join(wrong),
        )
        raise UniPostResponseError(
            f"UniPost answered about another session (its {' and '.join(wrong)} differs); nothing applied.",
            request_id=remote.request_id,
        )


def storable(remote: RemoteSession, value: str, model: type[Model], field: str, what: str) -> str:
    """``value`` from UniPost's answer if ``model.field`` can hold it unchanged, else
    :class:`~unipost_connect.errors.UniPostResponseError`."""
    try:
        return bounds.checked(value, model, field, what=what)
    except bounds.Unstorable as exc:
        raise UniPostResponseError(
            f"UniPost's answer cannot be stored: {exc}.", request_id=remote.request_id
        ) from None


def record_error(
    session: ConnectSession,
    exc: UniPostError,
    *,
    status: str | None = None,
    extra_fields: Mapping[str, Any] | None = None,
) -> None:
    """Keep a failed call's error code, message and request id on the row (bounded).

    With ``status`` (``failed``, say) a pending session also moves to it, once, and sends
    ``connect_session_ended_without_account``; otherwise its status is left as it was.
    ``extra_fields`` are written in the same UPDATE.
    """
    fields: dict[str, Any] = {
        "error_code": bounds.clip(exc.code, ConnectSession, "error_code"),
        "error_message": bounds.clip(exc.message, ConnectSession, "error_message"),
        "request_id": bounds.clip(exc.request_id, ConnectSession, "request_id"),
        "updated_at": timezone.now(),
        **(extra_fields or {}),
    }
    if status is None:
        ConnectSession.objects.filter(pk=session.pk).update(**fields)
        mirror(session, fields)
    else:
        fields["status"] = status
        change_once(
            session,
            ConnectSession.objects.filter(status=ConnectSession.Status.PENDING),
            fields,
            announce_ended(status),
        )


def return_hint_fields(connect_status: str, reason: str) -> dict[str, str]:
    """What the browser's return URL claimed, for support; it decides nothing."""
    # Bounded like UniPost's values: the query string is anyone's to type.
    return {
        "return_status": bounds.clip(connect_status, ConnectSession, "return_status"),
        "return_reason": bounds.clip(reason, ConnectSession, "return_reason"),
    }


def _store_fields(session: ConnectSession, fields: Mapping[str, Any]) -> None:
    ConnectSession.objects.filter(pk=session.pk).update(**fields)
    mirror(session, fields)


def reconcile_session(
    session: ConnectSession,
    *,
    client: UniPostClient | None = None,
    hint: tuple[str, str] | None = None,
    name_account: bool = False,
) -> ConnectSession:
    """Ask UniPost for the session's truth and apply it. Returns ``session``, updated.

    ``hint`` is the return URL's ``(connect_status, reason)``: recorded, never trusted,
    and written in the same UPDATE as the state change when there is one.
    ``name_account``: for a user waiting on the outcome (the return, the JSON status), a
    completed session's account that has no name yet gets it from UniPost's account list
    (see :func:`name_account_later`).
    On an API failure the row's status is left as it was, the error (and the hint) is
    recorded on it, and the :class:`~unipost_connect.errors.UniPostError` is raised.
    """
    extra = return_hint_fields(*hint) if hint is not None else {}
    if not session.unipost_session_id:
        if extra:
            _store_fields(session, extra)
        return session
    client = client or get_client()
    try:
        remote = client.get_session(session.unipost_session_id)
        # No refresh afterwards: a change this call made is mirrored on ``session``, and
        # one it lost to a concurrent worker was read back from the database.
        changed = apply_remote_session(
            session, remote, extra_fields=extra, on_completed=name_account_later if name_account else None
        )
    except UniPostError as exc:
        record_error(session, exc, extra_fields=extra)
        raise
    if extra and not changed:
        _store_fields(session, extra)
    return session


def name_account_later(account: ConnectedAccount) -> None:
    """The session answer names no account: when the account this completion gave has no
    name yet (the webhook that carries it has not come), a task reads it from UniPost's
    account list, for that platform. Inline (the default backend) it runs as the
    completion commits, one more call on the way back, so the page the user lands on
    shows the name; on a worker backend a worker fetches it. A failure is the task's
    (logged), never the caller's."""
    if account.account_name or not account.external_user_id:
        return
    from . import tasks

    quick = tasks.runs_inline()  # then the user waits on it: one short attempt
    tasks.enqueue_on_commit(tasks.sync_account_statuses, account.external_user_id, account.platform, quick)


def apply_remote_session(
    session: ConnectSession,
    remote: RemoteSession,
    *,
    extra_fields: Mapping[str, Any] | None = None,
    on_completed: Callable[[ConnectedAccount], object] | None = None,
) -> bool:
    """Move the local session to the state UniPost reports. True if this call changed it.

    ``extra_fields`` are written in the same UPDATE when the state changes;
    ``on_completed`` is called with the account when this call completed the session
    and gave this session's owner the account (see :func:`complete_session`). An answer
    about another session, or one that cannot be stored, raises
    :class:`~unipost_connect.errors.UniPostResponseError` and changes nothing.
    """
    check_about(session, remote)
    if remote.status == "completed":
        if not remote.managed_account_id:
            raise UniPostResponseError(
                "UniPost reports the session completed but names no managed_account_id.",
                request_id=remote.request_id,
            )
        account_id = storable(
            remote, remote.managed_account_id, ConnectedAccount, "managed_account_id", "managed_account_id"
        )
        return complete_session(
            session,
            account_id,
            completed_at=bounds.plausible_datetime(remote.completed_at),
            extra_fields=extra_fields,
            on_completed=on_completed,
        )
    if remote.status in ("expired", "cancelled"):
        return end_session(session, remote.status, extra_fields=extra_fields)
    expires_at = bounds.plausible_datetime(remote.expires_at)
    if remote.status != "pending":
        logger.warning(
            "UniPost reported unknown status %r for connect session %s; leaving it pending.",
            remote.status[:32],
            session.pk,
        )
    elif expires_at and expires_at != session.expires_at:
        ConnectSession.objects.filter(pk=session.pk).update(expires_at=expires_at)
        session.expires_at = expires_at
    return False


def complete_session(
    session: ConnectSession,
    managed_account_id: str,
    *,
    account_name: str = "",
    profile_id: str = "",
    completed_at: datetime | None = None,
    extra_fields: Mapping[str, Any] | None = None,
    on_completed: Callable[[ConnectedAccount], object] | None = None,
) -> bool:
    """Mark the session completed and record its account, exactly once.

    Returns True for the one caller that made the change; it alone sends
    ``connect_session_completed`` (after commit), and calls ``on_completed`` with the
    account (inside the transaction) when the account is this session's owner's.
    """
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": ConnectSession.Status.COMPLETED,
        "managed_account_id": managed_account_id,
        "completed_at": completed_at or now,
        "error_code": "",
        "error_message": "",
        "updated_at": now,
        **(extra_fields or {}),
    }
    # No savepoint of our own: nothing here is retried after a failure, and inside a
    # caller's transaction (the webhook's) a failure must undo the caller's work too.
    with transaction.atomic(savepoint=False):
        # Under READ COMMITTED a concurrent UPDATE of the same row waits for the first
        # to commit, then re-checks the WHERE on the new row: only one caller matches.
        won = ConnectSession.objects.filter(pk=session.pk, status__in=_COMPLETABLE).update(**fields)
        if won:
            account = upsert_account(
                user_id=session.user_id,
                managed_account_id=managed_account_id,
                platform=session.platform,
                account_name=account_name,
                external_user_id=session.external_user_id,
                profile_id=profile_id or session.profile_id,
            )
            _announce_completion(session, account, fields)
            if on_completed is not None and _owns(session, account):
                on_completed(account)
    if not won:
        session.refresh_from_db()  # show the caller what the winner recorded
    return bool(won)


def _owns(session: ConnectSession, account: ConnectedAccount) -> bool:
    return owned_by(account, external_user_id=session.external_user_id, user_id=session.user_id)


def _announce_completion(session: ConnectSession, account: ConnectedAccount, fields: dict[str, Any]) -> None:
    """Mirror the completion on ``session`` and tell receivers, after commit, what it gave."""
    if not _owns(session, account):
        # UniPost's truth (completed) is kept, but the account is another owner's: this
        # user got none, and staff see why.
        fields.update(conflict_fields(account, session.user_id))
        ConnectSession.objects.filter(pk=session.pk).update(
            error_code=fields["error_code"], error_message=fields["error_message"]
        )
        mirror(session, fields)
        transaction.on_commit(partial(announce_ended(ConnectSession.Status.COMPLETED), copy.copy(session)))
        return
    mirror(session, fields)
    snapshot = copy.copy(session)
    transaction.on_commit(
        lambda: signals.connect_session_completed.send(
            sender=ConnectSession, session=snapshot, account=account
        )
    )


def end_session(
    session: ConnectSession, status: str, *, extra_fields: Mapping[str, Any] | None = None
) -> bool:
    """Move a pending session to expired or cancelled, exactly once."""
    if status not in (ConnectSession.Status.EXPIRED, ConnectSession.Status.CANCELLED):
        raise ValueError(f"{status!r} is not an ending status")
    fields = {"status": status, "updated_at": timezone.now(), **(extra_fields or {})}
    return change_once(
        session,
        ConnectSession.objects.filter(status=ConnectSession.Status.PENDING),
        fields,
        announce_ended(status),
    )


def _pending() -> QuerySet[ConnectSession]:
    return ConnectSession.objects.filter(status=ConnectSession.Status.PENDING)


def announce_ended(status: str) -> Callable[[ConnectSession], object]:
    """What tells receivers a session ended without an account (``status`` says how)."""
    return lambda snapshot: signals.connect_session_ended_without_account.send(
        sender=ConnectSession, session=snapshot, status=str(status)
    )


def is_overdue(session: ConnectSession) -> bool:
    """True once the session's deadline has passed."""
    deadline = session.expires_at or session.created_at + SESSION_LIFETIME
    return timezone.now() > deadline


def expire_if_overdue(session: ConnectSession) -> bool:
    """Mark a pending session expired locally once its deadline has passed."""
    if session.status == ConnectSession.Status.PENDING and is_overdue(session):
        return end_session(session, ConnectSession.Status.EXPIRED)
    return False


def user_sessions(user: _AnyUser, limit: int = 10) -> list[ConnectSession]:
    if user.pk is None:  # an anonymous (or unsaved) user has no sessions
        return []
    return list(ConnectSession.objects.filter(user_id=user.pk).order_by("-created_at")[:limit])
