"""What the connections page shows: a card per platform with the owner's accounts on it
and what the user may do, and the user's recent attempts in words. No HTTP here; the
view renders it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .accounts import can_manage
from .models import ConnectedAccount, ConnectSession
from .platforms import PLATFORM_STYLES, label
from .user_messages import attempt_outcome

if TYPE_CHECKING:
    from django.contrib.auth.models import _AnyUser

_FALLBACK_STYLE = ("#4a4a4a", "?")


@dataclass(frozen=True)
class AccountOnCard:
    account: ConnectedAccount
    can_manage: bool

    @property
    def needs_reconnect(self) -> bool:
        return self.account.status == ConnectedAccount.Status.RECONNECT_REQUIRED


@dataclass(frozen=True)
class PlatformCard:
    platform: str
    label: str
    colour: str
    monogram: str
    accounts: tuple[AccountOnCard, ...]
    # Whether the user may start a session for this platform from the card: anyone for a
    # platform with no account yet; for one needing a reconnect, those who may manage it.
    can_connect: bool

    @property
    def state(self) -> str:
        """``reconnect`` (an account needs it), ``connected`` or ``none``."""
        if any(item.needs_reconnect for item in self.accounts):
            return "reconnect"
        return "connected" if self.accounts else "none"


@dataclass(frozen=True)
class Attempt:
    session: ConnectSession
    label: str
    outcome: str


def platform_cards(
    user: _AnyUser, platforms: Sequence[str], accounts: Iterable[ConnectedAccount]
) -> list[PlatformCard]:
    """One card per platform, in ``platforms``' order, with its live accounts (the
    disconnected ones are history, not shown)."""
    live: dict[str, list[AccountOnCard]] = {platform: [] for platform in platforms}
    for account in accounts:
        if account.platform in live and account.status != ConnectedAccount.Status.DISCONNECTED:
            live[account.platform].append(AccountOnCard(account, can_manage(user, account)))
    cards = []
    for platform in platforms:
        colour, monogram = PLATFORM_STYLES.get(platform, _FALLBACK_STYLE)
        items = tuple(live[platform])
        blocked = [item for item in items if item.needs_reconnect and not item.can_manage]
        cards.append(
            PlatformCard(platform, label(platform), colour, monogram, items, can_connect=not blocked)
        )
    return cards


def attempts(sessions: Iterable[ConnectSession]) -> list[Attempt]:
    return [Attempt(session, label(session.platform), attempt_outcome(session)) for session in sessions]
