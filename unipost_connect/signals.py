"""Signals a site can hook into. All are sent after the database transaction commits."""

from __future__ import annotations

from django.dispatch import Signal

# A connect session completed and produced an account. Sent exactly once per session,
# whichever of the return view, the webhook or the reconcile command saw it first.
# kwargs: sender=ConnectSession, session: ConnectSession, account: ConnectedAccount
connect_session_completed = Signal()

# A connect session ended without an account: expired, cancelled by the user, or
# failed to start. Sent once per session and terminal status.
# kwargs: sender=ConnectSession, session: ConnectSession, status: str
connect_session_ended_without_account = Signal()

# A managed account became active for a local user (new, or reconnected).
# kwargs: sender=ConnectedAccount, account: ConnectedAccount, created: bool
account_connected = Signal()

# A managed account was disconnected (by the user here, in UniPost, or token loss).
# kwargs: sender=ConnectedAccount, account: ConnectedAccount
account_disconnected = Signal()
