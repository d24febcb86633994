"""Checks of values that come from outside (settings, UniPost, the browser), with no
knowledge of models: an http(s) URL safe for a ``Location`` header, a safe place on this
site to send the user on to, an RFC 3339 time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.utils.http import url_has_allowed_host_and_scheme

if TYPE_CHECKING:
    from django.http import HttpRequest


def parse_datetime(value: Any) -> datetime | None:
    """Parse an RFC 3339 timestamp into UTC; anything unparseable is ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        # In UTC here, so a value at the edge of the calendar ("0001-01-01T00:00:00+14:00")
        # fails now rather than with an OverflowError when the database stores it.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


# Whitespace (Unicode's, as str.isspace), C0 controls and DEL.
_UNSAFE_IN_URL = re.compile(r"[\s\x00-\x1f\x7f]")


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host, safe to put in a ``Location`` header."""
    # urlsplit silently drops tabs and newlines, so check the raw text: a control
    # character would make Django refuse the redirect header (a 500) or split it.
    if not value or _UNSAFE_IN_URL.search(value):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


def safe_next(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it is a safe place on this site to send the user, else ``""``."""
    if (
        candidate
        and "\x00" not in candidate
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return candidate
    return ""
