"""Parsing a verified webhook body: corners of the JSON that no column can hold."""

from __future__ import annotations

import pytest

from unipost_connect.webhooks import WebhookPayloadError, parse_payload


def test_a_number_too_large_to_store_is_refused() -> None:
    # 1e999 is valid JSON but parses to float("inf"), which no JSON column can hold.
    with pytest.raises(WebhookPayloadError, match="too large"):
        parse_payload(b'{"event": "account.connected", "data": {"n": 1e999}}')


def test_a_large_but_finite_number_is_accepted() -> None:
    payload = parse_payload(b'{"event": "account.connected", "data": {"n": 1e308}}')
    assert payload["data"]["n"] == 1e308
