"""Starting a connect session for a user: one session at UniPost per user and target,
however often the user clicks (a double click, a second tab), and nothing sent that
UniPost would refuse."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from . import bounds, platforms
from . import client as client_module
from .client import RemoteSession, UniPostClient, get_client
from .conf import app_settings
from .contract import EXTERNAL_USER_ID_MAX_BYTES, SESSION_LIFETIME
from .db import delete_row, insert_unless_constrained, mirror
from .errors import (
    UniPostConnectionError,
    UniPostError,
    UniPostResponseError,
    UniPostValidationError,
    error_from_record,
)
from .models import ConnectSession
from .sessions import apply_remote_session, check_about, record_error, storable

if TYPE_CHECKING:
    # ``_User`` is django-stubs' name for "the AUTH_USER_MODEL": its mypy plugin resolves it
    # to the project's user model, so callers are checked against their own model.
    from django.contrib.auth.models import _User

logger = logging.getLogger("unipost_connect")


class UnknownPlatformError(ValueError):
    """The platform is not one of the site's ``PLATFORMS``."""


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
    popup: bool = False,
    client: UniPostClient | None = None,
) -> ConnectSession:
    """Start (or reuse) a connect session for ``user`` and return it; redirect to ``.url``.

    The local row is saved before UniPost is called. If the call fails the row is kept
    as ``failed`` with the error code, message and request id, and the
    :class:`~unipost_connect.errors.UniPostError` is raised.

    Concurrent starts for the same user and target (a double click, two tabs) make one
    session at UniPost: the later ones wait for the first and return its session, or
    raise :class:`StartInProgressError` if it takes longer than ``START_WAIT`` seconds.

    ``popup``: the hosted page opens in a popup window, so the return view answers a
    page that reports the outcome to the window that opened it.
    """
    platform = platforms.normalize(platform)
    if platform not in app_settings.PLATFORMS:
        raise UnknownPlatformError(f"{platform!r} is not an allowed platform.")
    # Before any row is written: a configuration error leaves nothing half-made.
    client = client or get_client()
    wanted = _Wanted.of(user, platform, request)
    session_id = uuid.uuid4()
    return_url = build_return_url(session_id, request)
    session = _claim_start(wanted.target, client, wanted.new_row(session_id, next_url, popup))
    if session.pk != session_id:  # another request's session, or one still pending
        if (session.next_url, session.popup) != (next_url, popup):
            session.next_url, session.popup = next_url, popup
            session.save(update_fields=["next_url", "popup", "updated_at"])
        return session
    try:
        _create(session, client, wanted, return_url)
    except UniPostError as exc:
        record_error(session, exc, status=ConnectSession.Status.FAILED)
        logger.warning("Connect session %s failed to start: %s", session.pk, exc.code)
        raise
    except Exception as exc:
        # Not UniPost's doing (a bug, say): still, no row is left pending without a url.
        unexpected = UniPostError(f"Unexpected {type(exc).__name__} while starting.", code="INTERNAL_ERROR")
        record_error(session, unexpected, status=ConnectSession.Status.FAILED)
        raise
    return session


def _create(session: ConnectSession, client: UniPostClient, wanted: _Wanted, return_url: str) -> None:
    """Ask UniPost for the session and record its answer on ``session``'s row."""
    check_external_user_id(wanted.external_user_id)
    _check_profile_id(wanted.profile_id)
    remote = client.create_session(
        platform=wanted.target.platform,
        external_user_id=wanted.external_user_id,
        external_user_email=wanted.email or None,
        return_url=return_url,
        profile_id=wanted.profile_id or None,
        allow_quickstart_creds=wanted.target.quickstart,
    )
    _store_created(session, remote)


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


@dataclass(frozen=True)
class _Wanted:
    """What this start would send to UniPost, as the site's settings give it, and the
    target it is for (stored values are bounded; these are sent as they are)."""

    target: _Target
    external_user_id: str
    email: str
    profile_id: str

    @classmethod
    def of(cls, user: Any, platform: str, request: HttpRequest | None) -> _Wanted:
        profile_id = app_settings.profile_id_for(user, request) or ""
        return cls(
            target=_Target(
                user=user,
                platform=platform,
                profile_id=bounds.clip(profile_id, ConnectSession, "profile_id"),
                quickstart=app_settings.ALLOW_QUICKSTART_CREDS,
            ),
            external_user_id=app_settings.owner_key(user),
            email=(getattr(user, "email", "") or "") if app_settings.SEND_USER_EMAIL else "",
            profile_id=profile_id,
        )

    def new_row(self, session_id: uuid.UUID, next_url: str, popup: bool) -> ConnectSession:
        return ConnectSession(
            id=session_id,
            user=self.target.user,
            platform=self.target.platform,
            profile_id=self.target.profile_id,
            external_user_id=bounds.clip(self.external_user_id, ConnectSession, "external_user_id"),
            external_user_email=bounds.clip(self.email, ConnectSession, "external_user_email"),
            allow_quickstart_creds=self.target.quickstart,
            next_url=next_url,
            popup=popup,
        )


def _claim_start(target: _Target, client: UniPostClient, new: ConnectSession) -> ConnectSession:
    """``new``, saved, when this request is the one to call UniPost; else the session to use.

    The database decides who calls UniPost: the unique constraint
    ``unipost_cs_one_start_in_flight`` admits one row without UniPost's id per target, so
    of several concurrent requests exactly one inserts; the others wait for its answer.
    """
    deadline = time.monotonic() + START_WAIT
    while True:
        if insert_unless_constrained(new):
            # This request holds the target, so the look-up for a session to reuse comes
            # after the insert: any answer another request wrote before it is visible now
            # (the insert could only pass once it was), and none can be written after.
            # A new session, the common case, costs one look-up; a reuse an extra DELETE.
            reusable = _reusable_session(target)
            if reusable is not None and _still_pending(reusable, client):
                delete_row(new)  # nothing refers to it yet: no reverse keys, never signalled
                return reusable
            return new
        reusable = _reusable_session(target)
        if reusable is not None and _still_pending(reusable, client):
            return reusable
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
    record_error(session, abandoned, status=ConnectSession.Status.FAILED)


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
        "unipost_session_id": storable(remote, remote.id, ConnectSession, "unipost_session_id", "id"),
        "url": storable(remote, remote.url, ConnectSession, "url", "url"),
        "request_id": bounds.clip(remote.request_id, ConnectSession, "request_id"),
    }
    check_about(session, remote, check_id=False)
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
        mirror(session, fields)
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
