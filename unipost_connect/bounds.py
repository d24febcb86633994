"""Fitting values from UniPost (and from the site's own hooks) into our columns.

Everything UniPost sends is bounded here before it is stored, the same way on every
database: SQLite would keep an over-long value that PostgreSQL refuses with an error,
so lengths are checked in Python against the model fields themselves.

Identifiers that do not fit are refused (a cut id names something else); free text is
cut; timestamps outside any plausible range are treated as absent.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from django.db import models

# A timestamp from UniPost outside these years is nonsense (year 1, year 9999), and near
# the calendar's edges the arithmetic the flow does on it (deadlines, reuse windows) overflows.
PLAUSIBLE_YEARS = range(2000, 2200)
# TextFields have no max_length; a message longer than this is not worth keeping whole.
MAX_TEXT_LENGTH = 2000


class Unstorable(ValueError):
    """A value that cannot be stored as it is (too long, or with a NUL character)."""


def max_length(model: type[models.Model], field: str) -> int:
    length = getattr(model._meta.get_field(field), "max_length", None)
    return int(length) if length else MAX_TEXT_LENGTH


def _encodable(text: str) -> bool:
    # A lone surrogate ("\ud800", which json.loads accepts) cannot be sent to any database.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clip(value: Any, model: type[models.Model], field: str) -> str:
    """Free text for ``model.field``: a string any database takes (no NUL, no lone
    surrogate), cut to fit."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    if not _encodable(text):
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "")[: max_length(model, field)]


def fits(value: str, model: type[models.Model], field: str) -> bool:
    """True when the identifier ``value`` can be stored in ``model.field`` unchanged."""
    return len(value) <= max_length(model, field) and "\x00" not in value and _encodable(value)


def checked(value: str, model: type[models.Model], field: str, *, what: str = "") -> str:
    """``value`` if it fits ``model.field`` unchanged, else :class:`Unstorable`."""
    if not fits(value, model, field):
        raise Unstorable(f"{what or field} is too long for this site or has characters it cannot store")
    return value


def plausible_datetime(value: datetime | None) -> datetime | None:
    """``value`` in UTC when it is a plausible moment, else None (treated as absent)."""
    if value is None:
        return None
    try:
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        return None
    return value if value.year in PLAUSIBLE_YEARS else None


def fitting_key(value: str, model: type[models.Model], field: str, *, prefix: str) -> str:
    """A unique key for ``model.field``: ``value`` itself if it fits, else ``prefix`` and
    its SHA-256. Hashed, not cut, so two long values sharing a beginning never collide.
    """
    if fits(value, model, field):
        return value
    return prefix + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
