"""The Connections page, its template tags, the disconnect view, and secrets kept out of sight."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib import messages as django_messages
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages import get_messages
from django.db import connection
from django.template import Context, Template
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.faults import FAULTS, UNAVAILABLE, fault_id
from unipost_connect.models import ConnectedAccount, ConnectSession
from unipost_connect.platforms import ALL_PLATFORMS, PLATFORM_LABELS

pytestmark = pytest.mark.django_db

CONNECTIONS = "/unipost/connections/"


class Forms(HTMLParser):
    """Collects each <form>: its action, method, inputs and button texts."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append(
                {"action": a.get("action"), "method": a.get("method"), "inputs": {}, "buttons": []}
            )
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][a.get("name")] = a.get("value")
        elif tag == "button" and self.forms:
            self._in_button = True
            self.forms[-1]["buttons"].append({"type": a.get("type"), "text": ""})

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button:
            self.forms[-1]["buttons"][-1]["text"] += data


def forms_of(content: bytes | str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(content.decode() if isinstance(content, bytes) else content)
    return parser.forms


def connect_forms(content: bytes | str) -> list[dict[str, Any]]:
    return [f for f in forms_of(content) if f["action"] == reverse("unipost_connect:start")]


def disconnect_forms(content: bytes | str) -> list[dict[str, Any]]:
    return [f for f in forms_of(content) if "/disconnect/" in (f["action"] or "")]


def button_text(form: dict[str, Any]) -> str:
    return " ".join(form["buttons"][0]["text"].split())


def make_account(user: Any, platform: str = "linkedin", n: int = 1, **kw: Any) -> ConnectedAccount:
    return ConnectedAccount.objects.create(
        user=user,
        platform=platform,
        managed_account_id=f"sa_{platform}_{user.pk}_{n}",
        account_name=kw.pop("account_name", f"{platform} account {n}"),
        **kw,
    )


def connected_through_the_flow(fake: Any, client: Client) -> ConnectedAccount:
    client.post(reverse("unipost_connect:start"), {"platform": "linkedin"})
    session = ConnectSession.objects.order_by("-created_at").first()
    back = urlsplit(fake.approve(session.unipost_session_id, account_name="Alex Pro"))
    client.get(back.path + "?" + back.query)
    client.cookies.pop("messages", None)
    return ConnectedAccount.objects.get(
        managed_account_id=fake.sessions[session.unipost_session_id].managed_account_id
    )


# -- the page --------------------------------------------------------------------------------


def test_anonymous_users_go_to_the_login_page(client):
    answer = client.get(CONNECTIONS)
    assert answer.status_code == 302
    parts = urlsplit(answer["Location"])
    assert parts.path == settings.LOGIN_URL
    assert parse_qs(parts.query)["next"] == [CONNECTIONS]


def test_post_is_not_allowed(user_client):
    assert user_client.post(CONNECTIONS).status_code == 405


def test_empty_page(user_client):
    answer = user_client.get(CONNECTIONS)
    assert answer.status_code == 200
    html = answer.content.decode()
    assert '<h1 class="upc-title">Connections</h1>' in html
    assert html.count("Not connected</p>") == len(ALL_PLATFORMS)  # a card per platform
    assert disconnect_forms(html) == []


def test_a_connect_button_per_configured_platform_with_a_csrf_token(user_client):
    answer = user_client.get(CONNECTIONS)
    forms = connect_forms(answer.content)
    assert [f["inputs"]["platform"] for f in forms] == list(ALL_PLATFORMS)
    for form in forms:
        assert form["method"] == "post"
        assert form["inputs"]["csrfmiddlewaretoken"]
        assert form["inputs"]["next"] == CONNECTIONS
        assert form["buttons"][0]["type"] == "submit"
        assert button_text(form) == f"Connect {PLATFORM_LABELS[form['inputs']['platform']]}"


def test_only_the_configured_platforms_are_offered(user_client):
    with override_settings(
        UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "PLATFORMS": ["linkedin", "bluesky"]}
    ):
        answer = user_client.get(CONNECTIONS)
    assert [f["inputs"]["platform"] for f in connect_forms(answer.content)] == ["linkedin", "bluesky"]
    assert "X (Twitter)" not in answer.content.decode()


def test_accounts_are_listed_with_reconnect_and_disconnect(user_client, user, other_user):
    linkedin = make_account(user, "linkedin", account_name="Alex on LinkedIn")
    make_account(
        user, "bluesky", account_name="alex.bsky.social", status=ConnectedAccount.Status.DISCONNECTED
    )
    threads = make_account(
        user, "threads", account_name="alex.threads", status=ConnectedAccount.Status.RECONNECT_REQUIRED
    )
    make_account(other_user, "youtube", account_name="Blake's channel")

    answer = user_client.get(CONNECTIONS)
    html = answer.content.decode()

    assert "Connected as <strong>Alex on LinkedIn</strong>" in html
    assert "Needs reconnect" in html and "alex.threads" in html
    assert "alex.bsky.social" not in html  # disconnected: history, not a card's account
    assert linkedin.managed_account_id not in html and threads.managed_account_id not in html
    assert "Blake" not in html
    labels = {f["inputs"]["platform"]: button_text(f) for f in connect_forms(html)}
    assert labels["linkedin"] == "Reconnect LinkedIn"
    assert labels["threads"] == "Reconnect Threads"
    assert labels["bluesky"] == "Connect Bluesky"  # disconnected: connect anew
    assert labels["youtube"] == "Connect YouTube"  # another user's account
    disconnects = disconnect_forms(html)
    assert sorted(f["action"] for f in disconnects) == sorted(
        reverse("unipost_connect:disconnect", args=[a.pk]) for a in (linkedin, threads)
    )
    for form in disconnects:
        assert form["method"] == "post"
        assert form["inputs"]["csrfmiddlewaretoken"]
        assert form["inputs"]["next"] == CONNECTIONS
    # Behind a confirmation that needs no JavaScript: a <details> whose form says what goes.
    assert "Yes, disconnect Alex on LinkedIn (LinkedIn)" in [button_text(f) for f in disconnects]
    assert html.count('<details class="unipost-disconnect">') == 2


def test_an_account_without_a_name_still_has_a_named_button(user_client, user):
    make_account(user, "linkedin", account_name="")
    texts = [button_text(f) for f in disconnect_forms(user_client.get(CONNECTIONS).content)]
    assert texts == ["Yes, disconnect your LinkedIn account"]


def test_recent_sessions_and_messages_are_shown(fake, user_client):
    user_client.post(reverse("unipost_connect:start"), {"platform": "linkedin", "next": CONNECTIONS})
    session = ConnectSession.objects.get()
    back = urlsplit(fake.deny(session.unipost_session_id))
    landed = user_client.get(back.path + "?" + back.query)
    assert landed["Location"] == CONNECTIONS
    page = user_client.get(CONNECTIONS)
    html = page.content.decode()
    assert 'role="status"' in html
    assert "You declined the authorization, so no LinkedIn account was connected." in html
    assert "Recent connection attempts" in html
    assert "Not connected: you declined" in html
    # Shown once: the next page has no message.
    assert "You declined" not in user_client.get(CONNECTIONS).content.decode()


def test_the_page_is_accessible_html(user_client, user):
    make_account(user, "linkedin")
    html = user_client.get(CONNECTIONS).content.decode()
    assert re.search(r'<html lang="[a-z-]+"', html)
    assert "<script" not in html
    assert 'aria-labelledby="upc-accounts-heading"' in html
    assert re.search(r'<h3 class="upc-card__title">LinkedIn</h3>', html)
    assert 'aria-hidden="true"' in html  # the drawn monogram is decoration
    for form in forms_of(html):
        assert form["buttons"] and all(b["text"].strip() for b in form["buttons"])


# -- the template tag on its own ------------------------------------------------------------


def render_tag(source: str, request: Any, **context: Any) -> str:
    return Template("{% load unipost_connect %}" + source).render(Context({"request": request, **context}))


def test_connect_button_alone_queries_once(rf: RequestFactory, user):
    make_account(user, "linkedin")
    request = rf.get("/profile/?tab=1")
    request.user = user
    with CaptureQueriesContext(connection) as queries:
        html = render_tag('{% unipost_connect_button "linkedin" %}', request, csrf_token="tok")
    assert len(queries) == 1
    form = connect_forms(html)[0]
    assert button_text(form) == "Reconnect LinkedIn"
    assert form["inputs"] == {"csrfmiddlewaretoken": "tok", "platform": "linkedin", "next": "/profile/?tab=1"}


def test_connect_button_alone_for_anonymous_users(rf: RequestFactory):
    request = rf.get("/")
    request.user = AnonymousUser()
    with CaptureQueriesContext(connection) as queries:
        html = render_tag('{% unipost_connect_button "bluesky" next="/after/" %}', request, csrf_token="tok")
    assert len(queries) == 0
    form = connect_forms(html)[0]
    assert button_text(form) == "Connect Bluesky"
    assert form["inputs"]["next"] == "/after/"


def test_connect_button_uses_accounts_given_by_the_view(rf: RequestFactory, user):
    request = rf.get("/")
    request.user = user
    account = make_account(user, "linkedin")
    with CaptureQueriesContext(connection) as queries:
        html = render_tag(
            '{% unipost_connect_button "linkedin" %}{% unipost_connect_button "bluesky" %}',
            request,
            csrf_token="tok",
            unipost_connected_accounts={"linkedin": account},
        )
    assert len(queries) == 0
    assert [button_text(f) for f in connect_forms(html)] == ["Reconnect LinkedIn", "Connect Bluesky"]


def test_disconnect_button_alone(rf: RequestFactory, user):
    account = make_account(user, "linkedin", account_name="Alex")
    request = rf.get("/p/")
    request.user = user
    html = render_tag("{% unipost_disconnect_button account %}", request, csrf_token="tok", account=account)
    form = disconnect_forms(html)[0]
    assert form["action"] == reverse("unipost_connect:disconnect", args=[account.pk])
    assert form["inputs"] == {"csrfmiddlewaretoken": "tok", "next": "/p/"}
    assert button_text(form) == "Yes, disconnect Alex (LinkedIn)"
    assert "<summary" in html and "Disconnect" in html


# -- disconnecting ------------------------------------------------------------------------------


def disconnect_url(account: ConnectedAccount) -> str:
    return reverse("unipost_connect:disconnect", args=[account.pk])


def messages_of(response: Any) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def test_disconnect_marks_the_account_disconnected(fake, user_client):
    account = connected_through_the_flow(fake, user_client)
    answer = user_client.post(disconnect_url(account), {"next": CONNECTIONS})
    assert answer.status_code == 302
    assert answer["Location"] == CONNECTIONS
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED
    assert account.disconnected_at is not None
    assert fake.accounts[account.managed_account_id].status == "disconnected"
    assert messages_of(answer) == [(django_messages.SUCCESS, "Your LinkedIn account is disconnected.")]
    page = user_client.get(CONNECTIONS).content
    assert disconnect_forms(page) == []
    assert {f["inputs"]["platform"]: button_text(f) for f in connect_forms(page)}[
        "linkedin"
    ] == "Connect LinkedIn"


def test_disconnect_of_an_account_unipost_no_longer_has(fake, user_client, user):
    account = make_account(user, "linkedin")  # unknown to the fake: 404
    answer = user_client.post(disconnect_url(account))
    assert answer["Location"] == "/done/"
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED


# The shared table's faults (tests/faults.py) of a UniPost that cannot answer now: the
# connection, and 5xx answers.
DISCONNECT_FAULTS = [f for f in FAULTS if f.message == UNAVAILABLE and f.code != "INVALID_RESPONSE"]


@pytest.mark.parametrize("fault", DISCONNECT_FAULTS, ids=fault_id)
def test_disconnect_failure_shows_a_message_and_marks_nothing(fake, user_client, fault):
    account = connected_through_the_flow(fake, user_client)
    fault.inject(fake, "delete", {}, 10)  # outlasts every retry
    answer = user_client.post(disconnect_url(account), {"next": CONNECTIONS})
    assert answer.status_code == 302
    assert answer["Location"] == CONNECTIONS
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert fake.accounts[account.managed_account_id].status == "active"
    assert messages_of(answer) == [
        (
            django_messages.ERROR,
            "Your LinkedIn account could not be disconnected right now. Please try again in a few minutes.",
        )
    ]


def test_disconnect_rate_limited(fake, user_client):
    account = connected_through_the_flow(fake, user_client)
    fake.rate_limit_next("delete", retry_after=600)
    answer = user_client.post(disconnect_url(account))
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert messages_of(answer) == [
        (django_messages.ERROR, "Too many connection attempts right now. Please wait a minute and try again.")
    ]


def test_disconnect_another_users_account_is_a_404(fake, other_user, user):
    account = make_account(user, "linkedin")
    intruder = Client()
    intruder.force_login(other_user)
    assert intruder.post(disconnect_url(account)).status_code == 404
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert fake.requests == []


def test_disconnect_unknown_account_is_a_404(fake, user_client):
    assert user_client.post("/unipost/accounts/999999/disconnect/").status_code == 404


def test_disconnect_get_is_not_allowed(fake, user_client, user):
    account = make_account(user)
    assert user_client.get(disconnect_url(account)).status_code == 405
    assert fake.requests == []


def test_disconnect_anonymous_goes_to_the_login_page(fake, client, user):
    account = make_account(user)
    answer = client.post(disconnect_url(account), {"next": CONNECTIONS})
    parts = urlsplit(answer["Location"])
    assert parts.path == settings.LOGIN_URL
    assert parse_qs(parts.query)["next"] == [CONNECTIONS]
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE


def test_disconnect_requires_a_csrf_token(fake, csrf_client, user):
    account = make_account(user)
    assert csrf_client.post(disconnect_url(account)).status_code == 403
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.ACTIVE
    assert fake.requests == []
    # The page's own form carries a token that works.
    form = disconnect_forms(csrf_client.get(CONNECTIONS).content)[0]
    answer = csrf_client.post(form["action"], form["inputs"])
    assert answer.status_code == 302
    account.refresh_from_db()
    assert account.status == ConnectedAccount.Status.DISCONNECTED


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example", "javascript:alert(1)"])
def test_disconnect_drops_an_unsafe_next(fake, user_client, user, next_url):
    account = make_account(user)
    answer = user_client.post(disconnect_url(account), {"next": next_url})
    assert answer["Location"] == "/done/"


# -- secrets ---------------------------------------------------------------------------------------


def test_the_api_key_and_hosted_state_never_show_in_pages_or_logs(fake, user_client, user, caplog):
    caplog.set_level(logging.DEBUG)
    contents: list[bytes] = []

    def keep(answer: Any) -> Any:
        contents.append(answer.content)
        contents.extend(str(m).encode() for m in get_messages(answer.wsgi_request))
        return answer

    start = reverse("unipost_connect:start")
    # A completed flow.
    keep(user_client.post(start, {"platform": "linkedin", "next": CONNECTIONS}))
    done = ConnectSession.objects.get()
    back = urlsplit(fake.approve(done.unipost_session_id))
    keep(user_client.get(back.path + "?" + back.query))
    # A pending one, with a failed read and a forged return.
    keep(user_client.post(start, {"platform": "bluesky"}))
    pending = ConnectSession.objects.get(platform="bluesky")
    return_url = reverse("unipost_connect:return", kwargs={"session_id": pending.pk})
    fake.fail_next("get", 500, times=10)
    keep(user_client.get(return_url + "?connect_status=success"))
    keep(user_client.get(return_url + "?connect_status=success"))
    # Failed starts, of several kinds.
    for fault in (f for f in FAULTS if f.id in ("http-401", "http-422-other", "read-timeout")):
        fault.inject(fake, "create", {}, 1)
        keep(user_client.post(start, {"platform": "threads"}))
    with override_settings(UNIPOST_CONNECT={**settings.UNIPOST_CONNECT, "API_KEY": "up_test_other_key"}):
        keep(user_client.post(start, {"platform": "tiktok"}))
    # The pages.
    keep(user_client.get(CONNECTIONS))
    account = ConnectedAccount.objects.get()
    fake.fail_next("delete", 500, times=10)
    keep(user_client.post(disconnect_url(account)))
    keep(user_client.post(disconnect_url(account)))
    keep(user_client.get(CONNECTIONS))

    states = [s.state for s in fake.sessions.values()]
    assert len(states) == 2 and all(len(s) > 20 for s in states)
    secrets = ["up_test_key", "up_test_other_key", *states]
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    for secret in secrets:
        assert secret not in logged
        for content in contents:
            assert secret.encode() not in content
    # The hosted url (which carries the state) is not on the page either.
    assert b"app.unipost.test" not in b"".join(contents)
