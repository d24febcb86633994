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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connections, router, transaction
from django.db.models import Exists, Field, OuterRef, Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import signals
from .client import RemoteSession, UniPostClient, get_client
from .conf import app_settings
from .errors import NotFoundError, UniPostError, UniPostResponseError
from .models import ConnectedAccount, ConnectSession, WebhookEvent

if TYPE_CHECKING:
    # ``_User`` is django-stubs' name for "the AUTH_USER_MODEL": its mypy plugin resolves it
    # to the project's user model, so callers are checked against their own model (without
    # the plugin it is AbstractBaseUser). ``_AnyUser`` adds AnonymousUser.
    from django.contrib.auth.models import _AnyUser, _User

logger = logging.getLogger("unipost_connect")

SESSION_LIFETIME = timedelta(minutes=30)
TERMINAL_REMOTE_STATUSES = {"completed", "expired", "cancelled"}
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
    """
    platform = (platform or "").strip().lower()
    if platform not in app_settings.PLATFORMS:
        raise UnknownPlatformError(f"{platform!r} is not an allowed platform.")
    profile_id = app_settings.PROFILE_ID or ""
    quickstart = app_settings.ALLOW_QUICKSTART_CREDS
    # Before any row is written: a configuration error leaves nothing half-made.
    client = client or get_client()

    reusable = _reusable_session(user, platform, profile_id, quickstart)
    if reusable is not None:
        reusable = _still_pending(reusable, client)
    if reusable is not None:
        if reusable.next_url != next_url:
            reusable.next_url = next_url
            reusable.save(update_fields=["next_url", "updated_at"])
        return reusable

    session_id = uuid.uuid4()
    return_url = build_return_url(session_id, request)
    email = (getattr(user, "email", "") or "") if app_settings.SEND_USER_EMAIL else ""
    session = ConnectSession.objects.create(
        id=session_id,
        user=user,
        platform=platform,
        profile_id=profile_id,
        external_user_id=str(app_settings.EXTERNAL_USER_ID(user)).strip(),
        external_user_email=email,
        allow_quickstart_creds=quickstart,
        next_url=next_url,
    )
    try:
        remote = client.create_session(
            platform=platform,
            external_user_id=session.external_user_id,
            external_user_email=email or None,
            return_url=return_url,
            profile_id=profile_id or None,
            allow_quickstart_creds=quickstart,
        )
    except UniPostError as exc:
        _record_error(session, exc, status=ConnectSession.Status.FAILED)
        logger.warning("Connect session %s failed to start: %s", session.pk, exc.code)
        raise
    except Exception as exc:
        # Not UniPost's doing (a bug, say): still, no row is left pending without a url.
        unexpected = UniPostError(f"Unexpected {type(exc).__name__} while starting.", code="INTERNAL_ERROR")
        _record_error(session, unexpected, status=ConnectSession.Status.FAILED)
        raise
    session.unipost_session_id = remote.id
    session.url = remote.url
    session.expires_at = remote.expires_at or session.created_at + SESSION_LIFETIME
    session.request_id = remote.request_id
    session.save(update_fields=["unipost_session_id", "url", "expires_at", "request_id", "updated_at"])
    return session


def _reusable_session(user: _User, platform: str, profile_id: str, quickstart: bool) -> ConnectSession | None:
    """The user's newest pending session for the same target with enough time left."""
    min_remaining = app_settings.REUSE_MIN_REMAINING
    return (
        ConnectSession.objects.filter(
            user=user,
            platform=platform,
            profile_id=profile_id,
            allow_quickstart_creds=quickstart,
            status=ConnectSession.Status.PENDING,
            expires_at__gte=timezone.now() + timedelta(seconds=min_remaining),
        )
        .exclude(url="")
        .exclude(unipost_session_id=None)
        .order_by("-created_at")
        .first()
    )


def _still_pending(session: ConnectSession, client: UniPostClient) -> ConnectSession | None:
    """``session`` if UniPost still has it pending: the user may have finished (or
    refused) on the hosted page without coming back, and its link is then dead."""
    try:
        reconcile_session(session, client=client)
    except UniPostError:
        return None  # unsure: a fresh session is the safe choice
    return session if session.is_pending else None


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
        "error_code": exc.code[:64],
        "error_message": exc.message,
        "request_id": exc.request_id[:128],
        "updated_at": timezone.now(),
        **(extra_fields or {}),
    }
    with transaction.atomic(savepoint=False):
        query = ConnectSession.objects.filter(pk=session.pk)
        if status is not None:
            fields["status"] = status
            changed = query.filter(status=ConnectSession.Status.PENDING).update(**fields)
            if changed:
                _set(session, fields)
                _on_commit_ended(session, status)
        else:
            query.update(**fields)
    session.refresh_from_db()


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

    ``extra_fields`` are written in the same UPDATE when the state changes.
    """
    if remote.status == "completed":
        if not remote.managed_account_id:
            raise UniPostResponseError(
                "UniPost reports the session completed but names no managed_account_id.",
                request_id=remote.request_id,
            )
        return complete_session(
            session,
            remote.managed_account_id,
            completed_at=remote.completed_at,
            extra_fields=extra_fields,
        )
    if remote.status in ("expired", "cancelled"):
        return end_session(session, remote.status, extra_fields=extra_fields)
    if remote.status != "pending":
        logger.warning(
            "UniPost reported unknown status %r for connect session %s; leaving it pending.",
            remote.status[:32],
            session.pk,
        )
    elif remote.expires_at and remote.expires_at != session.expires_at:
        ConnectSession.objects.filter(pk=session.pk).update(expires_at=remote.expires_at)
        session.expires_at = remote.expires_at
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
    """
    values = {
        "user_id": user_id,
        "platform": platform,
        "account_name": account_name[:255],
        "external_user_id": external_user_id,
        "profile_id": profile_id[:128],
    }
    with transaction.atomic(savepoint=False):
        account = (
            ConnectedAccount.objects.select_for_update().filter(managed_account_id=managed_account_id).first()
        )
        created = False
        if account is None:
            account = _insert_account_if_absent(managed_account_id, values)
            created = account is not None
            if account is None:  # another worker inserted it since our read: refresh theirs
                account = ConnectedAccount.objects.select_for_update().get(
                    managed_account_id=managed_account_id
                )
        reactivated = False
        if not created:
            reactivated = account.status != ConnectedAccount.Status.ACTIVE
            account.user_id = user_id
            account.platform = platform or account.platform
            account.account_name = values["account_name"] or account.account_name
            account.external_user_id = external_user_id or account.external_user_id
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


def _column(field: Field[Any, Any]) -> str:
    # The stubs allow a column of None (a field not yet attached to a model); every
    # concrete field of an installed model has one.
    return cast(str, field.column)


def _insert_account_if_absent(managed_account_id: str, values: Mapping[str, Any]) -> ConnectedAccount | None:
    """Insert the account unless the row exists; the new row, or None if it was there.

    One statement, no savepoint: ``INSERT … ON CONFLICT DO NOTHING RETURNING`` answers a
    row only when this call inserted it, which is how exactly one of several racing
    workers learns that it created the account. Other databases use get_or_create.
    """
    now = timezone.now()
    account = ConnectedAccount(
        managed_account_id=managed_account_id,
        status=ConnectedAccount.Status.ACTIVE,
        connected_at=now,
        created_at=now,
        updated_at=now,
        **values,
    )
    connection = connections[router.db_for_write(ConnectedAccount)]
    # ON CONFLICT … RETURNING: PostgreSQL, and SQLite from 3.35 (Django 5.2 allows 3.31).
    if connection.vendor not in ("postgresql", "sqlite") or not (
        connection.features.can_return_columns_from_insert
    ):
        with transaction.atomic():
            account, created = ConnectedAccount.objects.get_or_create(
                managed_account_id=managed_account_id, defaults=dict(values)
            )
        return account if created else None
    meta = ConnectedAccount._meta
    columns = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(_column(f)) for f in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({quote(_column(meta.get_field('managed_account_id')))}) DO NOTHING "
        f"RETURNING {quote(_column(meta.pk))}"
    )
    params = [f.get_db_prep_save(getattr(account, f.attname), connection) for f in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    account.pk = row[0]
    account._state.adding = False
    return account


# -- webhooks --------------------------------------------------------------------


def webhook_event_key(payload: Mapping[str, Any], raw_body: bytes) -> str:
    event_id = payload.get("event_id")
    if isinstance(event_id, str) and event_id.strip():
        return event_id.strip()[:128]
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
    event_type = str(payload.get("event") or "")[:64]
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = WebhookEvent.objects.create(
                    event_key=key,
                    event_type=event_type,
                    delivery_id=delivery_id[:128],
                    payload=dict(payload),
                )
        except IntegrityError:
            return WebhookOutcome(WebhookEvent.objects.get(event_key=key), duplicate=True)
        data = payload.get("data")
        data = data if isinstance(data, Mapping) else {}
        if event_type == "account.connected":
            result, detail = _apply_account_connected(data, _event_time(payload))
        elif event_type == "account.disconnected":
            result, detail = _apply_account_disconnected(data)
        else:
            result, detail = WebhookEvent.Result.IGNORED, "Event type not handled."
        event.result = result
        event.detail = detail
        event.processed_at = timezone.now()
        event.save(update_fields=["result", "detail", "processed_at"])
    return WebhookOutcome(event, duplicate=False)


def _apply_account_connected(data: Mapping[str, Any], at: datetime | None) -> tuple[str, str]:
    account_id = str(data.get("social_account_id") or "").strip()
    platform = str(data.get("platform") or "").strip().lower()
    external_user_id = str(data.get("external_user_id") or "").strip()
    account_name = str(data.get("account_name") or "")
    profile_id = str(data.get("profile_id") or "")
    connection_type = data.get("connection_type")
    ignored = WebhookEvent.Result.IGNORED
    if not account_id or not external_user_id:
        return ignored, "No social_account_id or external_user_id (not a Connect account)."
    if isinstance(connection_type, str) and connection_type and connection_type.lower() != "managed":
        return ignored, f"connection_type {connection_type[:32]!r} is not a Connect account."
    # Values our columns cannot hold would fail the insert (and make UniPost retry a
    # delivery that can never succeed): keep the event, apply nothing.
    if len(account_id) > 128 or len(external_user_id) > 256 or not platform or len(platform) > 32:
        return ignored, "social_account_id, external_user_id or platform is malformed."
    pending = _session_for_event(external_user_id, platform, account_id, at)
    if pending is not None and not _surely_before(pending, at):
        # Created in the same second as the event (or the event has no time): only
        # UniPost can say whether this is the session the account came from.
        pending = _confirmed_by_unipost(pending, account_id)
    if pending is not None:
        completed_at = min(at, timezone.now()) if at is not None else None
        completed = complete_session(
            pending,
            account_id,
            account_name=account_name,
            profile_id=profile_id,
            completed_at=completed_at,
        )
        if completed:
            return WebhookEvent.Result.APPLIED, f"Completed session {pending.pk}."
        owner_id = pending.user_id
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
    upsert_account(
        user_id=owner_id,
        managed_account_id=account_id,
        platform=platform,
        account_name=account_name,
        external_user_id=external_user_id,
        profile_id=profile_id,
    )
    return WebhookEvent.Result.APPLIED, f"Account {account_id} recorded."


def _session_for_event(
    external_user_id: str, platform: str, account_id: str, at: datetime | None
) -> ConnectSession | None:
    """The pending session an ``account.connected`` event completes, if any.

    The event names no session, so this is the newest pending one of that user and
    platform that UniPost had created *before* the event happened. Both times are on
    UniPost's clock: the event's ``timestamp``, and the session's creation, which is its
    ``expires_at`` less the 30-minute lifetime. A session created at or after the event
    cannot be the one it completes (say the user connected, came back, and at once
    started again: the first session's late webhook must not complete the second). When
    the two fall in the same second the session is left alone, to be settled by its
    own return or by the reconcile command, which ask UniPost; the account is recorded
    either way.

    Nor is it that session when this very account was already recorded on a session
    created after it, or completed after it was created: the event is then the echo of
    that completion.
    """
    sessions = ConnectSession.objects.filter(external_user_id=external_user_id, platform=platform)
    echo = sessions.filter(
        Q(completed_at__gte=OuterRef("created_at")) | Q(created_at__gte=OuterRef("created_at")),
        status=ConnectSession.Status.COMPLETED,
        managed_account_id=account_id,
    )
    candidates = sessions.filter(status=ConnectSession.Status.PENDING).exclude(unipost_session_id=None)
    if at is not None:
        # Created at UniPost no later than the event's second (times have whole seconds).
        candidates = candidates.filter(expires_at__lt=at + SESSION_LIFETIME + timedelta(seconds=1))
    # Being an echo carries over to every older candidate, so filtering them out one by
    # one answers the same as looking at the newest alone.
    return candidates.filter(~Exists(echo)).order_by("-created_at").first()


def _surely_before(session: ConnectSession, at: datetime | None) -> bool:
    """True when UniPost created ``session`` in an earlier second than the event at ``at``."""
    if at is None or session.expires_at is None:
        return False
    created = session.expires_at - SESSION_LIFETIME
    return created.replace(microsecond=0) < at.replace(microsecond=0)


def _confirmed_by_unipost(session: ConnectSession, account_id: str) -> ConnectSession | None:
    """``session`` if UniPost reports it completed with ``account_id``, else None."""
    try:
        # One attempt: the webhook must answer within UniPost's 5 seconds.
        remote = get_client().get_session(session.unipost_session_id or "", max_retries=0)
    except UniPostError as exc:
        logger.warning(
            "Could not confirm connect session %s for a webhook (%s); leaving it to reconcile.",
            session.pk,
            exc.code,
        )
        return None
    if remote.status == "completed" and remote.managed_account_id == account_id:
        return session
    return None


def _event_time(payload: Mapping[str, Any]) -> datetime | None:
    """The event's ``timestamp`` (UniPost's clock) as an aware datetime, if it is one."""
    value = payload.get("timestamp")
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value.strip())
        if parsed is None:
            return None
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    # Nonsense at the edges of the calendar, with no room for clock-skew arithmetic.
    return parsed if 1 < parsed.year < 9999 else None


def _apply_account_disconnected(data: Mapping[str, Any]) -> tuple[str, str]:
    account_id = str(data.get("social_account_id") or "")
    account = ConnectedAccount.objects.filter(managed_account_id=account_id).first()
    if account is None:
        return WebhookEvent.Result.UNKNOWN_USER, f"No local account {account_id!r}."
    mark_disconnected(account)
    return WebhookEvent.Result.APPLIED, f"Account {account_id} disconnected."


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
