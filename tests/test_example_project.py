"""The example project as a person uses it: real processes, real HTTP, real forms.

Each scenario starts ``manage.py runserver`` in a subprocess on a free loopback port
(migrated and seeded into a fresh database: SQLite, or a throwaway PostgreSQL database
when DATABASE_URL names a PostgreSQL server) and drives it with ``requests``, pressing
the buttons the pages actually render, CSRF tokens and all.

1. Against the embedded fake UniPost (no UNIPOST_API_BASE_URL): approve, deny, error,
   approve without returning (the account arrives by webhook), the admin.
2. Against the standalone fake server (``unipost_connect.testing.server``), with the
   API key and webhook secret from the environment: the project speaks the contract
   over real HTTP with the configured key, and a wrong key is a clear message.
3. On workers (``scripts/demo --workers``, UNIPOST_DEMO_WORKERS): tasks queue in the
   database (django-tasks-db) and a ``manage.py db_worker`` process applies the webhook
   the site stored ``received``.

The processes' logs are kept and checked: no API key, webhook secret, Django secret
key or hosted-page state in them, and no 5xx.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from tests.example_site import (
    EXAMPLE_PROJECT,
    Site,
    cleanups,
    free_port,
    site_env,
    start_site,
    stop,
    wait_until,
)
from unipost_connect.testing import FakeUniPost
from unipost_connect.testing.server import FakeUniPostServer

pytestmark = pytest.mark.e2e  # real processes: run once, not in the version matrix

REPO = Path(__file__).resolve().parents[1]
CONNECTIONS = "/unipost/connections/"


# -- processes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finalizers() -> Iterator[list[Callable[[], None]]]:
    """Clean-ups run in reverse order at the end of the module, even after failures."""
    with cleanups() as done:
        yield done


# -- a small browser ----------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[dict[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._button: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = Form(attributes.get("action", ""), attributes.get("method", "get").lower())
            self.forms.append(self._form)
        elif self._form is not None and tag == "input" and attributes.get("name"):
            if attributes.get("type") == "submit":
                self._form.buttons.append(
                    {
                        "name": attributes["name"],
                        "value": attributes.get("value", ""),
                        "text": attributes.get("value", ""),
                    }
                )
            else:
                self._form.fields.append((attributes["name"], attributes.get("value", "")))
        elif self._form is not None and tag == "button":
            self._button = {
                "name": attributes.get("name", ""),
                "value": attributes.get("value", ""),
                "text": "",
            }
            self._form.buttons.append(self._button)

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self._button["text"] = " ".join(self._button["text"].split())
            self._button = None
        elif tag == "form":
            self._form = None


class Browser:
    """``requests.Session`` that reads pages and presses their buttons like a person."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.page: requests.Response | None = None

    def open(self, path_or_url: str) -> requests.Response:
        self.page = self.http.get(urljoin(self.base_url, path_or_url), timeout=15)
        return self.page

    @property
    def url(self) -> str:
        assert self.page is not None
        return self.page.url

    @property
    def text(self) -> str:
        assert self.page is not None
        return self.page.text

    def forms(self) -> list[Form]:
        parser = _FormParser()
        parser.feed(self.text)
        return parser.forms

    def press(self, button_text: str, **values: str) -> requests.Response:
        """Submit the form holding the button labelled ``button_text``, with ``values`` typed in."""
        for form in self.forms():
            for button in form.buttons:
                if button["text"] == button_text:
                    data = [(k, values.pop(k, v)) for k, v in form.fields]
                    data += list(values.items())
                    if button["name"]:
                        data.append((button["name"], button["value"]))
                    target = urljoin(self.url, form.action or self.url)
                    origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.url))
                    self.page = self.http.request(
                        form.method.upper(),
                        target,
                        data=data,
                        timeout=15,
                        headers={"Origin": origin, "Referer": self.url},
                    )
                    return self.page
        labels = [b["text"] for f in self.forms() for b in f.buttons]
        raise AssertionError(f"no button {button_text!r} on {self.url}; buttons: {labels}")

    def messages(self) -> list[tuple[str, str]]:
        """(level, text) of the Django messages shown on the page."""
        found = re.findall(r'<li class="unipost-message ([^"]*)">(.*?)</li>', self.text, re.S)
        return [(level.strip(), html.unescape(text).strip()) for level, text in found]

    def accounts(self) -> list[tuple[str, str, str, int]]:
        """The accounts on the Connections page's cards: (status, platform, name, local id)."""
        found = []
        for card in self.text.split('<li class="upc-card ')[1:]:
            card = card.split("</section>")[0]
            platform = _text(re.search(r'<h3 class="upc-card__title">(.*?)</h3>', card, re.S).group(1))
            for status, pk, body in re.findall(
                r'<li class="upc-account upc-status-([\w-]+)" id="upc-account-(\d+)">(.*?)</li>', card, re.S
            ):
                state = re.search(r'<p class="upc-account__state">(.*?)</p>', body, re.S)
                name = re.search(r"<strong>(.*?)</strong>", state.group(1), re.S) if state else None
                found.append((status, platform, _text(name.group(1)) if name else "", int(pk)))
        return found

    def sessions(self) -> list[tuple[str, str]]:
        """(status class, platform) of the recent attempts the Connections page lists."""
        return [
            (status, _text(platform))
            for status, platform in re.findall(
                r'<li class="upc-attempt upc-status-([\w-]+)">'
                r'<span class="upc-attempt__platform">(.*?)</span>',
                self.text,
                re.S,
            )
        ]

    def log_in(self, username: str = "demo", password: str = "demo") -> None:
        self.open("/login/")
        self.press("Log in", username=username, password=password)
        assert self.page is not None and self.page.status_code == 200
        assert urlsplit(self.url).path == CONNECTIONS, self.url


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def _assert_clean_log(site: Site, states: list[str]) -> None:
    log = site.log()
    assert "Starting development server" in log
    for secret in site.secrets + states:
        assert secret not in log, "a secret appears in the example project's log"
    assert "Traceback" not in log, site.tail()
    assert not re.search(r'HTTP/1\.1" 5\d\d ', log), site.tail()


# -- scenario 1: the embedded fake ---------------------------------------------------------

EMBEDDED_KEY = "up_test_embedded_" + secrets.token_hex(4)
EMBEDDED_SECRET = "whsec_embedded_" + secrets.token_hex(4)
DJANGO_SECRET = "django-secret-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def embedded_site(tmp_path_factory: pytest.TempPathFactory, finalizers: list[Callable[[], None]]) -> Site:
    tmp = tmp_path_factory.mktemp("embedded")
    site = start_site(
        tmp,
        free_port(),
        {
            "UNIPOST_API_KEY": EMBEDDED_KEY,
            "UNIPOST_WEBHOOK_SECRET": EMBEDDED_SECRET,
            "SECRET_KEY": DJANGO_SECRET,
            "DEBUG": "true",
        },
        finalizers,
    )
    site.secrets += [EMBEDDED_KEY, EMBEDDED_SECRET, DJANGO_SECRET]
    return site


@pytest.fixture(scope="module")
def embedded_states() -> list[str]:
    return []  # hosted-page states seen, checked against the log at the end


@pytest.fixture(scope="module")
def demo(embedded_site: Site) -> Browser:
    browser = Browser(embedded_site.base_url)
    browser.log_in()
    return browser


def _start(browser: Browser, label: str, states: list[str], base_url: str) -> None:
    browser.open(CONNECTIONS)
    browser.press(f"Connect {label}")
    assert browser.page is not None and browser.page.status_code == 200, browser.text
    assert browser.url.startswith(base_url + "/connect/"), browser.url
    assert "Approve" in browser.text
    states.append(_state_of(browser.url))


def test_connections_page_offers_every_platform(demo: Browser) -> None:
    demo.open("/")
    assert urlsplit(demo.url).path == CONNECTIONS
    labels = {b["text"] for f in demo.forms() for b in f.buttons}
    assert {
        "Connect LinkedIn",
        "Connect X (Twitter)",
        "Connect Bluesky",
        "Connect YouTube",
        "Connect TikTok",
        "Connect Instagram",
        "Connect Threads",
        "Connect Facebook",
        "Connect Pinterest",
    } <= labels


def test_anonymous_user_is_sent_to_log_in(embedded_site: Site) -> None:
    answer = requests.get(embedded_site.base_url + CONNECTIONS, timeout=5)
    assert urlsplit(answer.url).path == "/login/"


def test_approve_connects_the_account(demo: Browser, embedded_site: Site, embedded_states: list[str]) -> None:
    _start(demo, "LinkedIn", embedded_states, embedded_site.base_url + "/fake-unipost")
    demo.press("Approve", account_name="Ada on LinkedIn")
    assert urlsplit(demo.url).path == CONNECTIONS
    assert demo.messages() == [("success", "Your LinkedIn account is connected.")]
    [account] = [row for row in demo.accounts() if row[1] == "LinkedIn"]
    assert account[0] == "active"
    # Named right after the return (the return reads UniPost's account list).
    assert account[2] == "Ada on LinkedIn"
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", demo.text)  # no internal ids shown
    assert "Reconnect LinkedIn" in {b["text"] for f in demo.forms() for b in f.buttons}

    # The fake's signed webhook follows 0.2 s later: accepted, and nothing is doubled.
    def webhook_stored() -> bool:
        demo.open("/admin/unipost_connect/webhookevent/")
        return "account.connected" in demo.text

    assert wait_until(webhook_stored, timeout=10), "the embedded fake's webhook never arrived"
    demo.open(CONNECTIONS)
    [account] = [row for row in demo.accounts() if row[1] == "LinkedIn"]
    assert account[0] == "active" and account[2] == "Ada on LinkedIn", account


def test_deny_says_nothing_was_connected(
    demo: Browser, embedded_site: Site, embedded_states: list[str]
) -> None:
    _start(demo, "X (Twitter)", embedded_states, embedded_site.base_url + "/fake-unipost")
    demo.press("Deny")
    assert urlsplit(demo.url).path == CONNECTIONS
    assert demo.messages() == [
        ("warning", "You declined the authorization, so no X (Twitter) account was connected.")
    ]
    assert "X (Twitter)" not in [row[1] for row in demo.accounts()]
    assert ("cancelled", "X (Twitter)") in demo.sessions()


def test_error_says_what_happened(demo: Browser, embedded_site: Site, embedded_states: list[str]) -> None:
    _start(demo, "Bluesky", embedded_states, embedded_site.base_url + "/fake-unipost")
    demo.press("Error")
    assert urlsplit(demo.url).path == CONNECTIONS
    assert demo.messages() == [
        ("error", "Bluesky reported a problem while connecting, so nothing was connected. You can try again.")
    ]
    assert "Bluesky" not in [row[1] for row in demo.accounts()]
    assert ("pending", "Bluesky") in demo.sessions()  # UniPost lets the user try again


def test_approve_without_returning_arrives_by_webhook(
    demo: Browser, embedded_site: Site, embedded_states: list[str]
) -> None:
    _start(demo, "YouTube", embedded_states, embedded_site.base_url + "/fake-unipost")
    demo.press("Approve without returning")
    assert demo.url.startswith(embedded_site.base_url + "/fake-unipost/")  # the browser never comes back
    assert "Your account is connected" in demo.text

    def youtube_listed() -> bool:
        demo.open(CONNECTIONS)
        return "YouTube" in [row[1] for row in demo.accounts()]

    assert wait_until(youtube_listed, timeout=10, interval=0.2), "the webhook never connected YouTube"
    assert ("completed", "YouTube") in demo.sessions()
    assert demo.messages() == []  # no return, so no message: the page simply shows it


def test_admin_lists_sessions_with_their_states(demo: Browser) -> None:
    demo.open("/admin/unipost_connect/connectsession/")
    assert demo.page is not None and demo.page.status_code == 200
    rows = "\n".join(_text(row) for row in re.findall(r"<tr.*?</tr>", demo.text, re.S))
    for platform, status in (
        ("LinkedIn", "Completed"),
        ("X (Twitter)", "Cancelled"),
        ("Bluesky", "Pending"),
        ("YouTube", "Completed"),
    ):
        assert re.search(rf"{re.escape(platform)}\s.*{status}", rows), (platform, status, rows)
    demo.open("/admin/unipost_connect/connectedaccount/")
    assert demo.page is not None and demo.page.status_code == 200
    assert "Ada on LinkedIn" in demo.text


def test_admin_never_shows_secrets(demo: Browser, embedded_states: list[str]) -> None:
    """Issue 2: "the API key and the hosted state never shown" -- lists and detail pages."""
    demo.open("/admin/unipost_connect/connectsession/")
    links = sorted(
        set(re.findall(r'href="(/admin/unipost_connect/connectsession/[0-9a-f-]{36}/change/)"', demo.text))
    )
    assert len(links) == 4
    pages = {demo.url: demo.text}
    for link in [*links, "/admin/unipost_connect/connectedaccount/", "/admin/unipost_connect/webhookevent/"]:
        assert demo.open(link).status_code == 200
        pages[demo.url] = demo.text
    assert len(embedded_states) == 4
    for url, page in pages.items():
        assert EMBEDDED_KEY not in page, url
        shown = [state for state in embedded_states if state in page]
        assert not shown, f"the admin page {url} shows a hosted page's bearer state"


def test_embedded_site_log_keeps_secrets(embedded_site: Site, embedded_states: list[str]) -> None:
    assert len(embedded_states) == 4
    assert "/fake-unipost/connect/" in embedded_site.log()  # the hosted page was logged...
    _assert_clean_log(embedded_site, embedded_states)  # ...without its state


# -- scenario 2: the standalone fake server ------------------------------------------------

REAL_KEY = "up_test_real"
REAL_SECRET = "whsec_real"


def test_a_team_shares_its_accounts_and_a_failed_refresh_is_reconnected(
    demo: Browser, embedded_site: Site, embedded_states: list[str]
) -> None:
    """demo and alex are team Acme, sam is alone (demo/teams.py); the demo's "Try a
    reconnect" page makes the embedded fake fail a token refresh."""
    _start(demo, "Pinterest", embedded_states, embedded_site.base_url + "/fake-unipost")
    demo.press("Approve", account_name="Acme on Pinterest")
    [row] = [row for row in demo.accounts() if row[1] == "Pinterest"]
    account_id = row[3]
    alex, sam = Browser(embedded_site.base_url), Browser(embedded_site.base_url)
    alex.log_in("alex", "alex")
    sam.log_in("sam", "sam")
    assert [r[3] for r in alex.accounts() if r[1] == "Pinterest"] == [account_id]
    assert [r for r in sam.accounts() if r[1] == "Pinterest"] == []

    demo.open("/reconnect-tools/")
    demo.press("Fail the token refresh of Acme on Pinterest (Pinterest)")
    assert demo.messages()[0][0] == "info"

    def needs_reconnect() -> bool:
        alex.open(CONNECTIONS)
        return [r[0] for r in alex.accounts() if r[1] == "Pinterest"] == ["reconnect_required"]

    assert wait_until(needs_reconnect, timeout=10, interval=0.2), "the refresh failure never arrived"
    assert "UniPost can no longer post with it until you reconnect it." in _text(alex.text)
    alex.press("Reconnect Pinterest")  # a teammate reconnects the team's account
    assert alex.url.startswith(embedded_site.base_url + "/fake-unipost/connect/"), alex.url
    embedded_states.append(_state_of(alex.url))
    alex.press("Approve")
    assert alex.messages() == [("success", "Your Pinterest account is connected.")]
    # The same account (one row per managed account), active again.
    assert [r[0::3] for r in alex.accounts() if r[1] == "Pinterest"] == [("active", account_id)]


@dataclass
class Standalone:
    site: Site
    server: FakeUniPostServer
    fake: FakeUniPost
    states: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory, finalizers: list[Callable[[], None]]) -> Standalone:
    tmp = tmp_path_factory.mktemp("standalone")
    port = free_port()
    fake = FakeUniPost(api_key=REAL_KEY, webhook_secret=REAL_SECRET)
    server = FakeUniPostServer(
        fake, "127.0.0.1", 0, webhook_url=f"http://127.0.0.1:{port}/unipost/webhook/", webhook_delay=0.1
    ).start()
    finalizers.append(server.stop)
    django_secret = "django-secret-" + secrets.token_hex(16)
    site = start_site(
        tmp,
        port,
        {
            "UNIPOST_API_BASE_URL": server.base_url,
            "UNIPOST_API_KEY": REAL_KEY,
            "UNIPOST_WEBHOOK_SECRET": REAL_SECRET,
            "SECRET_KEY": django_secret,
            "DEBUG": "false",
        },
        finalizers,
    )
    site.secrets += [REAL_KEY, REAL_SECRET, django_secret]
    return Standalone(site, server, fake)


def test_flow_against_the_standalone_fake(standalone: Standalone) -> None:
    server, fake = standalone.server, standalone.fake
    browser = Browser(standalone.site.base_url)
    browser.log_in()
    assert not server.log  # the embedded fake is off: nothing called yet
    _start(browser, "LinkedIn", standalone.states, server.base_url)
    browser.press("Approve")
    assert urlsplit(browser.url).path == CONNECTIONS
    assert browser.messages() == [("success", "Your LinkedIn account is connected.")]
    [session] = fake.sessions.values()
    assert session.status == "completed"
    assert (session.return_url or "").startswith(standalone.site.base_url + "/unipost/return/")
    [account] = browser.accounts()
    browser.open(f"/admin/unipost_connect/connectedaccount/{account[3]}/change/")
    assert session.managed_account_id in browser.text  # staff see the managed id; users do not

    api_calls = [
        (r.method, r.path, r.status, r.authorized) for r in server.log if not r.path.startswith("/connect/")
    ]
    assert api_calls[:2] == [
        ("POST", "/v1/connect/sessions", 201, True),  # the configured key, over real HTTP
        ("GET", f"/v1/connect/sessions/{session.id}", 200, True),
    ]
    # The account's name, read on the way back unless the webhook brought it first.
    assert api_calls[2:] in ([], [("GET", "/v1/accounts", 200, True)])
    # The webhook the fake signed with the configured secret was accepted.
    assert server.webhooks is not None and server.webhooks.wait(10)
    [delivery] = server.webhooks.results
    assert (delivery.event, delivery.status) == ("account.connected", 200)


def test_a_key_the_api_refuses_is_a_clear_message(standalone: Standalone) -> None:
    server, fake = standalone.server, standalone.fake
    browser = Browser(standalone.site.base_url)
    browser.log_in()
    fake.api_key = "up_test_rotated_elsewhere"  # the site's key no longer matches
    try:
        browser.open(CONNECTIONS)
        browser.press("Connect Instagram")
    finally:
        fake.api_key = REAL_KEY
    assert browser.page is not None and browser.page.status_code == 200
    assert urlsplit(browser.url).path == CONNECTIONS
    assert browser.messages() == [
        ("error", "The connection service is misconfigured on this site. Please contact the site's support.")
    ]
    last = server.log[-1]
    assert (last.path, last.status, last.authorized) == ("/v1/connect/sessions", 401, False)
    assert ("failed", "Instagram") in browser.sessions()


def test_standalone_site_log_keeps_secrets(standalone: Standalone) -> None:
    assert standalone.states
    _assert_clean_log(standalone.site, standalone.states)


# -- scenario 3: the demo on workers (scripts/demo --workers) --------------------------------

WORKERS_KEY = "up_test_workers_" + secrets.token_hex(4)
WORKERS_SECRET = "whsec_workers_" + secrets.token_hex(4)


@dataclass
class WorkersDemo:
    site: Site
    env: dict[str, str]  # the site's environment, for its db_worker
    tmp: Path
    states: list[str] = field(default_factory=list)
    worker_log: Path | None = None


@pytest.fixture(scope="module")
def workers_demo(
    tmp_path_factory: pytest.TempPathFactory, finalizers: list[Callable[[], None]]
) -> WorkersDemo:
    tmp = tmp_path_factory.mktemp("workers")
    port = free_port()
    django_secret = "django-secret-" + secrets.token_hex(16)
    extra = {
        "UNIPOST_DEMO_WORKERS": "true",
        # What the demo runs on: a SQLite file that runserver and the worker share.
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "UNIPOST_API_KEY": WORKERS_KEY,
        "UNIPOST_WEBHOOK_SECRET": WORKERS_SECRET,
        "SECRET_KEY": django_secret,
        "DEBUG": "true",
    }
    site = start_site(tmp, port, extra, finalizers)
    site.secrets += [WORKERS_KEY, WORKERS_SECRET, django_secret]
    return WorkersDemo(site, site_env(tmp, port, extra["DATABASE_URL"], extra), tmp)


def _start_worker(demo: WorkersDemo, finalizers: list[Callable[[], None]]) -> subprocess.Popen[bytes]:
    """One ``manage.py db_worker`` beside the site, as scripts/demo --workers starts it."""
    demo.worker_log = demo.tmp / "worker.log"
    log = open(demo.worker_log, "ab")
    finalizers.append(log.close)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.2"],
        cwd=EXAMPLE_PROJECT,
        env=demo.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    finalizers.append(partial(stop, process))
    return process


def _webhook_events(browser: Browser) -> list[tuple[str, str]]:
    """(event, result) of each stored webhook event, as the admin lists them."""
    browser.open("/admin/unipost_connect/webhookevent/")
    assert browser.page is not None and browser.page.status_code == 200
    table = re.search(r'<table id="result_list">(.*?)</table>', browser.text, re.S)
    if table is None:  # no events yet
        return []
    body = table.group(1).split("<tbody>", 1)[-1]
    rows = [
        [_text(cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]
    return [(cells[2], cells[3]) for cells in rows]  # after the checkbox and the event key


def test_workers_demo_applies_the_webhook_on_the_worker(
    workers_demo: WorkersDemo, finalizers: list[Callable[[], None]]
) -> None:
    site = workers_demo.site
    demo = Browser(site.base_url)
    demo.log_in()
    _start(demo, "YouTube", workers_demo.states, site.base_url + "/fake-unipost")
    demo.press("Approve without returning")
    assert "Your account is connected" in demo.text  # the browser never comes back

    # No worker runs yet: the webhook is stored "received" and nothing of it is applied.
    received = [("account.connected", "Received")]
    assert wait_until(lambda: _webhook_events(demo) == received, timeout=10), _webhook_events(demo)
    demo.open(CONNECTIONS)
    assert "YouTube" not in [row[1] for row in demo.accounts()]
    assert ("pending", "YouTube") in demo.sessions()

    worker = _start_worker(workers_demo, finalizers)

    def youtube_listed() -> bool:
        if worker.poll() is not None:
            assert workers_demo.worker_log is not None
            pytest.fail(f"db_worker exited with {worker.returncode}:\n{workers_demo.worker_log.read_text()}")
        demo.open(CONNECTIONS)
        return "YouTube" in [row[1] for row in demo.accounts()]

    assert wait_until(youtube_listed, timeout=20, interval=0.2), "the worker never connected YouTube"
    [account] = [row for row in demo.accounts() if row[1] == "YouTube"]
    assert account[0] == "active", account
    assert ("completed", "YouTube") in demo.sessions()
    assert demo.messages() == []
    assert _webhook_events(demo) == [("account.connected", "Applied")]  # the same event, applied once

    assert workers_demo.worker_log is not None
    worker_log = workers_demo.worker_log.read_text(errors="replace")
    assert "path=unipost_connect.tasks.process_webhook_event state=SUCCESSFUL" in worker_log, worker_log
    assert "Traceback" not in worker_log, worker_log
    for secret in site.secrets + workers_demo.states:
        assert secret not in worker_log, "a secret appears in the worker's log"
    _assert_clean_log(site, workers_demo.states)


# -- settings from the environment and a .env file -------------------------------------------


def _settings_of(tmp: Path, env_file: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = site_env(tmp, 8000, f"sqlite:///{tmp / 'unused.sqlite3'}", {})
    environment.pop("DATABASE_URL")
    environment.update(ENV_FILE=env_file, **env)
    code = (
        "import json; from django.conf import settings as s; c = s.UNIPOST_CONNECT; print(json.dumps({"
        "'key_suffix': c['API_KEY'][-4:], 'base': c['API_BASE_URL'], 'secrets': len(c['WEBHOOK_SECRET']),"
        "'profile': c['PROFILE_ID'], 'db': str(s.DATABASES['default']['NAME']), 'debug': s.DEBUG,"
        "'hosts': s.ALLOWED_HOSTS, 'secret_key_suffix': s.SECRET_KEY[-4:]}))"
    )
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=EXAMPLE_PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_come_from_a_env_file_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "demo.env"
    env_file.write_text(
        "UNIPOST_API_KEY=up_test_fromfile_abcd\n"
        "UNIPOST_API_BASE_URL=https://api.unipost.dev\n"
        "UNIPOST_WEBHOOK_SECRET=whsec_old,whsec_new\n"
        "UNIPOST_PROFILE_ID=pr_file\n"
        f"DATABASE_URL=sqlite:///{tmp_path / 'from-file.sqlite3'}\n"
        "SECRET_KEY=from-file-secret-wxyz\n"
        "DEBUG=false\n"
        "ALLOWED_HOSTS=demo.example.com,localhost\n"
    )
    done = _settings_of(tmp_path, str(env_file), UNIPOST_PROFILE_ID="pr_env")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "key_suffix": "abcd",
        "base": "https://api.unipost.dev",
        "secrets": 2,
        "profile": "pr_env",
        "db": str(tmp_path / "from-file.sqlite3"),
        "debug": False,
        "hosts": ["demo.example.com", "localhost"],
        "secret_key_suffix": "wxyz",
    }


def test_debug_off_needs_a_secret_key(tmp_path: Path) -> None:
    done = _settings_of(tmp_path, str(tmp_path / "absent.env"), DEBUG="false")
    assert done.returncode != 0
    assert "Set SECRET_KEY" in done.stderr


def test_env_example_documents_every_setting() -> None:
    example = (EXAMPLE_PROJECT / ".env.example").read_text()
    settings_py = (EXAMPLE_PROJECT / "demo" / "settings.py").read_text()
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, re.M))
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', settings_py))
    design = {
        "UNIPOST_API_KEY",
        "UNIPOST_API_BASE_URL",
        "UNIPOST_WEBHOOK_SECRET",
        "UNIPOST_PROFILE_ID",
        "DATABASE_URL",
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
    }
    assert design <= read
    assert read <= documented | {"ENV_FILE"}
