"""Masking the hosted page's bearer ``state`` wherever a hosted URL is shown or logged."""

from __future__ import annotations

import re

# ``state=<value>`` in a URL or a log line; the value ends at the next separator.
_STATE = re.compile(r"(?i)\b(state=)[^&#\s\"'<>]+")
MASK = "[redacted]"


def redact_state(text: str) -> str:
    """``text`` with every ``state=`` value replaced by :data:`MASK`."""
    return _STATE.sub(r"\g<1>" + MASK, text)
