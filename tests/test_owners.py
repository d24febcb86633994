"""Owners, tenants and the account lifecycle: a team's members share its accounts
(``EXTERNAL_USER_ID``), ``CAN_MANAGE_ACCOUNT`` decides who may change them, a profile
per tenant (``PROFILE_ID`` as a function), and reconnecting an account whose token
UniPost could not refresh."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client, RequestFactory

from tests.api_client import Api
from tests.helpers import SignalLog, go_back
from unipost_connect import services
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.testing import FakeUniPost

pytestmark = pytest.mark.django_db


def team_key(user: Any) -> str:
    """The tests' teams: a user's ``last_name`` names their team."""
    return f"team-{user.last_name}"


def profile_of_team(user: Any, request: Any) -> str | None:
    return {"a": "pr_team_a", "b": "pr_team_b"}.get(user.last_name)


def only_admins(user: Any, account: Any) -> bool:
    return bool(user.is_staff) and team_key(user) == account.external_user_id


@pytest.fixture
def teams(settings: Any) -> None:
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "EXTERNAL_USER_ID": "tests.test_owners.team_key"}


def member(django_user_model: Any, name: str, team: str, **extra: Any) -> Any:
    return django_user_model.objects.create_user(name, f"{name}@example.com", "pw", last_name=team, **extra)


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def connect(fake: FakeUniPost, user: Any, capture: Any, platform: str = "linkedin") -> ConnectedAccount:
    """``user`` connects an account the whole way: start, approve, return."""
    session = _start(user, platform)
    go_back(browser(user), fake.approve(session.unipost_session_id or ""), capture)
    session.refresh_from_db()
    return ConnectedAccount.objects.get(managed_account_id=session.managed_account_id)


def _start(user: Any, platform: str) -> ConnectSession:
    return services.start_session(user, platform, request=RequestFactory().get("/"))


# -- teams ---------------------------------------------------------------------------------


def test_two_members_of_a_team_share_its_account_and_another_team_sees_nothing(
    teams: None, fake: FakeUniPost, django_user_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ada, bo = member(django_user_model, "ada", "a"), member(django_user_model, "bo", "a")
    cy = member(django_user_model, "cy", "b")
    account = connect(fake, ada, django_capture_on_commit_callbacks)
    assert (account.user_id, account.external_user_id) == (ada.pk, "team-a")
    assert list(services.user_accounts(bo)) == [account]
    assert [a["id"] for a in Api(browser(bo)).accounts().json()["accounts"]] == [account.pk]
    assert list(services.user_accounts(cy)) == []
    assert Api(browser(cy)).accounts().json() == {"accounts": []}
    refused = Api(browser(cy)).disconnect(account.pk)
    assert refused.status_code == 404
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE


def test_a_teammate_may_disconnect_the_team_account_by_default(
    teams: None, fake: FakeUniPost, django_user_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ada, bo = member(django_user_model, "ada", "a"), member(django_user_model, "bo", "a")
    account = connect(fake, ada, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert Api(browser(bo)).disconnect(account.pk).status_code == 204
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED


@pytest.fixture
def admins_only(
    teams: None,
    settings: Any,
    fake: FakeUniPost,
    django_user_model: Any,
    django_capture_on_commit_callbacks: Any,
) -> tuple[Any, Any, ConnectedAccount]:
    """Team a: ada (staff) connected its account; bo may see it but not manage it."""
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "CAN_MANAGE_ACCOUNT": only_admins}
    ada = member(django_user_model, "ada", "a", is_staff=True)
    bo = member(django_user_model, "bo", "a")
    return ada, bo, connect(fake, ada, django_capture_on_commit_callbacks)


def test_can_manage_account_refusing_is_honoured_on_the_json_path(
    admins_only: tuple[Any, Any, ConnectedAccount], fake: FakeUniPost, django_capture_on_commit_callbacks: Any
) -> None:
    ada, bo, account = admins_only
    calls_before = len(fake.requests)
    refused = Api(browser(bo)).disconnect(account.pk)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert len(fake.requests) == calls_before  # UniPost was not asked
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    with django_capture_on_commit_callbacks(execute=True):
        assert Api(browser(ada)).disconnect(account.pk).status_code == 204


def test_a_teammate_reconnecting_the_team_account_is_no_conflict_and_keeps_who_connected_it(
    teams: None,
    fake: FakeUniPost,
    django_user_model: Any,
    sent: SignalLog,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ada, bo = member(django_user_model, "ada", "a"), member(django_user_model, "bo", "a")
    account = connect(fake, ada, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.apply_webhook_payload(fake.fail_token_refresh(account.managed_account_id).payload)
    again = connect(fake, bo, django_capture_on_commit_callbacks)
    assert again.pk == account.pk
    assert (again.status, again.user_id) == (ConnectedAccount.Status.ACTIVE, ada.pk)
    session = ConnectSession.objects.filter(user=bo).get()
    assert session.error_code == ""
    assert len(sent.named("account_reconnected")) == 1


# -- per-tenant profiles ---------------------------------------------------------------------


@pytest.fixture
def tenant_profiles(teams: None, settings: Any, fake: FakeUniPost) -> None:
    fake.profiles = ("pr_team_a", "pr_team_b")
    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "PROFILE_ID": "tests.test_owners.profile_of_team"}


def test_a_profile_chosen_per_user_reaches_the_create_call_and_the_rows(
    tenant_profiles: None, fake: FakeUniPost, django_user_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ada, cy = member(django_user_model, "ada", "a"), member(django_user_model, "cy", "b")
    for user, profile in ((ada, "pr_team_a"), (cy, "pr_team_b")):
        account = connect(fake, user, django_capture_on_commit_callbacks)
        session = ConnectSession.objects.get(user=user)
        assert fake.sessions[session.unipost_session_id or ""].profile_id == profile
        assert (session.profile_id, account.profile_id) == (profile, profile)


def test_reuse_never_crosses_profiles(
    tenant_profiles: None, fake: FakeUniPost, django_user_model: Any
) -> None:
    ada = member(django_user_model, "ada", "a")
    first = _start(ada, "linkedin")
    assert _start(ada, "linkedin").pk == first.pk  # same profile: reused
    ada.last_name = "b"  # moved to the other tenant
    ada.save()
    second = _start(ada, "linkedin")
    assert second.pk != first.pk
    assert (first.profile_id, second.profile_id) == ("pr_team_a", "pr_team_b")


def test_a_profile_function_returning_something_else_than_a_string_is_a_setting_error(
    settings: Any, user: Any
) -> None:
    from unipost_connect.conf import SettingError

    settings.UNIPOST_CONNECT = {**settings.UNIPOST_CONNECT, "PROFILE_ID": lambda user, request: 42}
    with pytest.raises(SettingError, match="PROFILE_ID"):
        _start(user, "linkedin")
    assert ConnectSession.objects.count() == 0


# -- reconnects ------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["webhook", "return"])
def test_refresh_failure_then_reconnect_makes_the_same_account_active_signalling_each_once(
    first: str, fake: FakeUniPost, user: Any, sent: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    account = connect(fake, user, django_capture_on_commit_callbacks)
    failure = fake.fail_token_refresh(account.managed_account_id)
    for _ in range(2):  # UniPost's retry changes nothing more
        with django_capture_on_commit_callbacks(execute=True):
            services.apply_webhook_payload(failure.payload, raw_body=failure.body)
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.RECONNECT_REQUIRED
    assert len(sent.named("account_needs_reconnect")) == 1
    sent.calls.clear()

    session = _start(user, "linkedin")
    return_url = fake.approve(session.unipost_session_id or "")
    connected = fake.outbox[-1]

    def deliver() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            services.apply_webhook_payload(connected.payload, raw_body=connected.body)

    if first == "webhook":
        deliver()
        go_back(browser(user), return_url, django_capture_on_commit_callbacks)
    else:
        go_back(browser(user), return_url, django_capture_on_commit_callbacks)
        deliver()
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert ConnectedAccount.objects.count() == 1
    assert [s["account"].pk for s in sent.named("account_reconnected")] == [account.pk]
    assert sent.named("account_connected") == []
    assert len(sent.named("connect_session_completed")) == 1


def test_reconnecting_a_different_account_adds_it_and_leaves_the_old_one(
    fake: FakeUniPost, user: Any, sent: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    old = connect(fake, user, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.apply_webhook_payload(fake.fail_token_refresh(old.managed_account_id).payload)
    # At UniPost the user signed in to another LinkedIn account: a new managed account.
    fake.accounts[old.managed_account_id].external_user_id = "someone-else"
    new = connect(fake, user, django_capture_on_commit_callbacks)
    fake.accounts[old.managed_account_id].external_user_id = str(user.pk)
    assert new.pk != old.pk
    old.refresh_from_db()
    assert old.status == ConnectedAccount.Status.RECONNECT_REQUIRED
    assert sent.named("account_reconnected") == []


def test_the_status_sync_signals_a_needed_reconnect_and_the_way_back_once_each(
    fake: FakeUniPost, user: Any, sent: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    account = connect(fake, user, django_capture_on_commit_callbacks)
    sent.calls.clear()
    fake.accounts[account.managed_account_id].status = "reconnect_required"
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            services.sync_account_statuses(account.external_user_id)
    (needs,) = sent.named("account_needs_reconnect")
    assert (needs["account"].pk, needs["reason"]) == (account.pk, "accounts_list")
    fake.accounts[account.managed_account_id].status = "active"
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            services.sync_account_statuses(account.external_user_id)
    assert [s["account"].pk for s in sent.named("account_reconnected")] == [account.pk]


def test_the_status_sync_asks_with_uniposts_filters_and_ignores_unknown_statuses(
    fake: FakeUniPost, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    linkedin = connect(fake, user, django_capture_on_commit_callbacks, "linkedin")
    bluesky = connect(fake, user, django_capture_on_commit_callbacks, "bluesky")
    for account in (linkedin, bluesky):
        fake.accounts[account.managed_account_id].status = "reconnect_required"
    assert services.sync_account_statuses(str(user.pk), platform="bluesky") == 1
    linkedin.refresh_from_db()
    bluesky.refresh_from_db()
    assert (linkedin.status, bluesky.status) == ("active", "reconnect_required")
    fake.accounts[linkedin.managed_account_id].status = "suspended"  # not one we know
    fake.accounts[linkedin.managed_account_id].account_name = None  # type: ignore[assignment]
    assert services.sync_account_statuses(str(user.pk), platform="linkedin") == 0
    linkedin.refresh_from_db()
    assert linkedin.status == "active"


# -- several accounts on one platform -----------------------------------------------------


def test_bluesky_gives_one_owner_two_accounts_listed_and_disconnected_separately(
    fake: FakeUniPost, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first = connect(fake, user, django_capture_on_commit_callbacks, "bluesky")
    second = connect(fake, user, django_capture_on_commit_callbacks, "bluesky")
    assert first.pk != second.pk
    api = Api(browser(user))
    listed = api.accounts().json()["accounts"]
    assert sorted(a["managed_account_id"] for a in listed) == sorted(
        [first.managed_account_id, second.managed_account_id]
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert api.disconnect(first.pk).status_code == 204
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("disconnected", "active")


# -- the migration that gives existing accounts their owner --------------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_gives_existing_accounts_the_owner_their_session_was_started_with(
    django_user_model: Any,
) -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("unipost_connect", "0005_connect_session_popup")]
    after = [("unipost_connect", "0006_account_owner")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        Account = old.get_model("unipost_connect", "ConnectedAccount")
        Session = old.get_model("unipost_connect", "ConnectSession")
        user = django_user_model.objects.create_user("legacy")
        Session.objects.create(
            user_id=user.pk, platform="linkedin", external_user_id="team-x", managed_account_id="sa_1"
        )
        keyed = Account.objects.create(user_id=user.pk, managed_account_id="sa_1", platform="linkedin").pk
        orphan = Account.objects.create(user_id=user.pk, managed_account_id="sa_2", platform="bluesky").pk
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    owners = dict(ConnectedAccount.objects.values_list("pk", "external_user_id"))
    assert owners == {keyed: "team-x", orphan: ""}
    # The one without a key stays its connecting user's.
    assert [a.pk for a in services.user_accounts(user)] == [orphan]


# -- the pages, the tags and the admin ------------------------------------------------------


def test_the_connections_page_lists_the_team_account_for_a_teammate_and_not_for_another_team(
    teams: None, fake: FakeUniPost, django_user_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ada, bo = member(django_user_model, "ada", "a"), member(django_user_model, "bo", "a")
    cy = member(django_user_model, "cy", "b")
    account = connect(fake, ada, django_capture_on_commit_callbacks)
    page = browser(bo).get("/unipost/connections/").content.decode()
    assert f'id="upc-account-{account.pk}"' in page and account.account_name in page
    assert "Reconnect LinkedIn" in page  # the team's account is active: connecting again refreshes it
    assert f'id="upc-account-{account.pk}"' not in browser(cy).get("/unipost/connections/").content.decode()
    refused = browser(cy).post(f"/unipost/accounts/{account.pk}/disconnect/")
    assert refused.status_code == 404


def test_can_manage_account_refusing_is_honoured_on_the_html_path(
    admins_only: tuple[Any, Any, ConnectedAccount],
) -> None:
    ada, bo, account = admins_only
    page = browser(bo).get("/unipost/connections/").content.decode()
    assert f'id="upc-account-{account.pk}"' in page
    assert f"/unipost/accounts/{account.pk}/disconnect/" not in page  # no button to press
    answer = browser(bo).post(f"/unipost/accounts/{account.pk}/disconnect/")
    assert answer.status_code == 302
    told = [str(m) for m in get_messages(answer.wsgi_request)]
    assert told == ["You cannot change this LinkedIn account. Ask whoever manages your team's accounts."]
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert f"/unipost/accounts/{account.pk}/disconnect/" in (
        browser(ada).get("/unipost/connections/").content.decode()
    )


def test_an_account_needing_a_reconnect_shows_it_on_the_page_the_tag_the_api_and_the_admin(
    fake: FakeUniPost, user: Any, admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    account = connect(fake, user, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.apply_webhook_payload(fake.fail_token_refresh(account.managed_account_id).payload)
    page = browser(user).get("/unipost/connections/").content.decode()
    assert "Needs reconnect" in page
    assert "until you reconnect it" in page
    assert page.count("Reconnect LinkedIn") == 1  # the card's button
    (listed,) = Api(browser(user)).accounts().json()["accounts"]
    assert listed["status"] == "reconnect_required"
    changelist = admin_client.get("/admin/unipost_connect/connectedaccount/").content.decode()
    assert "Reconnect required" in changelist


def test_bluesky_offers_to_connect_another_account(
    fake: FakeUniPost, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = browser(user)
    assert "Connect Bluesky" in client.get("/unipost/connections/").content.decode()
    connect(fake, user, django_capture_on_commit_callbacks, "bluesky")
    connect(fake, user, django_capture_on_commit_callbacks, "bluesky")
    page = client.get("/unipost/connections/").content.decode()
    assert "Connect another Bluesky account" in page
    assert page.count("/disconnect/") == 2  # each account its own Disconnect


def test_the_admin_shows_owners_and_filters_by_profile(
    teams: None,
    fake: FakeUniPost,
    django_user_model: Any,
    admin_client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    account = connect(fake, member(django_user_model, "ada", "a"), django_capture_on_commit_callbacks)
    changelist = admin_client.get("/admin/unipost_connect/connectedaccount/").content.decode()
    assert "team-a" in changelist
    filtered = admin_client.get(
        "/admin/unipost_connect/connectedaccount/", {"profile_id": account.profile_id}
    ).content.decode()
    assert account.managed_account_id in filtered
    other = admin_client.get("/admin/unipost_connect/connectedaccount/", {"profile_id": "pr_other"})
    assert account.managed_account_id not in other.content.decode()
    sessions = admin_client.get("/admin/unipost_connect/connectsession/", {"profile_id": account.profile_id})
    assert sessions.status_code == 200
