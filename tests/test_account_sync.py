"""``unipost_connect_reconcile --sync-accounts``: UniPost's account statuses copied locally."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from tests.helpers import go_back, start
from unipost_connect.models import ConnectedAccount

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(fake: Any, user: Any, django_capture_on_commit_callbacks: Any) -> ConnectedAccount:
    browser = Client()
    browser.force_login(user)
    session = start(user)
    go_back(browser, fake.approve(session.unipost_session_id), django_capture_on_commit_callbacks)
    return ConnectedAccount.objects.get(user=user)


def sync() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("unipost_connect_reconcile", "--sync-accounts", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_reconnect_required_comes_and_goes_with_unipost(fake: Any, account: ConnectedAccount) -> None:
    fake.accounts[account.managed_account_id].status = "reconnect_required"
    out, _ = sync()
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.RECONNECT_REQUIRED
    assert "Accounts: 1 updated (status or name), 0 errors." in out
    fake.accounts[account.managed_account_id].status = "active"
    sync()
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE


def test_the_connections_page_offers_a_reconnect(
    fake: Any, account: ConnectedAccount, user_client: Client
) -> None:
    fake.accounts[account.managed_account_id].status = "reconnect_required"
    sync()
    page = user_client.get("/unipost/connections/").content.decode()
    assert "Needs reconnect" in page
    assert "Reconnect LinkedIn" in page


def test_an_account_missing_from_the_list_is_left_alone(fake: Any, account: ConnectedAccount) -> None:
    del fake.accounts[account.managed_account_id]
    out, _ = sync()
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert "Accounts: 0 updated (status or name)" in out


def test_a_failing_list_is_reported_and_changes_nothing(fake: Any, account: ConnectedAccount) -> None:
    fake.accounts[account.managed_account_id].status = "reconnect_required"
    fake.fail_next("accounts", 500, times=10)
    out, err = sync()
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert f"accounts of external user {account.external_user_id}: INTERNAL_ERROR" in err
    assert "Accounts: 0 updated (status or name), 1 errors." in out


def test_without_the_flag_accounts_are_not_asked_about(fake: Any, account: ConnectedAccount) -> None:
    fake.requests.clear()
    call_command("unipost_connect_reconcile", stdout=StringIO())
    assert ("GET", "/v1/accounts") not in fake.requests


def test_sync_names_an_account_that_has_no_name_here_and_keeps_one_that_has(
    fake: Any, account: ConnectedAccount
) -> None:
    ConnectedAccount.objects.filter(pk=account.pk).update(account_name="")  # as before any name came
    fake.accounts[account.managed_account_id].account_name = "Ada at UniPost"
    sync()
    account.refresh_from_db()
    assert account.account_name == "Ada at UniPost"
    fake.accounts[account.managed_account_id].account_name = "Renamed"
    out, _ = sync()
    account.refresh_from_db()
    assert account.account_name == "Ada at UniPost"
    assert "Accounts: 0 updated (status or name)" in out
