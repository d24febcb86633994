"""Everything UniPost sends is bounded before it is stored: a value that cannot be stored
is an error on the row (or an ignored event), never a 5xx, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client, override_settings
from django.urls import reverse

from tests.helpers import start
from unipost_connect import bounds, services
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


def session_answer(fake: FakeUniPost, session: ConnectSession, **changes: Any) -> bytes:
    data = fake.sessions[session.unipost_session_id or ""].as_json()
    data.update(changes)
    return json.dumps({"data": data, "request_id": "r-1"}).encode()


def answer_next(fake: FakeUniPost, endpoint: str, body: bytes, *, status: int = 200, **kwargs: Any) -> None:
    """The fake's next answer on ``endpoint`` is ``body``, as UniPost (or something) sent it."""
    fake.fail_next(endpoint, status, body=body, **kwargs)


def back(client: Client, session: ConnectSession) -> Any:
    return client.get(reverse("unipost_connect:return", kwargs={"session_id": session.pk}))


def test_a_request_id_header_too_long_for_its_column_is_cut(fake: FakeUniPost, user: Any) -> None:
    created = {
        "data": {
            "id": "9e2b7c41-6d3a-4f58-b0c2-7a1e5d8f3b96",
            "status": "pending",
            "platform": "linkedin",
            "external_user_id": str(user.pk),
            "url": "https://app.unipost.test/connect/linkedin?session=x&state=y",
            "expires_at": "2026-12-01T10:00:00Z",
        }
    }
    answer_next(
        fake, "create", json.dumps(created).encode(), status=201, headers={"X-Request-Id": "r" * 5000}
    )
    session = start(user)
    assert session.status == "pending"
    session.refresh_from_db()
    assert session.request_id == "r" * 128


def test_an_error_message_with_nul_and_of_any_length_is_kept_bounded(
    fake: FakeUniPost, user: Any, user_client: Client
) -> None:
    fake.fail_next("create", 422, code="VALIDATION_ERROR" * 10, message="bad\x00" + "x" * 100_000)
    answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    row = ConnectSession.objects.get()
    assert row.status == "failed"
    assert "\x00" not in row.error_message
    assert len(row.error_message) == bounds.MAX_TEXT_LENGTH
    assert row.error_code == ("VALIDATION_ERROR" * 10)[:64]


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2026-13-45T99:99:99Z",
    ],
)
def test_timestamps_at_the_calendar_s_edges_are_treated_as_absent(
    fake: FakeUniPost, user: Any, user_client: Client, stamp: str
) -> None:
    session = start(user)
    fake.approve(session.unipost_session_id or "")
    body = session_answer(fake, session, expires_at=stamp, completed_at=stamp)
    answer_next(fake, "get", body)
    returned = back(user_client, session)
    assert returned.status_code == 302
    session.refresh_from_db()
    assert session.status == "completed"
    assert session.completed_at is not None and session.completed_at.year in bounds.PLAUSIBLE_YEARS
    assert session.expires_at is not None and session.expires_at.year in bounds.PLAUSIBLE_YEARS


@override_settings(TIME_ZONE="Pacific/Kiritimati")  # UTC+14: year 9999 would overflow in local time
def test_pages_render_whatever_expiry_unipost_sent(fake: FakeUniPost, user: Any, user_client: Client) -> None:
    session = start(user)
    body = session_answer(fake, session, expires_at="9999-12-31T23:59:59Z")
    answer_next(fake, "get", body)
    assert back(user_client, session).status_code == 302
    assert user_client.get(reverse("unipost_connect:connections")).status_code == 200


def test_a_managed_account_id_too_long_to_store_is_an_error_on_the_row(
    fake: FakeUniPost, user: Any, user_client: Client
) -> None:
    session = start(user)
    body = session_answer(fake, session, status="completed", managed_account_id="a" * 129)
    answer_next(fake, "get", body)
    returned = back(user_client, session)
    assert returned.status_code == 302
    assert [str(m) for m in get_messages(returned.wsgi_request)] == [
        "The connection service is not available right now. Please try again in a few minutes."
    ]
    session.refresh_from_db()
    assert session.status == "pending"
    assert session.error_code == "INVALID_RESPONSE"
    assert ConnectedAccount.objects.count() == 0


def test_a_created_session_with_an_id_this_site_already_has_is_an_error_on_the_row(
    fake: FakeUniPost, user: Any, other_user: Any
) -> None:
    theirs = start(other_user)
    data = fake.sessions[theirs.unipost_session_id or ""].as_json()
    data["external_user_id"] = str(user.pk)
    answer_next(fake, "create", json.dumps({"data": data}).encode(), status=201)
    with pytest.raises(services.UniPostError):
        start(user)
    mine = ConnectSession.objects.get(user=user)
    assert mine.status == "failed"
    assert mine.error_code == "INVALID_RESPONSE"
    assert "existing session" in mine.error_message


def test_an_event_id_longer_than_its_column_is_hashed_so_two_never_collide(user: Any) -> None:
    def event(event_id: str) -> dict[str, Any]:
        return {"event": "something.else", "event_id": event_id, "data": {}}

    shared = "evt_" + "x" * 200
    first = services.apply_webhook_payload(event(shared + "1"))
    second = services.apply_webhook_payload(event(shared + "2"))
    assert (first.duplicate, second.duplicate) == (False, False)
    assert WebhookEvent.objects.count() == 2
    assert all(len(e.event_key) <= 128 for e in WebhookEvent.objects.all())
    assert services.apply_webhook_payload(event(shared + "1")).duplicate is True


def test_an_unknown_platform_in_a_webhook_is_not_stored_as_a_platform(fake: FakeUniPost, user: Any) -> None:
    session = start(user)
    payload = {
        "event": "account.connected",
        "data": {
            "social_account_id": "3f6c2a1e-8b4d-4e0a-9c7f-2d5b8e1a6c3f",
            "platform": "mastodon",
            "external_user_id": session.external_user_id,
            "connection_type": "managed",
        },
    }
    outcome = services.apply_webhook_payload(payload)
    assert outcome.event.result == "ignored"
    assert ConnectedAccount.objects.count() == 0


def test_plausible_datetime() -> None:
    assert bounds.plausible_datetime(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert bounds.plausible_datetime(datetime(1, 1, 1, tzinfo=UTC)) is None
    assert bounds.plausible_datetime(datetime(9999, 12, 31, tzinfo=UTC)) is None
    assert bounds.plausible_datetime(None) is None
