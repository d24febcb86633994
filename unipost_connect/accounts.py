"""A site's managed accounts: created or refreshed once per ``managed_account_id``,
never moved between owners; disconnected, needing a reconnect, reconnected, or synced
from UniPost's list. Each change is a conditional UPDATE and signals once, after commit.

An account's owner is the end user UniPost holds it for, its ``external_user_id``: every
local user whose ``EXTERNAL_USER_ID`` gives that key (a team's members, say) shares it.
``ConnectedAccount.user`` is the one who connected it."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import bounds, signals
from .client import UniPostClient, get_client
from .conf import app_settings
from .db import change_once, insert_unless_conflict
from .errors import NotFoundError
from .models import ConnectedAccount

if TYPE_CHECKING:
    from django.contrib.auth.models import _AnyUser

logger = logging.getLogger("unipost_connect")

ACCOUNT_CONFLICT = "ACCOUNT_CONFLICT"


def user_accounts(user: _AnyUser) -> QuerySet[ConnectedAccount]:
    """The accounts of ``user``'s owner (``EXTERNAL_USER_ID``), whatever their status: by
    platform, newest first. Teammates mapped to one key see the same accounts."""
    if user.pk is None:  # an anonymous (or unsaved) user has none
        return ConnectedAccount.objects.none()
    # A row without an owner key (none was known when it was stored, and migration 0006
    # found none) stays its connecting user's.
    mine = Q(external_user_id="", user_id=user.pk)
    owner = app_settings.owner_key(user)
    if owner:
        mine |= Q(external_user_id=owner)
    return ConnectedAccount.objects.filter(mine).order_by("platform", "-connected_at")


def button_accounts(accounts: Iterable[ConnectedAccount]) -> dict[str, ConnectedAccount]:
    """Per platform, the account its connect button speaks of: one that needs a
    reconnect first, else the newest live one (``accounts`` newest first per platform)."""
    chosen: dict[str, ConnectedAccount] = {}
    for account in accounts:
        if account.status == ConnectedAccount.Status.DISCONNECTED:
            continue
        current = chosen.get(account.platform)
        if current is None or (
            account.status == ConnectedAccount.Status.RECONNECT_REQUIRED
            and current.status != ConnectedAccount.Status.RECONNECT_REQUIRED
        ):
            chosen[account.platform] = account
    return chosen


def can_manage(user: _AnyUser, account: ConnectedAccount) -> bool:
    """Whether ``user`` may disconnect or reconnect ``account`` (``CAN_MANAGE_ACCOUNT``)."""
    return bool(app_settings.CAN_MANAGE_ACCOUNT(user, account))


def owned_by(account: ConnectedAccount, *, external_user_id: str, user_id: Any) -> bool:
    """Whether ``account`` is the owner's that ``external_user_id`` names; for a row
    without an owner key (none was known), whether ``user_id`` connected it."""
    if account.external_user_id and external_user_id:
        return account.external_user_id == external_user_id
    return bool(account.user_id == user_id)


def conflict_fields(account: ConnectedAccount, user_id: Any) -> dict[str, str]:
    """What staff see on a session whose account already belongs to another owner."""
    return {
        "error_code": ACCOUNT_CONFLICT,
        "error_message": (
            f"UniPost account {account.managed_account_id} belongs to another owner "
            f"(connected by local user #{account.user_id}), not to this session's user "
            f"#{user_id}; it was not moved."
        ),
    }


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

    Sends, after commit and once even when several workers upsert the same account at
    once: ``account_connected`` when the account is new or comes back from disconnected,
    ``account_reconnected`` when it comes back from ``reconnect_required``. An existing
    account of another owner is returned untouched, never moved or changed: see
    :func:`owned_by`. ``user_id`` is recorded only on a new row (who connected it).
    """
    values = {
        "user_id": user_id,
        "platform": platform,
        "account_name": bounds.clip(account_name, ConnectedAccount, "account_name"),
        "external_user_id": bounds.clip(external_user_id, ConnectedAccount, "external_user_id"),
        "profile_id": profile_id if bounds.fits(profile_id, ConnectedAccount, "profile_id") else "",
    }
    with transaction.atomic(savepoint=False):
        account, created = _locked_or_inserted(managed_account_id, values)
        owner = values["external_user_id"]
        if not created and not owned_by(account, external_user_id=owner, user_id=user_id):
            # Another owner's account: neither moved nor changed on this user's behalf.
            logger.warning(
                "UniPost account %s belongs to another owner (local user #%s); not moved to user #%s.",
                managed_account_id,
                account.user_id,
                user_id,
            )
            return account
        was = None if created else _refresh(account, values)
        snapshot = copy.copy(account)
        if was == ConnectedAccount.Status.RECONNECT_REQUIRED:
            transaction.on_commit(
                lambda: signals.account_reconnected.send(sender=ConnectedAccount, account=snapshot)
            )
        elif created or was == ConnectedAccount.Status.DISCONNECTED:
            transaction.on_commit(
                lambda: signals.account_connected.send(
                    sender=ConnectedAccount, account=snapshot, created=created
                )
            )
    return account


def _locked_or_inserted(managed_account_id: str, values: dict[str, Any]) -> tuple[ConnectedAccount, bool]:
    """The account's row, locked for this transaction, and whether this call created it."""
    account = (
        ConnectedAccount.objects.select_for_update().filter(managed_account_id=managed_account_id).first()
    )
    if account is not None:
        return account, False
    account = ConnectedAccount(
        managed_account_id=managed_account_id,
        status=ConnectedAccount.Status.ACTIVE,
        connected_at=timezone.now(),
        **values,
    )
    if insert_unless_conflict(account):
        return account, True
    # Another worker inserted it since our read: theirs, locked.
    return ConnectedAccount.objects.select_for_update().get(managed_account_id=managed_account_id), False


def _refresh(account: ConnectedAccount, values: dict[str, Any]) -> str:
    """Bring an existing account up to date and active; the status it had."""
    was = account.status
    account.platform = values["platform"] or account.platform
    account.account_name = values["account_name"] or account.account_name
    account.external_user_id = account.external_user_id or values["external_user_id"]
    account.profile_id = values["profile_id"] or account.profile_id
    account.status = ConnectedAccount.Status.ACTIVE
    if was == ConnectedAccount.Status.DISCONNECTED:
        # A new connection; a reconnect keeps its connected_at, as UniPost does.
        account.connected_at = timezone.now()
        account.disconnected_at = None
    account.save()
    return str(was)


def mark_disconnected(account: ConnectedAccount) -> bool:
    """Mark the account disconnected locally, once; sends ``account_disconnected``."""
    now = timezone.now()
    return change_once(
        account,
        ConnectedAccount.objects.exclude(status=ConnectedAccount.Status.DISCONNECTED),
        {"status": ConnectedAccount.Status.DISCONNECTED, "disconnected_at": now, "updated_at": now},
        lambda snapshot: signals.account_disconnected.send(sender=ConnectedAccount, account=snapshot),
    )


def mark_reconnect_required(account: ConnectedAccount, *, reason: str) -> bool:
    """Mark an active account ``reconnect_required``, once; sends ``account_needs_reconnect``."""
    return change_once(
        account,
        ConnectedAccount.objects.filter(status=ConnectedAccount.Status.ACTIVE),
        {"status": ConnectedAccount.Status.RECONNECT_REQUIRED, "updated_at": timezone.now()},
        lambda snapshot: signals.account_needs_reconnect.send(
            sender=ConnectedAccount, account=snapshot, reason=reason
        ),
    )


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


# (connect, read) seconds for a read a user waits on (the name after the return): the
# webhook brings the name anyway, so it is not worth a slow page.
QUICK_TIMEOUT = (1.0, 2.0)

# The reason account_needs_reconnect carries when the status sync, not a webhook, saw it.
SYNC_REASON = "accounts_list"


def sync_account_statuses(
    external_user_id: str,
    *,
    platform: str | None = None,
    profile_id: str | None = None,
    client: UniPostClient | None = None,
    quick: bool = False,
) -> int:
    """Copy UniPost's ``active`` / ``reconnect_required`` onto the owner's local accounts,
    and the name of an account that has none here yet (a return can complete a session
    before the webhook that carries the name). ``platform`` and ``profile_id`` narrow the
    list as UniPost's filters do. ``quick``: one attempt with short timeouts
    (:data:`QUICK_TIMEOUT`), for a user waiting on it.

    Only those two statuses are trusted from the list (another is ignored): an account
    missing from it is left as it is (``account.disconnected`` webhooks report
    disconnections). A change of status signals as a webhook's would, once:
    ``account_needs_reconnect`` (reason ``"accounts_list"``) or ``account_reconnected``.
    Returns how many rows changed. Raises :class:`~unipost_connect.errors.UniPostError`.
    """
    listed = (client or get_client()).list_accounts(
        external_user_id=external_user_id,
        platform=platform,
        profile_id=profile_id,
        max_retries=0 if quick else None,
        timeout=QUICK_TIMEOUT if quick else None,
    )
    remote = {
        account.id: account
        for account in listed
        if account.status in (ConnectedAccount.Status.ACTIVE, ConnectedAccount.Status.RECONNECT_REQUIRED)
    }
    changed = 0
    local = ConnectedAccount.objects.filter(
        external_user_id=external_user_id, managed_account_id__in=list(remote)
    ).exclude(status=ConnectedAccount.Status.DISCONNECTED)
    for account in local:
        theirs = remote[account.managed_account_id]
        fields: dict[str, Any] = {}
        if account.status != theirs.status:
            fields["status"] = theirs.status
        if not account.account_name and theirs.account_name:
            fields["account_name"] = bounds.clip(theirs.account_name, ConnectedAccount, "account_name")
        if not fields:
            continue
        fields["updated_at"] = timezone.now()
        # Conditional on what was read: a concurrent change (a webhook) wins.
        due = ConnectedAccount.objects.filter(status=account.status, account_name=account.account_name)
        changed += change_once(account, due, fields, _announce_status(account.status, fields.get("status")))
    return changed


def _announce_status(was: str, now: str | None) -> Callable[[ConnectedAccount], object]:
    """What a sync's change tells receivers: a status change signals, a name does not."""
    if now == ConnectedAccount.Status.RECONNECT_REQUIRED:
        return lambda snapshot: signals.account_needs_reconnect.send(
            sender=ConnectedAccount, account=snapshot, reason=SYNC_REASON
        )
    if now == ConnectedAccount.Status.ACTIVE and was == ConnectedAccount.Status.RECONNECT_REQUIRED:
        return lambda snapshot: signals.account_reconnected.send(sender=ConnectedAccount, account=snapshot)
    return lambda snapshot: None
