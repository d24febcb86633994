"""Signals a site can hook into.

All are sent after the database transaction that made the change commits (never for a
change that was rolled back), once, by whichever worker made it: the return view, the
webhook view, the reconcile command or the admin. The objects they carry are snapshots
taken at that change. The change is already saved when a receiver runs, so a receiver
that raises does not undo it, and it is not sent again: make slow or fallible work a
task of its own.
"""

from __future__ import annotations

from django.dispatch import Signal

# A connect session completed and produced an account. Sent exactly once per session,
# whichever of the return view, the webhook or the reconcile command saw it first.
# kwargs: sender=ConnectSession, session: ConnectSession, account: ConnectedAccount
connect_session_completed = Signal()

# A connect session ended without an account: expired, cancelled by the user, failed
# to start, or (status "completed") completed at UniPost with an account that belongs to
# another local user, which is never moved (the session's error_code is ACCOUNT_CONFLICT).
# Sent once per session. A session marked expired here can still
# complete afterwards (a late webhook or read proves UniPost completed it in time); it
# then sends connect_session_completed too.
# kwargs: sender=ConnectSession, session: ConnectSession, status: str
connect_session_ended_without_account = Signal()

# A managed account became active for a local user: new (created=True), or back from
# disconnected (created=False). Not sent when an active account is merely refreshed (say
# a new name), nor for a reconnect (account_reconnected).
# kwargs: sender=ConnectedAccount, account: ConnectedAccount, created: bool
account_connected = Signal()

# A managed account was disconnected: by the user here or in UniPost's dashboard (an
# ``account.disconnected`` webhook with reason ``user_initiated``, missing or unknown).
# kwargs: sender=ConnectedAccount, account: ConnectedAccount
account_disconnected = Signal()

# UniPost could not refresh a managed account's token (reason ``refresh_failed``,
# ``missing_refresh_token`` or ``decrypt_failed``). The account still exists at UniPost,
# now ``reconnect_required``: a new connect session for the same owner and platform
# brings the same managed account back. Sent once per change to that status; the reason
# is "accounts_list" when the status sync saw it first.
# kwargs: sender=ConnectedAccount, account: ConnectedAccount, reason: str
account_needs_reconnect = Signal()

# An account that needed a reconnect is active again: a reconnect session completed with
# the same managed account (or UniPost's list says it is active again). Sent once.
# kwargs: sender=ConnectedAccount, account: ConnectedAccount
account_reconnected = Signal()
