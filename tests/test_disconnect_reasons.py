"""``account.disconnected`` means two things: gone (the user disconnected it), or a token
UniPost could not refresh (the account stays, ``reconnect_required``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.helpers import SignalLog, go_back, start
from unipost_connect import services
from unipost_connect.models import ConnectedAccount
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(fake: FakeUniPost, user: Any, django_capture_on_commit_callbacks: Any) -> ConnectedAccount:
    browser = Client()
    browser.force_login(user)
    session = start(user)
    go_back(browser, fake.approve(session.unipost_session_id or ""), django_capture_on_commit_callbacks)
    return ConnectedAccount.objects.get(user=user)


def disconnected(account: ConnectedAccount, **data: Any) -> dict[str, Any]:
    body = {
        "social_account_id": account.managed_account_id,
        "platform": account.platform,
        "profile_id": account.profile_id,
        "account_name": account.account_name,
        "disconnected_at": "2026-12-04T03:12:40Z",
        **data,
    }
    return {"event": "account.disconnected", "timestamp": "2026-12-04T03:12:40Z", "data": body}


def apply(payload: dict[str, Any], capture: Any) -> str:
    with capture(execute=True):
        return services.apply_webhook_payload(payload).event.result


@pytest.mark.parametrize("reason", ["refresh_failed", "missing_refresh_token", "decrypt_failed"])
def test_a_token_that_cannot_be_refreshed_makes_the_account_reconnect_required(
    account: ConnectedAccount, sent: SignalLog, django_capture_on_commit_callbacks: Any, reason: str
) -> None:
    sent.calls.clear()
    payload = disconnected(account, reason=reason, external_user_id=account.external_user_id)
    assert apply(payload, django_capture_on_commit_callbacks) == "applied"
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.RECONNECT_REQUIRED
    assert account.disconnected_at is None
    assert sent.named("account_disconnected") == []
    (needs,) = sent.named("account_needs_reconnect")
    assert (needs["account"].pk, needs["reason"]) == (account.pk, reason)


@pytest.mark.parametrize("reason", ["user_initiated", None, "", "something_new"])
def test_a_user_initiated_missing_or_unknown_reason_disconnects(
    account: ConnectedAccount, sent: SignalLog, django_capture_on_commit_callbacks: Any, reason: str | None
) -> None:
    sent.calls.clear()
    payload = disconnected(account) if reason is None else disconnected(account, reason=reason)
    assert apply(payload, django_capture_on_commit_callbacks) == "applied"
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED
    assert len(sent.named("account_disconnected")) == 1
    assert sent.named("account_needs_reconnect") == []


def test_reconnect_required_then_a_new_session_brings_the_same_account_back(
    fake: FakeUniPost,
    user: Any,
    account: ConnectedAccount,
    sent: SignalLog,
    django_capture_on_commit_callbacks: Any,
) -> None:
    apply(disconnected(account, reason="refresh_failed"), django_capture_on_commit_callbacks)
    fake.accounts[account.managed_account_id].status = "reconnect_required"
    browser = Client()
    browser.force_login(user)
    session = start(user)
    go_back(browser, fake.approve(session.unipost_session_id or ""), django_capture_on_commit_callbacks)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert ConnectedAccount.objects.count() == 1


def test_sync_keeps_syncing_reconnect_required_accounts(
    fake: FakeUniPost, account: ConnectedAccount, django_capture_on_commit_callbacks: Any
) -> None:
    apply(disconnected(account, reason="refresh_failed"), django_capture_on_commit_callbacks)
    # UniPost refreshed the token after all: the list says active again.
    assert services.sync_account_statuses(account.external_user_id) == 1
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE


def test_a_refresh_failure_for_an_account_already_disconnected_leaves_it_disconnected(
    account: ConnectedAccount, django_capture_on_commit_callbacks: Any
) -> None:
    apply(disconnected(account, reason="user_initiated"), django_capture_on_commit_callbacks)
    apply(
        disconnected(account, reason="refresh_failed", disconnected_at="x"),
        django_capture_on_commit_callbacks,
    )
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED
