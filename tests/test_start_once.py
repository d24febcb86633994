"""One remote session per start, however often the user clicks, and an
``external_user_id`` UniPost would refuse is never sent.

The races themselves (threads, each with its own connection) are in
``test_concurrency.py`` on PostgreSQL; here a second request meets the first one's row
still starting, as it would in the middle of a double click.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from tests.helpers import start
from unipost_connect import services
from unipost_connect import start as start_module
from unipost_connect.errors import PlanLimitError, UniPostValidationError
from unipost_connect.models import ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


def starting_row(user: Any, **fields: Any) -> ConnectSession:
    """A row as the first click leaves it while UniPost has not answered yet."""
    return ConnectSession.objects.create(
        user=user, platform="linkedin", external_user_id=str(user.pk), **fields
    )


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def creates(fake: FakeUniPost) -> int:
    return fake.requests.count(("POST", "/v1/connect/sessions"))


def test_a_second_click_waits_for_the_first_and_gets_its_hosted_url(
    fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = starting_row(user)

    def first_request_gets_its_answer(seconds: float) -> None:
        # What the first click's request does meanwhile: UniPost answered it.
        ConnectSession.objects.filter(pk=first.pk).update(
            unipost_session_id="cs-first",
            url="https://app.unipost.test/connect/linkedin?session=cs-first&state=s",
            expires_at=timezone.now() + timedelta(minutes=30),
        )

    monkeypatch.setattr("unipost_connect.client._sleep", first_request_gets_its_answer)
    second = start(user)
    assert second.pk == first.pk
    assert second.url.startswith("https://app.unipost.test/connect/linkedin?session=cs-first")
    assert creates(fake) == 0
    assert ConnectSession.objects.count() == 1


def test_a_second_click_gives_up_with_a_clear_message_when_the_first_takes_too_long(
    fake: FakeUniPost, user: Any, user_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    starting_row(user)
    monkeypatch.setattr(start_module, "START_WAIT", 0.05)
    answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    assert messages_of(answer) == [
        "Your LinkedIn connection is already being started in another tab or window. "
        "Please wait a moment and try again."
    ]
    assert creates(fake) == 0
    assert ConnectSession.objects.count() == 1


def test_a_second_click_reports_the_first_ones_failure_instead_of_trying_again(
    fake: FakeUniPost, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = starting_row(user)

    def first_request_failed(seconds: float) -> None:
        ConnectSession.objects.filter(pk=first.pk).update(
            status="failed", error_code="PLAN_PLATFORM_NOT_ALLOWED", error_message="Upgrade", request_id="r-1"
        )

    monkeypatch.setattr("unipost_connect.client._sleep", first_request_failed)
    with pytest.raises(services.UniPostError) as raised:
        start(user)
    assert (raised.value.code, raised.value.request_id) == ("PLAN_PLATFORM_NOT_ALLOWED", "r-1")
    assert isinstance(raised.value, PlanLimitError)  # so the user is told what the first click was
    assert creates(fake) == 0


def test_a_start_left_by_a_request_that_died_is_replaced(fake: FakeUniPost, user: Any) -> None:
    dead = starting_row(user, created_at=timezone.now() - timedelta(minutes=10))
    session = start(user)
    assert session.pk != dead.pk
    assert session.status == "pending" and session.url
    dead.refresh_from_db()
    assert (dead.status, dead.error_code) == ("failed", "START_INTERRUPTED")
    assert creates(fake) == 1


def test_starts_for_other_platforms_or_users_do_not_wait(
    fake: FakeUniPost, user: Any, other_user: Any
) -> None:
    starting_row(user)
    assert start(user, "bluesky").url
    assert start(other_user).url
    assert creates(fake) == 2


def test_clicks_after_the_first_answer_reuse_its_session(fake: FakeUniPost, user: Any) -> None:
    first = start(user)
    assert [start(user).pk for _ in range(3)] == [first.pk] * 3
    assert creates(fake) == 1


@pytest.mark.django_db(transaction=True)
def test_migration_keeps_the_newest_of_several_stuck_starts_and_fails_the_rest(
    django_user_model: Any,
) -> None:
    """Rows left by processes that died mid-start, before the constraint existed."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("unipost_connect", "0001_initial")]
    after = [("unipost_connect", "0002_one_start_in_flight")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        Old = executor.loader.project_state(before).apps.get_model("unipost_connect", "ConnectSession")
        user = django_user_model.objects.create_user("stuck")
        now = timezone.now()
        stuck = [
            Old.objects.create(
                user_id=user.pk,
                platform="linkedin",
                external_user_id="1",
                created_at=now - timedelta(minutes=m),
            ).pk
            for m in (3, 2, 1)
        ]
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    rows = {row.pk: row for row in ConnectSession.objects.filter(pk__in=stuck)}
    assert [rows[pk].status for pk in stuck] == ["failed", "failed", "pending"]
    assert rows[stuck[0]].error_code == "START_INTERRUPTED"


# -- external_user_id -------------------------------------------------------------------


def long_external_user_id(user: Any) -> str:
    return "é" * 200  # 200 characters, 400 bytes: UniPost counts bytes


def empty_external_user_id(user: Any) -> str:
    return "  "


def wide_external_user_id(user: Any) -> str:
    return "x" * 300  # longer than the column too


def nul_external_user_id(user: Any) -> str:
    return f"user\x00{user.pk}"


def surrogate_external_user_id(user: Any) -> str:
    return "user\ud800"


@pytest.mark.parametrize(
    "hook",
    [
        "tests.test_start_once.long_external_user_id",
        "tests.test_start_once.empty_external_user_id",
        "tests.test_start_once.wide_external_user_id",
        "tests.test_start_once.nul_external_user_id",
        "tests.test_start_once.surrogate_external_user_id",
    ],
)
def test_an_external_user_id_unipost_would_refuse_fails_the_row_before_any_call(
    fake: FakeUniPost, user: Any, user_client: Client, hook: str
) -> None:
    settings = {
        "API_KEY": "up_test_key",
        "API_BASE_URL": "https://api.unipost.test",
        "EXTERNAL_USER_ID": hook,
    }
    with override_settings(UNIPOST_CONNECT=settings):
        answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    assert messages_of(answer) == ["The connection could not be started. Please contact the site's support."]
    row = ConnectSession.objects.get()
    assert row.status == "failed"
    assert row.error_code == "INVALID_EXTERNAL_USER_ID"
    assert "1 to 256 bytes" in row.error_message
    assert len(row.external_user_id) <= 256
    assert creates(fake) == 0


def test_an_external_user_id_of_exactly_256_bytes_is_sent(fake: FakeUniPost, user: Any) -> None:
    with override_settings(
        UNIPOST_CONNECT={
            "API_KEY": "up_test_key",
            "API_BASE_URL": "https://api.unipost.test",
            "EXTERNAL_USER_ID": lambda user: "é" * 128,
        }
    ):
        session = start(user)
    assert session.status == "pending"
    assert creates(fake) == 1


def test_check_external_user_id_counts_bytes() -> None:
    services.check_external_user_id("a" * 256)
    with pytest.raises(UniPostValidationError):
        services.check_external_user_id("é" * 129)


def test_a_profile_id_too_long_to_store_fails_the_row_before_any_call(
    fake: FakeUniPost, user: Any, user_client: Client
) -> None:
    settings = {"API_KEY": "up_test_key", "API_BASE_URL": "https://api.unipost.test", "PROFILE_ID": "p" * 200}
    with override_settings(UNIPOST_CONNECT=settings):
        answer = user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    assert answer.status_code == 302
    assert messages_of(answer) == ["The connection could not be started. Please contact the site's support."]
    row = ConnectSession.objects.get()
    assert (row.status, row.error_code) == ("failed", "INVALID_PROFILE_ID")
    assert creates(fake) == 0
