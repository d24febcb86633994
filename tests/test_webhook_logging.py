"""A refused webhook delivery is one log line, with its reason and without a traceback."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client, override_settings

from tests.helpers import URL
from unipost_connect.testing import build_webhook


def records_for(caplog: pytest.LogCaptureFixture, **post: Any) -> tuple[int, list[logging.LogRecord]]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        answer = Client().post(URL, **post)
    return answer.status_code, [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_bad_signature_is_one_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture, debug: bool
) -> None:
    delivery = build_webhook("account.connected", {}, "whsec_wrong")
    with override_settings(DEBUG=debug):
        status, records = records_for(caplog, **delivery.django_client_kwargs())
    assert status == 403
    (record,) = records
    assert record.exc_info is None
    assert "signature does not match" in record.getMessage()


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_signed_body_that_is_not_an_event_is_one_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture, debug: bool
) -> None:
    delivery = build_webhook("account.connected", {}, "whsec_test")
    body = b"[1, 2, 3]"
    from unipost_connect.webhooks import SIGNATURE_HEADER, compute_signature

    headers = {**delivery.headers, SIGNATURE_HEADER: compute_signature(body, "whsec_test")}
    with override_settings(DEBUG=debug):
        status, records = records_for(caplog, data=body, content_type="application/json", headers=headers)
    assert status == 400
    (record,) = records
    assert record.exc_info is None
    assert "not a JSON object" in record.getMessage()
