from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.helpers import start
from unipost_connect import services
from unipost_connect.admin import LISTED_FAILURES, short_id, user_search_fields
from unipost_connect.client import get_client
from unipost_connect.models import ConnectedAccount, ConnectSession, WebhookEvent

pytestmark = pytest.mark.django_db

API_KEY = "up_test_key"  # tests.settings
WEBHOOK_SECRET = "whsec_test"


def changelist(model: type) -> str:
    return reverse(f"admin:unipost_connect_{model._meta.model_name}_changelist")


def change(obj: Any) -> str:
    return reverse(f"admin:unipost_connect_{obj._meta.model_name}_change", args=[obj.pk])


def make_session(
    user: Any,
    *,
    platform: str = "linkedin",
    minutes_ago: float = 10,
    created_at: datetime | None = None,
    **fields: Any,
) -> ConnectSession:
    """A pending session known to the fake."""
    remote = get_client().create_session(
        platform=platform, external_user_id=f"ext-{user.pk}", return_url="https://site.test/back"
    )
    return ConnectSession.objects.create(
        user=user,
        platform=platform,
        external_user_id=f"ext-{user.pk}",
        unipost_session_id=remote.id,
        url=remote.url,
        expires_at=remote.expires_at,
        created_at=created_at or timezone.now() - timedelta(minutes=minutes_ago),
        **fields,
    )


def completed_session(fake: Any, user: Any, **kwargs: Any) -> ConnectSession:
    session = make_session(user, **kwargs)
    fake.approve(session.unipost_session_id)
    return services.reconcile_session(session)


def run_action(client: Client, model: type, action: str, objs: list[Any]) -> Any:
    return client.post(
        changelist(model),
        {"action": action, "_selected_action": [str(o.pk) for o in objs]},
        follow=True,
    )


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def hosted_state(session: ConnectSession) -> str:
    return parse_qs(urlsplit(session.url).query)["state"][0]


# -- pages -----------------------------------------------------------------------


def test_every_page_renders_for_a_superuser(admin_client, fake, user):
    pending = make_session(user)
    completed = completed_session(fake, user, platform="bluesky")
    account = ConnectedAccount.objects.get()
    event = services.apply_webhook_payload(
        fake.webhook("account.disconnected", {"social_account_id": "sa_nobody", "platform": "x"}).payload
    ).event
    for url in (
        changelist(ConnectSession),
        change(pending),
        change(completed),
        changelist(ConnectedAccount),
        change(account),
        changelist(WebhookEvent),
        change(event),
    ):
        answer = admin_client.get(url)
        assert answer.status_code == 200, url
    assert not WebhookEvent.objects.filter(result="received").exists()


def test_status_is_a_coloured_badge_with_text(admin_client, fake, user):
    make_session(user)
    completed_session(fake, user, platform="bluesky")
    page = admin_client.get(changelist(ConnectSession)).content.decode()
    assert 'style="color:#8a6d00;background:#fff4c2' in page and ">Pending</span>" in page
    assert 'style="color:#1e6b2f;background:#d7f5de' in page and ">Completed</span>" in page
    page = admin_client.get(changelist(ConnectedAccount)).content.decode()
    assert ">Active</span>" in page


def column_headers(page: str) -> list[str]:
    head = page.split('<table id="result_list">', 1)[1].split("</thead>", 1)[0]
    return re.findall(r'<th scope="col" class="[^"]*column-(\w+)', head)


def test_the_sessions_list_opens_with_a_short_id_user_platform_and_status(admin_client, fake, user):
    session = make_session(user)
    page = listed(admin_client, ConnectSession)
    assert column_headers(page) == [
        "session_id",
        "who",
        "platform",
        "status_badge",
        "created",
        "expires",
        "error",
    ]
    # The first 8 hex characters link to the change page; the whole id is in the tooltip.
    link = (
        f'<a href="{change(session)}"><span class="unipost-id" title="{session.pk}">'
        f"{session.pk.hex[:8]}…</span></a>"
    )
    assert link in page
    assert f">{session.pk}<" not in page
    assert '<span class="unipost-clip" title="alex">alex</span>' in page
    assert "unipost_connect/admin.css" in page  # one line per row (white-space: nowrap)


def test_the_sessions_list_shows_narrow_times_with_the_full_ones_in_tooltips(admin_client, user):
    created = datetime(2026, 3, 4, 23, 50, tzinfo=UTC)
    ConnectSession.objects.create(
        user=user,
        platform="linkedin",
        external_user_id="x",
        unipost_session_id="cs_late",
        created_at=created,
        expires_at=created + timedelta(minutes=30),  # past midnight: the time says it
    )
    ConnectSession.objects.create(
        user=user,
        platform="bluesky",
        external_user_id="x",
        unipost_session_id="cs_odd",
        created_at=created,
        expires_at=created + timedelta(days=2),
    )
    ConnectSession.objects.create(
        user=user, platform="threads", external_user_id="x", status="failed", error_code="UNIPOST_UNREACHABLE"
    )
    page = listed(admin_client, ConnectSession)
    assert (
        '<time datetime="2026-03-04T23:50:00+00:00" title="March 4, 2026, 11:50 p.m.">2026-03-04 23:50</time>'
        in page
    )
    assert '<time datetime="2026-03-05T00:20:00+00:00" title="March 5, 2026, 12:20 a.m.">00:20</time>' in page
    assert ">2026-03-06 23:50</time>" in page  # more than a day later: with its date
    assert '<span class="unipost-clip" title="UNIPOST_UNREACHABLE">UNIPOST_UNREACHABLE</span>' in page
    # Sorting by the narrow columns sorts by their fields.
    for index in range(1, 8):
        assert listed(admin_client, ConnectSession, f"?o={index}")


def test_the_accounts_list_shows_short_ids_too(admin_client, fake, user):
    completed_session(fake, user)
    account = ConnectedAccount.objects.get()
    page = listed(admin_client, ConnectedAccount)
    assert f'title="{account.managed_account_id}">{account.managed_account_id[:8]}…</span></a>' in page
    assert "unipost_connect/admin.css" in page


def test_a_short_id_is_shown_whole_when_it_is_short():
    assert short_id("sa_12345") == '<span class="unipost-id">sa_12345</span>'


def test_webhook_events_are_listed_read_only_with_their_result(admin_client, fake):
    outcome = services.apply_webhook_payload(fake.webhook("account.ping", {}).payload)
    page = admin_client.get(changelist(WebhookEvent)).content.decode()
    assert "account.ping" in page and "Ignored (unknown event)" in page
    detail = admin_client.get(change(outcome.event)).content.decode()
    assert 'name="_save"' not in detail
    assert admin_client.post(change(outcome.event), {"result": "applied"}).status_code == 403


# -- filters and search ----------------------------------------------------------


def listed(client: Client, model: type, query: str = "") -> str:
    answer = client.get(changelist(model) + query)
    assert answer.status_code == 200
    return answer.content.decode()


def test_session_filters(admin_client, fake, user, other_user):
    old = make_session(user, created_at=datetime(2020, 1, 1, 12, tzinfo=UTC))
    linkedin = make_session(other_user)
    done = completed_session(fake, user, platform="bluesky")

    def shown(query: str) -> set[Any]:
        page = listed(admin_client, ConnectSession, query)
        return {s.pk for s in (old, linkedin, done) if change(s) in page}

    assert shown("") == {old.pk, linkedin.pk, done.pk}
    assert shown("?status__exact=completed") == {done.pk}
    assert shown("?status__exact=pending") == {old.pk, linkedin.pk}
    assert shown("?platform__exact=bluesky") == {done.pk}
    assert shown("?platform__exact=linkedin") == {old.pk, linkedin.pk}
    day = {"created_at__gte": "2020-01-01 00:00:00+00:00", "created_at__lt": "2020-01-02 00:00:00+00:00"}
    assert shown("?" + urlencode(day)) == {old.pk}
    assert shown("?created_at__year=2020") == {old.pk}  # the date hierarchy


def test_session_search(admin_client, fake, user, other_user):
    mine = completed_session(fake, user)
    theirs = make_session(other_user)

    def found(q: str) -> set[Any]:
        page = listed(admin_client, ConnectSession, "?q=" + q)
        return {s.pk for s in (mine, theirs) if change(s) in page}

    assert found("alex") == {mine.pk}  # username
    assert found("blake@example.com") == {theirs.pk}  # email
    assert found(theirs.external_user_id) == {theirs.pk}
    assert found(mine.unipost_session_id) == {mine.pk}
    assert found(mine.managed_account_id) == {mine.pk}


def test_admin_searches_the_site_user_models_own_fields() -> None:
    assert user_search_fields() == ("user__username", "user__email")


def test_admin_search_by_email_finds_the_session(
    fake: Any, user_client: Client, admin_client: Client
) -> None:
    user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    session = ConnectSession.objects.get()
    link = f"/admin/unipost_connect/connectsession/{session.pk}/change/"

    def found(query: str) -> bool:
        page = admin_client.get("/admin/unipost_connect/connectsession/", {"q": query})
        assert page.status_code == 200
        return link in page.content.decode()

    assert found("alex@example.com")
    assert found("alex")
    assert not found("nobody@example.com")


def test_account_filters_and_search(admin_client, fake, user, other_user):
    linkedin = completed_session(fake, user)
    bluesky = completed_session(fake, other_user, platform="bluesky")
    a = ConnectedAccount.objects.get(managed_account_id=linkedin.managed_account_id)
    b = ConnectedAccount.objects.get(managed_account_id=bluesky.managed_account_id)
    services.mark_disconnected(b)

    def shown(query: str) -> set[Any]:
        page = listed(admin_client, ConnectedAccount, query)
        return {acc.pk for acc in (a, b) if change(acc) in page}

    assert shown("?status__exact=disconnected") == {b.pk}
    assert shown("?platform__exact=linkedin") == {a.pk}
    assert shown("?q=blake") == {b.pk}
    assert shown("?q=alex@example.com") == {a.pk}
    assert shown("?q=" + a.managed_account_id) == {a.pk}
    assert shown("?q=" + b.external_user_id) == {b.pk}


# -- query counts ----------------------------------------------------------------


def _sessions_for_new_users(django_user_model: Any, start: int, count: int) -> None:
    users = django_user_model.objects.bulk_create(
        [
            django_user_model(username=f"user{i}", email=f"user{i}@example.com")
            for i in range(start, start + count)
        ]
    )
    if not users or users[0].pk is None:  # backends that do not return ids
        users = list(django_user_model.objects.filter(username__startswith="user").order_by("-pk")[:count])
    now = timezone.now()
    ConnectSession.objects.bulk_create(
        ConnectSession(
            user=u,
            platform="linkedin",
            external_user_id=str(u.pk),
            unipost_session_id=f"cs_{u.pk}",
            created_at=now - timedelta(seconds=i),
        )
        for i, u in enumerate(users)
    )
    ConnectedAccount.objects.bulk_create(
        ConnectedAccount(user=u, managed_account_id=f"sa_{u.pk}", platform="linkedin") for u in users
    )


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_changelist_query_count_is_the_same_for_10_and_1000_rows(admin_client, django_user_model):
    _sessions_for_new_users(django_user_model, 0, 10)
    small = {model: _queries(admin_client, changelist(model)) for model in (ConnectSession, ConnectedAccount)}
    _sessions_for_new_users(django_user_model, 10, 990)
    assert ConnectSession.objects.count() == 1000
    large = {model: _queries(admin_client, changelist(model)) for model in (ConnectSession, ConnectedAccount)}
    assert large == small
    # And with a filter and a search applied.
    query = "?status__exact=pending&platform__exact=linkedin&q=user"
    assert _queries(admin_client, changelist(ConnectSession) + query) <= small[ConnectSession] + 1


# -- read-only -------------------------------------------------------------------


def test_synced_fields_cannot_be_changed_by_a_post(admin_client, fake, user):
    session = make_session(user)
    page = admin_client.get(change(session)).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    for name in ("status", "managed_account_id", "unipost_session_id"):
        assert f'name="{name}"' not in page
    answer = admin_client.post(
        change(session),
        {"status": "completed", "managed_account_id": "sa_forged", "_save": "Save"},
        follow=True,
    )
    assert answer.status_code == 200
    assert "Nothing to save" in " ".join(texts(answer))
    before = session.updated_at
    session.refresh_from_db()
    assert (session.status, session.managed_account_id, session.updated_at) == ("pending", "", before)


def test_a_post_to_an_account_page_changes_nothing(admin_client, fake, user):
    completed_session(fake, user)
    account = ConnectedAccount.objects.get()
    admin_client.post(change(account), {"status": "disconnected", "_save": "Save"})
    account.refresh_from_db()
    assert account.status == "active"


def test_nothing_can_be_added(admin_client):
    assert admin_client.get(reverse("admin:unipost_connect_connectsession_add")).status_code == 403
    assert admin_client.get(reverse("admin:unipost_connect_connectedaccount_add")).status_code == 403


# -- actions -----------------------------------------------------------------------


def test_refresh_from_unipost_reconciles_the_selected_sessions(admin_client, fake, user):
    approved = make_session(user)
    denied = make_session(user, platform="bluesky")
    waiting = make_session(user, platform="threads")
    unselected = make_session(user, platform="tiktok")
    never_started = ConnectSession.objects.create(
        user=user, platform="youtube", external_user_id="x", created_at=timezone.now() - timedelta(hours=1)
    )
    fake.approve(approved.unipost_session_id)
    fake.deny(denied.unipost_session_id)
    fake.approve(unselected.unipost_session_id)
    answer = run_action(
        admin_client, ConnectSession, "refresh_from_unipost", [approved, denied, waiting, never_started]
    )
    assert answer.status_code == 200
    assert texts(answer) == ["Checked 4 sessions: 3 changed, none failed."]
    statuses = {s.platform: s.status for s in ConnectSession.objects.all()}
    assert statuses == {
        "linkedin": "completed",
        "bluesky": "cancelled",
        "threads": "pending",
        "tiktok": "pending",
        "youtube": "expired",
    }
    assert ConnectedAccount.objects.filter(user=user, platform="linkedin").count() == 1


def test_refresh_reports_a_failing_session_with_code_and_request_id(admin_client, fake, user):
    failing = make_session(user, minutes_ago=20)
    fine = make_session(user, platform="bluesky", minutes_ago=10)
    fake.approve(failing.unipost_session_id)
    fake.approve(fine.unipost_session_id)
    fake.fail_next("get", 500, message="boom", headers={"X-Request-Id": "req_admin"}, times=3)
    answer = run_action(admin_client, ConnectSession, "refresh_from_unipost", [failing, fine])
    assert texts(answer) == [
        "Checked 2 sessions: 1 changed, 1 failed (INTERNAL_ERROR, HTTP 500).",
        f"Session {failing.pk} was not refreshed: INTERNAL_ERROR, HTTP 500, request id req_admin.",
    ]
    failing.refresh_from_db()
    assert (failing.status, failing.error_code) == ("pending", "INTERNAL_ERROR")
    assert failing.request_id == "req_admin"
    # Staff see the raw code and request id on the page too.
    page = admin_client.get(change(failing)).content.decode()
    assert "INTERNAL_ERROR" in page and "req_admin" in page


def test_refresh_reports_how_many_it_checked_changed_and_failed(admin_client, fake, user):
    failing = make_session(user, minutes_ago=25)
    approved = make_session(user, platform="bluesky", minutes_ago=20)
    denied = make_session(user, platform="threads", minutes_ago=15)
    waiting = make_session(user, platform="tiktok", minutes_ago=10)
    completed = completed_session(fake, user, platform="youtube", minutes_ago=5)
    fake.approve(approved.unipost_session_id)
    fake.deny(denied.unipost_session_id)
    # The oldest is refreshed first: its GET (and the client's retries) answer 503.
    fake.fail_next("get", 503, headers={"X-Request-Id": "req_busy"}, times=3)
    answer = run_action(
        admin_client, ConnectSession, "refresh_from_unipost", [failing, approved, denied, waiting, completed]
    )
    assert texts(answer) == [
        "Checked 5 sessions: 2 changed, 1 failed (INTERNAL_ERROR, HTTP 503).",
        f"Session {failing.pk} was not refreshed: INTERNAL_ERROR, HTTP 503, request id req_busy.",
    ]
    levels = [m.level_tag for m in get_messages(answer.wsgi_request)]
    assert levels == ["warning", "error"]


def test_refresh_of_one_session_with_nothing_to_change_is_a_success(admin_client, fake, user):
    session = make_session(user)
    answer = run_action(admin_client, ConnectSession, "refresh_from_unipost", [session])
    assert texts(answer) == ["Checked 1 session: 0 changed, none failed."]
    assert [m.level_tag for m in get_messages(answer.wsgi_request)] == ["success"]


def test_refresh_groups_the_reasons_and_lists_only_the_first_failures(admin_client, fake, user):
    sessions = [
        make_session(user, platform="linkedin", minutes_ago=29 - i) for i in range(LISTED_FAILURES + 3)
    ]
    # The client does not retry a 401: one injected answer per session.
    fake.fail_next("get", 401, times=LISTED_FAILURES + 1)
    fake.fail_next("get", 500, times=2 * 3)  # two more sessions, three tries each
    answer = run_action(admin_client, ConnectSession, "refresh_from_unipost", sessions)
    shown = texts(answer)
    total = LISTED_FAILURES + 3
    assert shown[0] == (
        f"Checked {total} sessions: 0 changed, {total} failed "
        f"({LISTED_FAILURES + 1} × UNAUTHORIZED, HTTP 401; 2 × INTERNAL_ERROR, HTTP 500)."  # noqa: RUF001
    )
    assert len(shown) == 1 + LISTED_FAILURES + 1
    assert all(m.startswith("Session ") and "was not refreshed" in m for m in shown[1:-1])
    assert shown[-1] == "3 more failures are not listed; each row keeps its error."
    assert next(m.level_tag for m in get_messages(answer.wsgi_request)) == "warning"


def test_disconnect_action_deletes_at_unipost_then_marks(admin_client, fake, user, other_user):
    completed_session(fake, user)
    completed_session(fake, other_user, platform="bluesky")
    first, second = ConnectedAccount.objects.order_by("pk")
    answer = run_action(admin_client, ConnectedAccount, "disconnect", [first, second])
    assert texts(answer) == ["Checked 2 accounts: 2 disconnected, none failed."]
    assert ("DELETE", f"/v1/accounts/{first.managed_account_id}") in fake.requests
    assert fake.accounts[first.managed_account_id].status == "disconnected"
    assert fake.accounts[second.managed_account_id].status == "disconnected"
    assert set(ConnectedAccount.objects.values_list("status", flat=True)) == {"disconnected"}


def test_disconnect_failure_marks_nothing_and_is_reported(admin_client, fake, user):
    completed_session(fake, user)
    account = ConnectedAccount.objects.get()
    fake.fail_next("delete", 503, headers={"X-Request-Id": "req_del"}, times=3)
    answer = run_action(admin_client, ConnectedAccount, "disconnect", [account])
    assert texts(answer) == [
        "Checked 1 account: 0 disconnected, 1 failed (INTERNAL_ERROR, HTTP 503).",
        f"{account} was not disconnected: INTERNAL_ERROR, HTTP 503, request id req_del.",
    ]
    account.refresh_from_db()
    assert account.status == "active"
    assert fake.accounts[account.managed_account_id].status == "active"


def test_disconnect_counts_the_accounts_already_disconnected(admin_client, fake, user, other_user):
    completed_session(fake, user)
    completed_session(fake, other_user, platform="bluesky")
    gone, live = ConnectedAccount.objects.order_by("pk")
    services.mark_disconnected(gone)
    fake.requests.clear()
    answer = run_action(admin_client, ConnectedAccount, "disconnect", [gone, live])
    assert texts(answer) == ["Checked 2 accounts: 1 disconnected, none failed. 1 was disconnected already."]
    assert fake.requests == [("DELETE", f"/v1/accounts/{live.managed_account_id}")]


def test_disconnect_that_lost_a_race_counts_as_already_disconnected(admin_client, fake, user, monkeypatch):
    completed_session(fake, user)
    account = ConnectedAccount.objects.get()
    # UniPost confirms, but a webhook marked the row first: this call changed nothing.
    monkeypatch.setattr(services, "disconnect_account", lambda account: False)
    answer = run_action(admin_client, ConnectedAccount, "disconnect", [account])
    assert texts(answer) == ["Checked 1 account: 0 disconnected, none failed. 1 was disconnected already."]


def test_actions_need_the_change_permission(client, fake, django_user_model, user):
    session = make_session(user)
    fake.approve(session.unipost_session_id)
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_connectsession"))
    client.force_login(viewer)
    page = client.get(changelist(ConnectSession)).content.decode()
    assert "refresh_from_unipost" not in page
    run_action(client, ConnectSession, "refresh_from_unipost", [session])
    session.refresh_from_db()
    assert session.status == "pending"
    assert not [r for r in fake.requests if r[0] == "GET"]


# -- secrets -----------------------------------------------------------------------


def test_hosted_url_only_on_the_change_page_of_a_pending_session_with_its_state_masked(
    admin_client, fake, user
):
    pending = make_session(user)
    done = make_session(user, platform="bluesky")
    fake.approve(done.unipost_session_id)
    services.reconcile_session(done)
    pending_page = admin_client.get(change(pending)).content.decode()
    masked = f"/connect/linkedin?session={pending.unipost_session_id}&amp;state=[redacted]"
    assert masked in pending_page
    assert hosted_state(pending) not in pending_page
    other_pages = [
        admin_client.get(change(done)).content.decode(),
        listed(admin_client, ConnectSession),
        listed(admin_client, ConnectSession, "?q=" + pending.unipost_session_id),
        listed(admin_client, ConnectSession, "?status__exact=pending"),
    ]
    for page in other_pages:
        assert hosted_state(pending) not in page
        assert hosted_state(done) not in page
        assert "state=" not in page


def test_api_key_and_webhook_secret_appear_nowhere(admin_client, fake, user):
    pending = make_session(user)
    done = completed_session(fake, user, platform="bluesky")
    account = ConnectedAccount.objects.get()
    event = services.apply_webhook_payload(fake.webhook("account.ping", {}).payload).event
    fake.fail_next("get", 401, times=1)
    pages = [
        admin_client.get(url).content.decode()
        for url in (
            changelist(ConnectSession),
            change(pending),
            change(done),
            changelist(ConnectedAccount),
            change(account),
            changelist(WebhookEvent),
            change(event),
            reverse("admin:index"),
        )
    ]
    pages.append(run_action(admin_client, ConnectSession, "refresh_from_unipost", [pending]).content.decode())
    fake.fail_next("delete", 422)
    pages.append(run_action(admin_client, ConnectedAccount, "disconnect", [account]).content.decode())
    for page in pages:
        assert API_KEY not in page
        assert WEBHOOK_SECRET not in page


# -- malformed selections ------------------------------------------------------------

MALFORMED_SELECTIONS = [
    pytest.param(ConnectSession, "refresh_from_unipost", ["not-a-uuid"], id="session-not-a-uuid"),
    pytest.param(ConnectSession, "refresh_from_unipost", ["1"], id="session-integer"),
    pytest.param(ConnectedAccount, "disconnect", ["abc"], id="account-letters"),
    pytest.param(ConnectedAccount, "disconnect", ["1.5"], id="account-decimal"),
    pytest.param(ConnectedAccount, "disconnect", ["9" * 30], id="account-beyond-bigint"),
    pytest.param(WebhookEvent, "delete_selected", ["abc"], id="webhook-event-letters"),
]


def _objects(fake: Any, user: Any, model: type) -> list[Any]:
    if model is ConnectSession:
        return [make_session(user)]
    if model is ConnectedAccount:
        completed_session(fake, user)
        return [ConnectedAccount.objects.get()]
    return [WebhookEvent.objects.create(event_key="sha256:abc", event_type="account.connected", payload={})]


def _state(model: type) -> list[tuple[Any, ...]]:
    return list(
        model.objects.order_by("pk").values_list("pk", "status" if model is not WebhookEvent else "result")
    )


@pytest.mark.parametrize("index", [True, False], ids=["action-bar", "confirmation"])
@pytest.mark.parametrize(("model", "action", "bad"), MALFORMED_SELECTIONS)
def test_action_with_a_malformed_selected_id_is_refused_with_a_message(
    admin_client, fake, user, model, action, bad, index
):
    good = _objects(fake, user, model)
    before = _state(model)
    fake.requests.clear()
    data: dict[str, Any] = {"action": action, "_selected_action": [str(good[0].pk), *bad]}
    if index:
        data["index"] = "0"  # what the changelist's action bar posts
    else:
        data["post"] = "yes"  # delete_selected's confirmation page
    answer = admin_client.post(changelist(model), data)
    assert answer.status_code == 302
    assert answer["Location"] == changelist(model)
    page = admin_client.get(answer["Location"])
    assert page.status_code == 200
    shown = texts(page)
    assert len(shown) == 1 and "not valid" in shown[0] and "nothing was changed" in shown[0].lower()
    # Not even the valid id in the selection was acted on.
    assert fake.requests == []
    assert _state(model) == before


def test_disconnect_through_a_wrong_base_url_marks_nothing(admin_client, fake, user):
    completed_session(fake, user)
    account = ConnectedAccount.objects.get()
    # What a route the server does not have answers: not "this account is already gone".
    fake.fail_next("delete", 404, body="404 page not found", headers={"X-Request-Id": "req_route"})
    answer = run_action(admin_client, ConnectedAccount, "disconnect", [account])
    assert texts(answer) == [
        "Checked 1 account: 0 disconnected, 1 failed (ENDPOINT_NOT_FOUND, HTTP 404).",
        f"{account} was not disconnected: ENDPOINT_NOT_FOUND, HTTP 404, request id req_route.",
    ]
    account.refresh_from_db()
    assert account.status == "active"


@pytest.mark.parametrize("lookup", ["url__startswith", "url__contains", "url__regex", "url"])
def test_the_session_changelist_cannot_filter_on_the_hosted_url(
    fake: Any, user: Any, admin_client: Any, lookup: str
) -> None:
    """Filtering on ``url`` would tell staff the hosted page's state one guess at a time."""
    session = start(user)
    prefix = session.url.split("state=")[0] + "state="
    answer = admin_client.get("/admin/unipost_connect/connectsession/", {lookup: prefix})
    # Django refuses a disallowed lookup (a 400, or the changelist's "?e=1" redirect).
    assert answer.status_code in (302, 400)
    assert str(session.pk) not in answer.content.decode()
