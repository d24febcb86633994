"""``Retry-After`` as an HTTP date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from unipost_connect.client import parse_retry_after


def test_retry_after_http_date_without_zone_is_read_as_utc() -> None:
    # "-0000" means "UTC, source zone unknown": parsedate_to_datetime gives a naive datetime.
    later = datetime.now(UTC) + timedelta(seconds=120)
    header = format_datetime(later.replace(tzinfo=None))
    assert header.endswith("-0000")
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 100 < seconds <= 120


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0
