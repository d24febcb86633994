"""Facts of UniPost's API that the app and its fake both follow (see the README's
"How it works"); one place, so the two cannot drift apart."""

from __future__ import annotations

from datetime import timedelta

DEFAULT_BASE_URL = "https://api.unipost.dev"

# A connect session lives this long from its creation; expiry is lazy (on read).
SESSION_LIFETIME = timedelta(minutes=30)
# A session in one of these is done for good; any other status than "pending" is unknown.
TERMINAL_STATUSES = frozenset({"completed", "expired", "cancelled"})

# UniPost counts ``external_user_id`` in bytes of UTF-8, after trimming.
EXTERNAL_USER_ID_MAX_BYTES = 256

# ``account.disconnected`` reasons meaning UniPost could not refresh the token: the
# account still exists there (``reconnect_required``). Any other reason is a disconnect.
REFRESH_FAILURE_REASONS = frozenset({"refresh_failed", "missing_refresh_token", "decrypt_failed"})
