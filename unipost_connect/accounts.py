"""A site's managed accounts: created or refreshed once per ``managed_account_id``,
never moved between local users; disconnected, needing a reconnect, or synced from
UniPost's list. Each change is a conditional UPDATE and signals once, after commit."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import bounds, signals
from .client import UniPostClient, get_client
from .db import change_once, insert_unless_conflict
from .errors import NotFoundError
from .models import ConnectedAccount

if TYPE_CHECKING:
    from django.contrib.auth.models import _AnyUser

logger = logging.getLogger("unipost_connect")

ACCOUNT_CONFLICT = "ACCOUNT_CONFLICT"


def user_accounts(user: _AnyUser) -> QuerySet[ConnectedAccount]:
    """The accounts ``user`` connected, whatever their status: by platform, newest first."""
    if user.pk is None:  # an anonymous (or unsaved) user has none
        return ConnectedAccount.objects.none()
    return ConnectedAccount.objects.filter(user_id=user.pk).order_by("platform", "-connected_at")


def conflict_fields(account: ConnectedAccount, user_id: Any) -> dict[str, str]:
    """What staff see on a session whose account already belongs to another local user."""
    return {
        "error_code": ACCOUNT_CONFLICT,
        "error_message": (
            f"UniPost account {account.managed_account_id} belongs to local user #{account.user_id}, "
            f"not to this session's user #{user_id}; it was not moved."
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
        account, created = _locked_or_inserted(managed_account_id, values)
        if not created and account.user_id != user_id:
            # Another local user's account: neither moved nor changed on this user's behalf.
            logger.warning(
                "UniPost account %s belongs to local user #%s; not moved to user #%s.",
                managed_account_id,
                account.user_id,
                user_id,
            )
            return account
        reactivated = not created and _refresh(account, values)
        if created or reactivated:
            snapshot = copy.copy(account)
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


def _refresh(account: ConnectedAccount, values: dict[str, Any]) -> bool:
    """Bring an existing account up to date and active; True if it was not active."""
    reactivated = account.status != ConnectedAccount.Status.ACTIVE
    account.platform = values["platform"] or account.platform
    account.account_name = values["account_name"] or account.account_name
    account.external_user_id = values["external_user_id"] or account.external_user_id
    account.profile_id = values["profile_id"] or account.profile_id
    account.status = ConnectedAccount.Status.ACTIVE
    if reactivated:
        account.connected_at = timezone.now()
        account.disconnected_at = None
    account.save()
    return reactivated


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


def sync_account_statuses(external_user_id: str, *, client: UniPostClient | None = None) -> int:
    """Copy UniPost's ``active`` / ``reconnect_required`` onto the user's local accounts,
    and the name of an account that has none here yet (a return can complete a session
    before the webhook that carries the name).

    Only those two statuses are trusted from the list: an account missing from it is
    left as it is (``account.disconnected`` webhooks report disconnections). Returns how
    many rows changed. Raises :class:`~unipost_connect.errors.UniPostError`.
    """
    remote = {
        account.id: account
        for account in (client or get_client()).list_accounts(external_user_id=external_user_id)
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
        if fields:
            # Conditional on what was read: a concurrent change (a webhook) wins.
            changed += ConnectedAccount.objects.filter(
                pk=account.pk, status=account.status, account_name=account.account_name
            ).update(**fields, updated_at=timezone.now())
    return changed
