"""The Connect flow's logic: start, reconcile, complete, apply webhooks, disconnect.

This is the Python API for sites that build their own views. Every state change is a
conditional ``UPDATE … WHERE status IN (…)`` inside a transaction, so the return view,
the webhook and the reconcile command may race on different workers and each session
completes (and signals) exactly once. Signals go out after commit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Exists, Model, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from . import bounds, signals
from . import client as client_module
from .client import RemoteSession, UniPostClient, get_client
from .conf import app_settings
from .contract import EXTERNAL_USER_ID_MAX_BYTES, REFRESH_FAILURE_REASONS, SESSION_LIFETIME
from .db import insert_unless_conflict, insert_unless_constrained
from .errors import (
    NotFoundError,
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
    UniPostValidationError,
    error_from_record,
)
from .models import ConnectedAccount, ConnectSession, WebhookEvent
from .platforms import ALL_PLATFORMS

if TYPE_CHECKING:
    # ``_User`` is django-stubs' name for "the AUTH_USER_MODEL": its mypy plugin resolves it
    # to the project's user model, so callers are checked against their own model (without
    # the plugin it is AbstractBaseUser). ``_AnyUser`` adds AnonymousUser.
    from django.contrib.auth.models import _AnyUser, _User

logger = logging.getLogger("unipost_connect")

# A session marked expired locally may still be completed by a late webhook or read:
# the account exists at UniPost either way.
_COMPLETABLE = (ConnectSession.Status.PENDING, ConnectSession.Status.EXPIRED)


class UnknownPlatformError(ValueError):
    """The platform is not one of the site's ``PLATFORMS``."""


# -- starting ------------------------------------------------------------------


def build_return_url(session_id: uuid.UUID, request: HttpRequest | None = None) -> str:
    """The absolute URL UniPost sends the browser back to; it names the local session."""
    path = reverse("unipost_connect:return", kwargs={"session_id": session_id})
    base = app_settings.RETURN_BASE_URL
    if base:
        return base + path
    if request is not None:
        return request.build_absolute_uri(path)
    raise ImproperlyConfigured(
        "Cannot build an absolute return URL without a request: set "
        "UNIPOST_CONNECT['RETURN_BASE_URL'] (e.g. 'https://www.example.com')."
    )


def start_session(
    user: _User,
    platform: str,
    *,
    request: HttpRequest | None = None,
    next_url: str = "",
    client: UniPostClient | None = None,
) -> ConnectSession:
    """Start (or reuse) a connect session for ``user`` and return it; redirect to ``.url``.

    The local row is saved before UniPost is called. If the call fails the row is kept
    as ``failed`` with the error code, message and request id, and the
    :class:`~unipost_connect.errors.UniPostError` is raised.

    Concurrent starts for the same user and target (a double click, two tabs) make one
    session at UniPost: the later ones wait for the first and return its session, or
    raise :class:`StartInProgressError` if it takes longer than ``START_WAIT`` seconds.
    """
    platform = (platform or "").strip().lower()
    if platform not in app_settings.PLATFORMS:
        raise UnknownPlatformError(f"{platform!r} is not an allowed platform.")
    profile_id = app_settings.PROFILE_ID or ""
    target = _Target(
        user=user,
        platform=platform,
        profile_id=bounds.clip(profile_id, ConnectSession, "profile_id"),
        quickstart=app_settings.ALLOW_QUICKSTART_CREDS,
    )
    # Before any row is written: a configuration error leaves nothing half-made.
    client = client or get_client()
    external_user_id = str(app_settings.EXTERNAL_USER_ID(user)).strip()
    email = (getattr(user, "email", "") or "") if app_settings.SEND_USER_EMAIL else ""

    session_id = uuid.uuid4()
    return_url = build_return_url(session_id, request)
    session = _claim_start(
        target,
        client,
        ConnectSession(
            id=session_id,
            user=user,
            platform=platform,
            profile_id=target.profile_id,
            external_user_id=bounds.clip(external_user_id, ConnectSession, "external_user_id"),
            external_user_email=bounds.clip(email, ConnectSession, "external_user_email"),
            allow_quickstart_creds=target.quickstart,
            next_url=next_url,
        ),
    )
    if session.pk != session_id:  # another request's session, or one still pending
        if session.next_url != next_url:
            session.next_url = next_url
            session.save(update_fields=["next_url", "updated_at"])
        return session
    try:
        check_external_user_id(external_user_id)
        _check_profile_id(profile_id)
        remote = client.create_session(
            platform=platform,
            external_user_id=external_user_id,
            external_user_email=email or None,
            return_url=return_url,
            profile_id=profile_id or None,
            allow_quickstart_creds=target.quickstart,
        )
        _store_created(session, remote)
    except UniPostError as exc:
        _record_error(session, exc, status=ConnectSession.Status.FAILED)
        logger.warning("Connect session %s failed to start: %s", session.pk, exc.code)
        raise
    except Exception as exc:
        # Not UniPost's doing (a bug, say): still, no row is left pending without a url.
        unexpected = UniPostError(f"Unexpected {type(exc).__name__} while starting.", code="INTERNAL_ERROR")
        _record_error(session, unexpected, status=ConnectSession.Status.FAILED)
        raise
    return session


class StartInProgressError(Exception):
    """Another request is still starting a session for the same user and platform."""


class ExternalUserIdError(UniPostValidationError):
    """``EXTERNAL_USER_ID`` gave a value UniPost would refuse; nothing was sent."""

    default_code = "INVALID_EXTERNAL_USER_ID"


START_INTERRUPTED = "START_INTERRUPTED"


# How long a second click waits for the first one's session before giving up, and how
# often it looks. UniPost answers a create in well under a second.
START_WAIT = 5.0
START_POLL_INTERVAL = 0.05
# Added to the longest a create can take (see _stale_start) before a row still starting
# is taken for one whose request died, and a new click replaces it.
STALE_START_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True)
class _Target:
    """What makes two starts the same: who, where, and under which credentials."""

    user: Any
    platform: str
    profile_id: str
    quickstart: bool

    def sessions(self) -> QuerySet[ConnectSession]:
        return ConnectSession.objects.filter(
            user=self.user,
            platform=self.platform,
            profile_id=self.profile_id,
            allow_quickstart_creds=self.quickstart,
            status=ConnectSession.Status.PENDING,
        )


def _claim_start(target: _Target, client: UniPostClient, new: ConnectSession) -> ConnectSession:
    """``new``, saved, when this request is the one to call UniPost; else the session to use.

    The database decides who calls UniPost: the unique constraint
    ``unipost_cs_one_start_in_flight`` admits one row without UniPost's id per target, so
    of several concurrent requests exactly one inserts; the others wait for its answer.
    """
    deadline = time.monotonic() + START_WAIT
    while True:
        reusable = _reusable_session(target)
        if reusable is not None and _still_pending(reusable, client):
            return reusable
        if insert_unless_constrained(new):
            # Looked up again now that this request holds the target: a session whose
            # answer another request wrote between the look-up above and the insert is
            # certainly visible now (the insert could only pass once it was written).
            raced = _reusable_session(target)
            if raced is None:
                return new
            ConnectSession.objects.filter(pk=new.pk).delete()
            return raced
        starting = target.sessions().filter(unipost_session_id=None).first()
        if starting is not None and starting.created_at < timezone.now() - _stale_start(client):
            _abandon(starting)
        elif starting is not None:
            waited = _wait_for_start(starting, deadline)
            if waited is not None:
                return waited
        # else it got its answer (or failed) meanwhile: look again.
        if time.monotonic() >= deadline:
            raise StartInProgressError(
                f"A {target.platform} session for this user is still being started elsewhere."
            )


def _stale_start(client: UniPostClient) -> timedelta:
    """How old a row still starting must be to belong to a request that died.

    Longer than any create can take (the client's retry deadline and one more attempt's
    timeouts), with a margin for clocks that differ between servers.
    """
    return timedelta(seconds=client.deadline + sum(client.timeout)) + STALE_START_MARGIN


def _wait_for_start(starting: ConnectSession, deadline: float) -> ConnectSession | None:
    """The other request's session once UniPost answered it; None when it did not end up
    pending with a hosted url (look again), or the wait ran out."""
    while time.monotonic() < deadline:
        client_module._sleep(START_POLL_INTERVAL)  # the one wait tests replace
        current = ConnectSession.objects.filter(pk=starting.pk).first()
        if current is None or current.status == ConnectSession.Status.FAILED:
            if current is not None and current.error_code != START_INTERRUPTED:
                # The same failure would meet this request: say so rather than retry.
                raise error_from_record(current.error_code, current.error_message, current.request_id)
            return None
        if current.status != ConnectSession.Status.PENDING:
            return None
        if current.unipost_session_id and current.url:
            return current
    return None


def _abandon(session: ConnectSession) -> None:
    abandoned = UniPostError(
        "The request that started this session ended before UniPost answered.", code=START_INTERRUPTED
    )
    _record_error(session, abandoned, status=ConnectSession.Status.FAILED)


def check_external_user_id(value: str) -> None:
    """Refuse an ``external_user_id`` UniPost would refuse (1 to 256 bytes of UTF-8) or
    this site could not store as sent (NUL)."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        size = -1
    if not 1 <= size <= EXTERNAL_USER_ID_MAX_BYTES or "\x00" in value:
        shown = "not valid UTF-8" if size < 0 else f"{size} bytes{', with NUL' if chr(0) in value else ''}"
        raise ExternalUserIdError(
            "UNIPOST_CONNECT['EXTERNAL_USER_ID'] gave an id UniPost does not accept: it must be "
            f"1 to {EXTERNAL_USER_ID_MAX_BYTES} bytes of UTF-8 without NUL (this one is {shown}). "
            "Return a shorter stable id, such as the primary key or a hash of a longer one."
        )


def _check_profile_id(value: str) -> None:
    if not bounds.fits(value, ConnectSession, "profile_id"):
        raise UniPostValidationError(
            "UNIPOST_CONNECT['PROFILE_ID'] cannot be stored (too long, or NUL); it is checked as "
            "unipost_connect.E012.",
            code="INVALID_PROFILE_ID",
        )


def _store_created(session: ConnectSession, remote: RemoteSession) -> None:
    """Record UniPost's answer to the create on the row, or raise UniPostResponseError."""
    fields: dict[str, Any] = {
        "unipost_session_id": _storable(remote, remote.id, ConnectSession, "unipost_session_id", "id"),
        "url": _storable(remote, remote.url, ConnectSession, "url", "url"),
        "request_id": bounds.clip(remote.request_id, ConnectSession, "request_id"),
    }
    _check_about(session, remote, check_id=False)
    expires_at = bounds.plausible_datetime(remote.expires_at)
    fields["expires_at"] = expires_at or session.created_at + SESSION_LIFETIME
    fields["updated_at"] = timezone.now()
    # The id of a session this site already has would be an answer about something else;
    # checked in the UPDATE itself, so no failed statement is left to roll back.
    taken = ConnectSession.objects.filter(unipost_session_id=fields["unipost_session_id"])
    if (
        ConnectSession.objects.filter(pk=session.pk)
        .filter(~Exists(taken))
        .filter(status=ConnectSession.Status.PENDING, unipost_session_id=None)
        .update(**fields)
    ):
        _set(session, fields)
        return
    session.refresh_from_db()
    if session.status == ConnectSession.Status.FAILED:
        # UniPost took so long that a later click took this row for a dead request's.
        raise UniPostConnectionError(
            "UniPost answered after this attempt had been given up; please start again.",
            code=START_INTERRUPTED,
            request_id=remote.request_id,
        )
    raise UniPostResponseError(
        "UniPost answered the create with the id of an existing session.", request_id=remote.request_id
    )


def _storable(remote: RemoteSession, value: str, model: type[Model], field: str, what: str) -> str:
    """``value`` from UniPost's answer if ``model.field`` can hold it unchanged, else
    :class:`~unipost_connect.errors.UniPostResponseError`."""
    try:
        return bounds.checked(value, model, field, what=what)
    except bounds.Unstorable as exc:
        raise UniPostResponseError(
            f"UniPost's answer cannot be stored: {exc}.", request_id=remote.request_id
        ) from None


def _check_about(session: ConnectSession, remote: RemoteSession, *, check_id: bool = True) -> None:
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


def _reusable_session(target: _Target) -> ConnectSession | None:
    """The user's newest pending session for the same target with enough time left."""
    min_remaining = app_settings.REUSE_MIN_REMAINING
    return (
        target.sessions()
        .filter(expires_at__gte=timezone.now() + timedelta(seconds=min_remaining))
        .exclude(url="")
        .exclude(unipost_session_id=None)
        .order_by("-created_at")
        .first()
    )


def _still_pending(session: ConnectSession, client: UniPostClient) -> bool:
    """False when UniPost reports ``session`` ended: the user may have finished (or
    refused) on the hosted page without coming back, and its link is then dead."""
    try:
        remote = client.get_session(session.unipost_session_id or "")
        apply_remote_session(session, remote)
    except UniPostError as exc:
        # UniPost cannot say now. The session is pending here with time left; a new one
        # per click while UniPost is unwell would only add sessions there. Nothing is
        # written to the row either: a lock held on it for the rest of the request would
        # hold up its webhook.
        logger.warning("Could not check connect session %s before reusing it: %s", session.pk, exc.code)
        return True
    return session.is_pending


def record_error(session: ConnectSession, exc: UniPostError) -> None:
    """Keep a failed call's error code, message and request id on the row; status unchanged."""
    _record_error(session, exc)


def _record_error(
    session: ConnectSession,
    exc: UniPostError,
    *,
    status: str | None = None,
    extra_fields: Mapping[str, Any] | None = None,
) -> None:
    fields: dict[str, Any] = {
        "error_code": bounds.clip(exc.code, ConnectSession, "error_code"),
        "error_message": bounds.clip(exc.message, ConnectSession, "error_message"),
        "request_id": bounds.clip(exc.request_id, ConnectSession, "request_id"),
        "updated_at": timezone.now(),
        **(extra_fields or {}),
    }
    # One UPDATE: atomic on its own, and inside a caller's transaction part of it.
    query = ConnectSession.objects.filter(pk=session.pk)
    if status is None:
        query.update(**fields)
        _set(session, fields)
        return
    fields["status"] = status
    if query.filter(status=ConnectSession.Status.PENDING).update(**fields):
        _set(session, fields)
        _on_commit_ended(session, status)
    else:
        session.refresh_from_db()  # it ended meanwhile: show the caller how


# -- the return ------------------------------------------------------------------


def return_hint_fields(connect_status: str, reason: str) -> dict[str, str]:
    """What the browser's return URL claimed, for support; it decides nothing."""
    # NUL cannot be stored by PostgreSQL; the query string is anyone's to type.
    connect_status = (connect_status or "").replace("\x00", "")
    reason = (reason or "").replace("\x00", "")
    return {"return_status": connect_status[:32], "return_reason": reason[:255]}


def record_return_hint(session: ConnectSession, connect_status: str, reason: str) -> None:
    """Store the return URL's claim on its own (``reconcile_session(hint=…)`` does it for free)."""
    _store_fields(session, return_hint_fields(connect_status, reason))


def _store_fields(session: ConnectSession, fields: Mapping[str, Any]) -> None:
    ConnectSession.objects.filter(pk=session.pk).update(**fields)
    _set(session, fields)


def reconcile_session(
    session: ConnectSession,
    *,
    client: UniPostClient | None = None,
    hint: tuple[str, str] | None = None,
) -> ConnectSession:
    """Ask UniPost for the session's truth and apply it. Returns ``session``, updated.

    ``hint`` is the return URL's ``(connect_status, reason)``: recorded, never trusted,
    and written in the same UPDATE as the state change when there is one.
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
        changed = apply_remote_session(session, remote, extra_fields=extra)
    except UniPostError as exc:
        _record_error(session, exc, extra_fields=extra)
        raise
    if extra and not changed:
        _store_fields(session, extra)
    return session


def apply_remote_session(
    session: ConnectSession, remote: RemoteSession, *, extra_fields: Mapping[str, Any] | None = None
) -> bool:
    """Move the local session to the state UniPost reports. True if this call changed it.

    ``extra_fields`` are written in the same UPDATE when the state changes. An answer
    about another session, or one that cannot be stored, raises
    :class:`~unipost_connect.errors.UniPostResponseError` and changes nothing.
    """
    _check_about(session, remote)
    if remote.status == "completed":
        if not remote.managed_account_id:
            raise UniPostResponseError(
                "UniPost reports the session completed but names no managed_account_id.",
                request_id=remote.request_id,
            )
        account_id = _storable(
            remote, remote.managed_account_id, ConnectedAccount, "managed_account_id", "managed_account_id"
        )
        return complete_session(
            session,
            account_id,
            completed_at=bounds.plausible_datetime(remote.completed_at),
            extra_fields=extra_fields,
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
) -> bool:
    """Mark the session completed and record its account, exactly once.

    Returns True for the one caller that made the change; it alone sends
    ``connect_session_completed`` (after commit).
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
            if account.user_id != session.user_id:
                # UniPost's truth (completed) is kept, but the account is another local
                # user's: this user got none, and staff see why.
                fields.update(_conflict_fields(account, session.user_id))
                ConnectSession.objects.filter(pk=session.pk).update(
                    error_code=fields["error_code"], error_message=fields["error_message"]
                )
                _set(session, fields)
                _on_commit_ended(session, ConnectSession.Status.COMPLETED)
            else:
                _set(session, fields)
                snapshot = copy.copy(session)
                transaction.on_commit(
                    lambda: signals.connect_session_completed.send(
                        sender=ConnectSession, session=snapshot, account=account
                    )
                )
    if not won:
        session.refresh_from_db()  # show the caller what the winner recorded
    return bool(won)


ACCOUNT_CONFLICT = "ACCOUNT_CONFLICT"


def _conflict_fields(account: ConnectedAccount, user_id: Any) -> dict[str, str]:
    """What staff see on a session whose account already belongs to another local user."""
    return {
        "error_code": ACCOUNT_CONFLICT,
        "error_message": (
            f"UniPost account {account.managed_account_id} belongs to local user #{account.user_id}, "
            f"not to this session's user #{user_id}; it was not moved."
        ),
    }


def end_session(
    session: ConnectSession, status: str, *, extra_fields: Mapping[str, Any] | None = None
) -> bool:
    """Move a pending session to expired or cancelled, exactly once."""
    if status not in (ConnectSession.Status.EXPIRED, ConnectSession.Status.CANCELLED):
        raise ValueError(f"{status!r} is not an ending status")
    fields = {"status": status, "updated_at": timezone.now(), **(extra_fields or {})}
    with transaction.atomic(savepoint=False):
        won = ConnectSession.objects.filter(pk=session.pk, status=ConnectSession.Status.PENDING).update(
            **fields
        )
        if won:
            _set(session, fields)
            _on_commit_ended(session, status)
    if not won:
        session.refresh_from_db()
    return bool(won)


def _set(instance: Any, fields: Mapping[str, Any]) -> None:
    """Mirror on ``instance`` what a conditional UPDATE just wrote to its row."""
    for name, value in fields.items():
        setattr(instance, name, value)


def _on_commit_ended(session: ConnectSession, status: str) -> None:
    # A copy, so what receivers see is this change even if the caller moves on first.
    snapshot = copy.copy(session)
    transaction.on_commit(
        lambda: signals.connect_session_ended_without_account.send(
            sender=ConnectSession, session=snapshot, status=str(status)
        )
    )


def upsert_account(
    *,
    user_id: Any,
    managed_account_id: str,
    platform: str,
    account_name: str = "",
    external_user_id: str = "",
    profile_id: str = "",
) -> ConnectedAccount:
    """Create or refresh the account row; one row per ``managed_account_id``, ever.

    Sends ``account_connected`` (after commit) when the account is new or comes back
    from disconnected, once even when several workers upsert the same account at once.
    An existing account of another local user is returned untouched, never moved or
    changed: compare the returned account's ``user_id`` with ``user_id`` to see that.
    """
    values = {
        "user_id": user_id,
        "platform": platform,
        "account_name": bounds.clip(account_name, ConnectedAccount, "account_name"),
        "external_user_id": bounds.clip(external_user_id, ConnectedAccount, "external_user_id"),
        "profile_id": profile_id if bounds.fits(profile_id, ConnectedAccount, "profile_id") else "",
    }
    with transaction.atomic(savepoint=False):
        account = (
            ConnectedAccount.objects.select_for_update().filter(managed_account_id=managed_account_id).first()
        )
        created = False
        if account is None:
            now = timezone.now()
            account = ConnectedAccount(
                managed_account_id=managed_account_id,
                status=ConnectedAccount.Status.ACTIVE,
                connected_at=now,
                **values,
            )
            created = insert_unless_conflict(account)
            if not created:  # another worker inserted it since our read: refresh theirs
                account = ConnectedAccount.objects.select_for_update().get(
                    managed_account_id=managed_account_id
                )
        reactivated = False
        if not created and account.user_id != user_id:
            # Another local user's account: neither moved nor changed on this user's behalf.
            logger.warning(
                "UniPost account %s belongs to local user #%s; not moved to user #%s.",
                managed_account_id,
                account.user_id,
                user_id,
            )
            return account
        if not created:
            reactivated = account.status != ConnectedAccount.Status.ACTIVE
            account.platform = platform or account.platform
            account.account_name = values["account_name"] or account.account_name
            account.external_user_id = values["external_user_id"] or account.external_user_id
            account.profile_id = values["profile_id"] or account.profile_id
            account.status = ConnectedAccount.Status.ACTIVE
            if reactivated:
                account.connected_at = timezone.now()
                account.disconnected_at = None
            account.save()
        if created or reactivated:
            snapshot = copy.copy(account)
            transaction.on_commit(
                lambda: signals.account_connected.send(
                    sender=ConnectedAccount, account=snapshot, created=created
                )
            )
    return account


# -- webhooks --------------------------------------------------------------------


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
    if account.user_id != owner_id:
        return WebhookEvent.Result.CONFLICT, _conflict_fields(account, owner_id)["error_message"]
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
                _check_about(session, remote)
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


# -- accounts ----------------------------------------------------------------------


def mark_disconnected(account: ConnectedAccount) -> bool:
    """Mark the account disconnected locally, once; sends ``account_disconnected``."""
    now = timezone.now()
    fields = {"status": ConnectedAccount.Status.DISCONNECTED, "disconnected_at": now, "updated_at": now}
    with transaction.atomic(savepoint=False):
        won = (
            ConnectedAccount.objects.filter(pk=account.pk)
            .exclude(status=ConnectedAccount.Status.DISCONNECTED)
            .update(**fields)
        )
        if won:
            _set(account, fields)
            snapshot = copy.copy(account)
            transaction.on_commit(
                lambda: signals.account_disconnected.send(sender=ConnectedAccount, account=snapshot)
            )
    if not won:
        account.refresh_from_db()
    return bool(won)


def mark_reconnect_required(account: ConnectedAccount, *, reason: str) -> bool:
    """Mark an active account ``reconnect_required``, once; sends ``account_needs_reconnect``."""
    fields = {"status": ConnectedAccount.Status.RECONNECT_REQUIRED, "updated_at": timezone.now()}
    with transaction.atomic(savepoint=False):
        won = ConnectedAccount.objects.filter(pk=account.pk, status=ConnectedAccount.Status.ACTIVE).update(
            **fields
        )
        if won:
            _set(account, fields)
            snapshot = copy.copy(account)
            transaction.on_commit(
                lambda: signals.account_needs_reconnect.send(
                    sender=ConnectedAccount, account=snapshot, reason=reason
                )
            )
    if not won:
        account.refresh_from_db()
    return bool(won)


def disconnect_account(account: ConnectedAccount, *, client: UniPostClient | None = None) -> bool:
    """Ask UniPost to disconnect the account; mark it locally only once UniPost confirms.

    A 404 means UniPost no longer has it, which is the state asked for.
    """
    client = client or get_client()
    try:
        client.delete_account(account.managed_account_id)
    except NotFoundError:
        pass
    return mark_disconnected(account)


def sync_account_statuses(external_user_id: str, *, client: UniPostClient | None = None) -> int:
    """Copy UniPost's ``active`` / ``reconnect_required`` onto the user's local accounts.

    Only those two statuses are trusted from the list: an account missing from it is
    left as it is (``account.disconnected`` webhooks report disconnections). Returns how
    many rows changed. Raises :class:`~unipost_connect.errors.UniPostError`.
    """
    remote = (client or get_client()).list_accounts(external_user_id=external_user_id)
    wanted = {
        account.id: account.status
        for account in remote
        if account.status in (ConnectedAccount.Status.ACTIVE, ConnectedAccount.Status.RECONNECT_REQUIRED)
    }
    changed = 0
    local = ConnectedAccount.objects.filter(
        external_user_id=external_user_id, managed_account_id__in=list(wanted)
    ).exclude(status=ConnectedAccount.Status.DISCONNECTED)
    for account in local:
        status = wanted[account.managed_account_id]
        if account.status != status:
            changed += ConnectedAccount.objects.filter(pk=account.pk, status=account.status).update(
                status=status, updated_at=timezone.now()
            )
    return changed


# -- housekeeping ----------------------------------------------------------------


def is_overdue(session: ConnectSession, *, grace: timedelta = timedelta(0)) -> bool:
    """True once the session's deadline (plus ``grace``) has passed."""
    deadline = session.expires_at or session.created_at + SESSION_LIFETIME
    return timezone.now() > deadline + grace


def expire_if_overdue(session: ConnectSession, *, grace: timedelta = timedelta(0)) -> bool:
    """Mark a pending session expired locally once its deadline (plus ``grace``) has passed."""
    if session.status == ConnectSession.Status.PENDING and is_overdue(session, grace=grace):
        return end_session(session, ConnectSession.Status.EXPIRED)
    return False


def user_sessions(user: _AnyUser, limit: int = 10) -> list[ConnectSession]:
    if user.pk is None:  # an anonymous (or unsaved) user has no sessions
        return []
    return list(ConnectSession.objects.filter(user_id=user.pk).order_by("-created_at")[:limit])
