"""The account lifecycle: disconnected by webhook or from here, reconnected, never duplicated."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.helpers import URL, SignalLog, go_back, start
from unipost_connect import services
from unipost_connect.errors import AuthenticationError, ServerError, UniPostConnectionError
from unipost_connect.models import ConnectedAccount, WebhookEvent
from unipost_connect.testing import FakeUniPost, WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def deliver(django_capture_on_commit_callbacks: Any) -> Any:
    def post(delivery: WebhookDelivery) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            answer = Client().post(URL, **delivery.django_client_kwargs())
        assert answer.status_code == 200
        return answer.json()

    return post


@pytest.fixture
def connect(fake: FakeUniPost, deliver: Any) -> Any:
    """Run one whole connection (start, approve, webhook); returns the account row."""

    def run(user: Any, platform: str = "linkedin", account_name: str | None = None) -> ConnectedAccount:
        session = start(user, platform)
        fake.approve(session.unipost_session_id, account_name=account_name)
        deliver(fake.outbox[-1])
        session.refresh_from_db()
        assert session.status == "completed"
        return ConnectedAccount.objects.get(managed_account_id=session.managed_account_id)

    return run


def disconnected(fake: FakeUniPost, account: ConnectedAccount, **kwargs: Any) -> WebhookDelivery:
    return fake.webhook(
        "account.disconnected",
        {"social_account_id": account.managed_account_id, "platform": account.platform},
        **kwargs,
    )


def test_disconnected_webhook_marks_the_account_once(
    fake: FakeUniPost, user: Any, connect: Any, deliver: Any, sent: SignalLog
) -> None:
    account = connect(user)
    delivery = disconnected(fake, account, event_id="evt_1")
    assert deliver(delivery) == {"received": True, "duplicate": False, "result": "applied"}
    assert deliver(delivery)["duplicate"] is True
    # A second event (another id) for the same disconnection changes nothing either.
    assert deliver(disconnected(fake, account, event_id="evt_2"))["duplicate"] is False
    account.refresh_from_db()
    assert account.status == "disconnected"
    assert account.disconnected_at is not None
    (signal,) = sent.named("account_disconnected")
    assert signal["account"].pk == account.pk
    assert signal["account"].status == "disconnected"


def test_disconnected_webhook_for_an_unknown_account_is_acknowledged(fake: FakeUniPost, deliver: Any) -> None:
    answer = deliver(
        fake.webhook("account.disconnected", {"social_account_id": "sa_nobody", "platform": "x"})
    )
    assert answer["result"] == "unknown_user"
    assert WebhookEvent.objects.get().result == "unknown_user"


def test_reconnect_of_the_same_account_reactivates_the_same_row(
    fake: FakeUniPost, user: Any, connect: Any, deliver: Any, sent: SignalLog
) -> None:
    first = connect(user, account_name="Alex")
    deliver(disconnected(fake, first))
    fake.accounts[first.managed_account_id].status = "disconnected"
    again = connect(user, account_name="Alex again")
    assert again.pk == first.pk
    assert ConnectedAccount.objects.count() == 1
    assert again.status == "active"
    assert again.disconnected_at is None
    assert again.connected_at > first.connected_at
    assert again.account_name == "Alex again"
    assert [s["created"] for s in sent.named("account_connected")] == [True, False]
    assert len(sent.named("connect_session_completed")) == 2  # one per session
    assert len(sent.named("account_disconnected")) == 1


def test_reconnect_by_return_only_reactivates_too(
    fake: FakeUniPost,
    user: Any,
    user_client: Client,
    connect: Any,
    deliver: Any,
    sent: SignalLog,
    django_capture_on_commit_callbacks: Any,
) -> None:
    first = connect(user)
    deliver(disconnected(fake, first))
    session = start(user)
    back = fake.approve(session.unipost_session_id)
    assert go_back(user_client, back, django_capture_on_commit_callbacks).status_code == 302
    account = ConnectedAccount.objects.get()
    assert (account.pk, account.status) == (first.pk, "active")
    assert [s["created"] for s in sent.named("account_connected")] == [True, False]


def test_connected_again_while_active_sends_nothing_new(
    fake: FakeUniPost, user: Any, connect: Any, sent: SignalLog
) -> None:
    first = connect(user)
    fake.advance(seconds=1)  # a later event: account.* bodies have no event_id, only the time differs
    second = connect(user)  # OAuth platforms give back the same managed account
    assert second.pk == first.pk
    assert ConnectedAccount.objects.count() == 1
    assert len(sent.named("account_connected")) == 1
    assert len(sent.named("connect_session_completed")) == 2


def test_bluesky_may_give_one_user_several_accounts(fake: FakeUniPost, user: Any, connect: Any) -> None:
    first = connect(user, "bluesky")
    second = connect(user, "bluesky")
    assert first.pk != second.pk
    assert ConnectedAccount.objects.filter(user=user, platform="bluesky").count() == 2


def test_accounts_of_different_users_stay_apart(
    fake: FakeUniPost, user: Any, other_user: Any, connect: Any
) -> None:
    mine = connect(user)
    theirs = connect(other_user)
    assert mine.managed_account_id != theirs.managed_account_id
    assert (mine.user, theirs.user) == (user, other_user)


# -- disconnecting from here -------------------------------------------------------------


def test_disconnect_account_deletes_at_unipost_then_marks(
    fake: FakeUniPost,
    user: Any,
    connect: Any,
    deliver: Any,
    sent: SignalLog,
    django_capture_on_commit_callbacks: Any,
) -> None:
    account = connect(user)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.disconnect_account(account) is True
    assert ("DELETE", f"/v1/accounts/{account.managed_account_id}") in fake.requests
    assert fake.accounts[account.managed_account_id].status == "disconnected"
    assert account.status == "disconnected"
    account.refresh_from_db()
    assert account.status == "disconnected"
    # UniPost's own account.disconnected webhook follows; it changes nothing more.
    assert fake.outbox[-1].event == "account.disconnected"
    assert deliver(fake.outbox[-1])["result"] == "applied"
    assert len(sent.named("account_disconnected")) == 1


@pytest.mark.parametrize(
    "fault,error",
    [
        ({"status": 500, "times": 10}, ServerError),
        ({"status": 401}, AuthenticationError),
        ({"status": 502, "body": "<html>Bad gateway</html>", "times": 10}, Exception),
        ({"exception": ConnectionResetError("reset"), "times": 10}, UniPostConnectionError),
    ],
    ids=["500", "401", "html-502", "reset"],
)
def test_disconnect_failure_marks_nothing(
    fault: dict[str, Any],
    error: type[Exception],
    fake: FakeUniPost,
    user: Any,
    connect: Any,
    sent: SignalLog,
    django_capture_on_commit_callbacks: Any,
) -> None:
    import requests

    account = connect(user)
    if "exception" in fault:
        fault = {**fault, "exception": requests.ConnectionError(fault["exception"])}
    fake.fail_next("delete", **fault)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(error):
        services.disconnect_account(account)
    account.refresh_from_db()
    assert account.status == "active"
    assert account.disconnected_at is None
    assert fake.accounts[account.managed_account_id].status == "active"
    assert sent.named("account_disconnected") == []


def test_disconnect_of_an_account_unipost_no_longer_has_marks_it(
    fake: FakeUniPost, user: Any, connect: Any, sent: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    account = connect(user)
    del fake.accounts[account.managed_account_id]
    with django_capture_on_commit_callbacks(execute=True):
        assert services.disconnect_account(account) is True
    account.refresh_from_db()
    assert account.status == "disconnected"
    assert len(sent.named("account_disconnected")) == 1


def test_mark_disconnected_is_once(
    fake: FakeUniPost, user: Any, connect: Any, sent: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    account = connect(user)
    stale = ConnectedAccount.objects.get(pk=account.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.mark_disconnected(account) is True
        assert services.mark_disconnected(stale) is False
    assert stale.status == "disconnected"  # the loser sees the winner's state
    assert len(sent.named("account_disconnected")) == 1
