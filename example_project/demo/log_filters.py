"""Keep bearer secrets out of the demo's logs."""

from __future__ import annotations

import logging

from unipost_connect.redaction import redact_state


class RedactHostedState(logging.Filter):
    """Hide the ``state`` query parameter of hosted-page URLs in access-log lines.

    The embedded fake UniPost serves its hosted page from this process, so
    ``runserver``'s access log would otherwise print each user's bearer ``state``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(redact_state(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_state(record.msg)
        return True
