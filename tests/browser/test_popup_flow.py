"""The popup flow in a real browser: the example project's "Headless" page, which connects
accounts with connect.js and the JSON API only, driven in Chromium.

Twice over: with the embedded fake UniPost (the hosted page on the site's own origin, so
the popup stays reachable from its opener), and with the standalone fake on another port
whose hosted page sends ``Cross-Origin-Opener-Policy: same-origin``, which cuts the popup
off from the page that opened it; the flow must still complete and report.

Each test uses its own platform, so no test reuses another's pending session. Final pages
are saved under artifacts/screenshots/popup-*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.example_site import free_port, start_site
from unipost_connect.testing import FakeUniPost
from unipost_connect.testing.server import FakeUniPostServer

pytestmark = pytest.mark.browser

HEADLESS_PATH = "/headless/"
SESSIONS_API = "/unipost/api/sessions/"
COOP_KEY = "up_test_popup_coop"
COOP_SECRET = "whsec_popup_coop"
OTHER_ORIGIN = "http://other-origin.test"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


@dataclass
class Flow:
    """A connect flow started from the Headless page: its popup and the created session."""

    popup: Any
    session: dict[str, Any]


def log_in_to_headless(page: Any, base_url: str) -> None:
    expect = _expect()
    page.goto(f"{base_url}/login/?next={HEADLESS_PATH}")
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + HEADLESS_PATH)
    expect(page.get_by_role("heading", level=1, name="Headless connections")).to_be_visible()
    # connect.js and the page's script have run, and the first account list has arrived.
    page.wait_for_function("() => window.UniPostConnect !== undefined")
    expect(page.locator("#accounts")).to_have_attribute("aria-busy", "false")


def connect_button(page: Any, label: str) -> Any:
    return page.get_by_role("button", name=re.compile(rf"^(Re)?connect {re.escape(label)}$", re.I))


def events(page: Any) -> Any:
    return page.locator("#events")


def outcome(page: Any) -> Any:
    return page.locator("#outcome")


def is_create(response: Any) -> bool:
    return urlsplit(response.url).path == SESSIONS_API and response.request.method == "POST"


def start_popup(page: Any, label: str) -> Flow:
    """Press Connect ``label``: the popup opens and shows the fake's hosted page."""
    expect = _expect()
    with page.expect_popup() as popup_info, page.expect_response(is_create) as created_info:
        connect_button(page, label).click()
    created = created_info.value
    assert created.status == 201, created.text()
    popup = popup_info.value
    expect(popup.get_by_role("heading", name=f"Connect your {label} account")).to_be_visible()
    expect(page.locator("#waiting")).to_be_visible()
    return Flow(popup, created.json())


def popup_state(page: Any) -> Any:
    """What connect.js reported of the popup (onPopupState), as the demo page shows it."""
    return page.locator("#waiting")


def press_and_wait_for_close(flow: Flow, choice: str) -> None:
    """Press ``choice`` on the hosted page; the popup's last page closes it by itself."""
    with flow.popup.expect_event("close", timeout=15_000):
        flow.popup.get_by_role("button", name=choice, exact=True).click(no_wait_after=True)


def wait_for(condition: Callable[[], Any], page: Any, timeout: float = 10.0) -> None:
    """Until ``condition()`` holds, letting Playwright dispatch its events meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(20)


def api_session(page: Any, session_id: str) -> dict[str, Any]:
    """GET api-session from the page (the user's cookies), as connect.js does."""
    answer: dict[str, Any] = page.evaluate(
        """async (id) => {
            const url = UniPostConnect.urlFor(UniPostConnect.getConfig().sessionUrl, id);
            return await UniPostConnect.request(url);
        }""",
        session_id,
    )
    return answer


def shoot(page: Any, directory: Path, name: str) -> None:
    path = directory / f"popup-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


def expect_connected(page: Any, label: str) -> None:
    expect = _expect()
    expect(events(page)).to_contain_text("onSuccess: completed")
    expect(outcome(page)).to_have_text(f"Your {label} account is connected.")
    expect(page.locator("#waiting")).to_be_hidden()
    account = page.locator("#accounts > li").filter(has_text=f"{label}:")
    expect(account).to_have_count(1)
    expect(account).to_contain_text("(Active)")
    expect(connect_button(page, label)).to_have_text(f"Reconnect {label}")


# -- the embedded fake: the popup stays reachable ---------------------------------------------


def test_popup_approve_connects_and_reports(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    log_in_to_headless(page, demo_site)
    flow = start_popup(page, "LinkedIn")
    assert flow.session["status"] == "pending"
    assert flow.session["platform"] == "linkedin"
    shoot(flow.popup, screenshot_dir, "hosted-page")
    press_and_wait_for_close(flow, "Approve")
    expect_connected(page, "LinkedIn")
    # Once: one report, confirmed once, one callback.
    expect(events(page).locator("li")).to_have_text(
        ['connect("linkedin")', re.compile(r"^onSuccess: completed")]
    )
    assert api_session(page, flow.session["id"])["status"] == "completed"
    shoot(page, screenshot_dir, "approve")


def test_popup_deny_reports_an_error(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    log_in_to_headless(page, demo_site)
    flow = start_popup(page, "Bluesky")
    press_and_wait_for_close(flow, "Deny")
    expect(events(page)).to_contain_text("onError: cancelled")
    expect(outcome(page)).to_have_text("The authorization was declined.")
    expect(page.locator("#accounts > li").filter(has_text="Bluesky:")).to_have_count(0)
    assert api_session(page, flow.session["id"])["status"] == "cancelled"
    shoot(page, screenshot_dir, "deny")


def test_popup_hosted_error_reports_an_error(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    log_in_to_headless(page, demo_site)
    flow = start_popup(page, "YouTube")
    press_and_wait_for_close(flow, "Error")
    expect(events(page)).to_contain_text("onError: error")
    # The API's words, the same the full-page flow shows.
    expect(outcome(page)).to_have_text(
        "YouTube reported a problem while connecting, so nothing was connected. You can try again."
    )
    # The session stays pending at UniPost: the user may try again until it expires.
    assert api_session(page, flow.session["id"])["status"] == "pending"
    shoot(page, screenshot_dir, "hosted-error")


def test_closing_the_popup_reports_close_and_the_session_reconciles_later(
    page: Any, demo_site: str, screenshot_dir: Path
) -> None:
    expect = _expect()
    log_in_to_headless(page, demo_site)
    flow = start_popup(page, "TikTok")
    hosted_url = flow.popup.url
    expect(popup_state(page)).to_have_attribute("data-popup", "open")  # so its close is believed
    flow.popup.close()  # as the user's click on the window's close button does
    expect(events(page)).to_contain_text("onClose: pending")
    expect(outcome(page)).to_have_text("The popup was closed before your TikTok connection was finished.")
    expect(page.locator("#waiting")).to_be_hidden()
    assert "onError" not in events(page).inner_text()
    assert api_session(page, flow.session["id"])["status"] == "pending"
    shoot(page, screenshot_dir, "closed")

    # Later the user finishes elsewhere (UniPost's page, no way back to the site): the
    # webhook and the next look at the session settle it.
    query = parse_qs(urlsplit(hosted_url).query)
    pressed = requests.post(
        hosted_url.split("?")[0],
        data={"session": query["session"][0], "state": query["state"][0], "action": "approve_stay"},
        timeout=10,
    )
    assert pressed.status_code == 200
    assert api_session(page, flow.session["id"])["status"] == "completed"
    page.reload()
    expect(page.locator("#accounts > li").filter(has_text="TikTok:")).to_have_count(1)


def test_closing_the_popup_before_it_reaches_unipost_reports_close(page: Any, demo_site: str) -> None:
    expect = _expect()
    log_in_to_headless(page, demo_site)
    held: list[Any] = []
    # The create waits until the popup is gone: the popup is still this page's about:blank.
    page.route(f"**{SESSIONS_API}", lambda route: held.append(route))
    with page.expect_popup() as popup_info:
        connect_button(page, "Facebook").click()
    popup = popup_info.value
    assert popup.url == "about:blank"
    wait_for(lambda: held, page)
    assert len(held) == 1
    popup.close()
    with page.expect_response(is_create) as created_info:
        held[0].continue_()
    assert created_info.value.status == 201
    expect(events(page)).to_contain_text("onClose: pending")
    expect(page.locator("#waiting")).to_be_hidden()


def test_a_blocked_popup_falls_back_to_a_full_page_redirect(
    page: Any, demo_site: str, screenshot_dir: Path
) -> None:
    expect = _expect()
    page.add_init_script("window.open = () => null;")  # what a popup blocker answers
    log_in_to_headless(page, demo_site)
    with page.expect_response(is_create) as created_info:
        connect_button(page, "Instagram").click()
    created = created_info.value
    assert created.status == 201
    page.wait_for_url(re.compile(r"/fake-unipost/connect/instagram\?"))
    expect(page.get_by_role("heading", name="Connect your Instagram account")).to_be_visible()
    page.get_by_role("button", name="Approve", exact=True).click()
    # Back on the page the flow started from (its `next`), told by the return view.
    page.wait_for_url(demo_site + HEADLESS_PATH)
    expect(page.locator(".unipost-messages")).to_contain_text("Your Instagram account is connected.")
    expect(page.locator("#accounts > li").filter(has_text="Instagram:")).to_have_count(1)
    shoot(page, screenshot_dir, "blocked-redirect")


FORGERY = {"source": "unipost-connect", "status": "completed"}


def test_forged_messages_are_not_believed(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    forger = "<!doctype html><title>Elsewhere</title><p>A page on another origin.</p>"
    page.route(
        OTHER_ORIGIN + "/forge.html",
        lambda route: route.fulfill(status=200, content_type="text/html", body=forger),
    )
    log_in_to_headless(page, demo_site)
    flow = start_popup(page, "Threads")
    forged = {**FORGERY, "session_id": flow.session["id"]}

    # From the page itself (not the popup), from a frame on another origin, and on the
    # channel: none of them ends the flow; the one on the channel is checked and refused.
    page.evaluate("(message) => window.postMessage(message, location.origin)", forged)
    page.evaluate(
        """(src) => new Promise((resolve) => {
            const frame = document.createElement("iframe");
            frame.src = src;
            frame.onload = () => resolve();
            document.body.append(frame);
        })""",
        OTHER_ORIGIN + "/forge.html",
    )
    frame = page.frame(url=OTHER_ORIGIN + "/forge.html")
    assert frame is not None
    frame.evaluate("(message) => parent.postMessage(message, '*')", forged)
    with page.expect_response(
        lambda r: urlsplit(r.url).path.endswith(f"/api/sessions/{flow.session['id']}/")
    ) as confirmed:
        page.evaluate(
            "(message) => new BroadcastChannel('unipost-connect').postMessage(message)",
            forged,
        )
    assert confirmed.value.json()["status"] == "pending"
    # A report for another session is not even looked at.
    page.evaluate(
        "(message) => new BroadcastChannel('unipost-connect').postMessage(message)",
        {**FORGERY, "session_id": "00000000-0000-4000-8000-000000000000"},
    )
    expect(events(page).locator("li")).to_have_text(['connect("threads")'])
    expect(page.locator("#waiting")).to_be_visible()
    expect(outcome(page)).to_have_text("")
    assert flow.popup.is_closed() is False

    # The real flow still ends as it should.
    press_and_wait_for_close(flow, "Approve")
    expect_connected(page, "Threads")
    shoot(page, screenshot_dir, "forged-then-approved")


def test_the_whole_flow_at_390_px(browser: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    browser.clear_cookies()
    page = browser.new_page()
    try:
        page.set_default_timeout(10_000)
        page.set_viewport_size({"width": 390, "height": 844})
        log_in_to_headless(page, demo_site)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scroll
        shoot(page, screenshot_dir, "mobile-start")
        flow = start_popup(page, "Pinterest")
        flow.popup.set_viewport_size({"width": 390, "height": 844})
        shoot(flow.popup, screenshot_dir, "mobile-hosted-page")
        press_and_wait_for_close(flow, "Approve")
        expect_connected(page, "Pinterest")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        shoot(page, screenshot_dir, "mobile-approve")
        # Disconnecting goes through the JSON API too.
        page.get_by_role("button", name="Disconnect Pinterest").click()
        expect(outcome(page)).to_have_text("Your Pinterest account is disconnected.")
        expect(page.locator("#accounts > li").filter(has_text="Pinterest:")).to_have_count(0)
    finally:
        page.close()


def test_a_popup_button_of_the_tag_opens_the_popup_then_shows_the_outcome(
    page: Any, demo_site: str, screenshot_dir: Path
) -> None:
    expect = _expect()
    log_in_to_headless(page, demo_site)
    page.goto(demo_site + "/popup-buttons/")
    page.wait_for_function("() => window.UniPostConnect !== undefined")
    button = connect_button(page, "X (Twitter)")
    form = page.locator("form[data-unipost-connect-popup]").filter(has=button)
    expect(form).to_have_count(1)
    with page.expect_popup() as popup_info:
        button.click()
    flow = Flow(popup_info.value, {})
    expect(flow.popup.get_by_role("heading", name="Connect your X (Twitter) account")).to_be_visible()
    assert page.url == demo_site + "/popup-buttons/"  # the page stayed; the popup went
    expect(form).to_have_attribute("aria-busy", "true")
    with page.expect_navigation(url=demo_site + "/popup-buttons/"):
        press_and_wait_for_close(flow, "Approve")
    # The page goes to the button's `next` (itself), where the return view's message waits.
    expect(page.locator(".unipost-messages")).to_contain_text("Your X (Twitter) account is connected.")
    expect(connect_button(page, "X (Twitter)")).to_have_text("Reconnect X (Twitter)")
    shoot(page, screenshot_dir, "tag-button")


# -- the hosted page on another origin, with COOP: the popup is cut off ------------------------


@dataclass
class CoopSite:
    base_url: str
    server: FakeUniPostServer
    fake: FakeUniPost


@contextmanager
def standalone_site(
    tmp: Path, hosted_coop: str | None, site_env: dict[str, str] | None = None
) -> Iterator[CoopSite]:
    """The example project talking to the standalone fake on its own port (another origin)."""
    finalizers: list[Callable[[], None]] = []
    try:
        port = free_port()
        fake = FakeUniPost(api_key=COOP_KEY, webhook_secret=COOP_SECRET)
        server = FakeUniPostServer(
            fake,
            "127.0.0.1",
            0,
            webhook_url=f"http://127.0.0.1:{port}/unipost/webhook/",
            webhook_delay=0.2,
            hosted_coop=hosted_coop,
        ).start()
        finalizers.append(server.stop)
        env = {
            "UNIPOST_API_BASE_URL": server.base_url,
            "UNIPOST_API_KEY": COOP_KEY,
            "UNIPOST_WEBHOOK_SECRET": COOP_SECRET,
            "UNIPOST_ALLOW_QUICKSTART_CREDS": "true",
            **(site_env or {}),
        }
        site = start_site(tmp, port, env, finalizers)
        yield CoopSite(site.base_url, server, fake)
    finally:
        for finalize in reversed(finalizers):
            finalize()


@pytest.fixture(scope="module")
def coop_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoopSite]:
    """The hosted page on another origin sends ``Cross-Origin-Opener-Policy: same-origin``
    (and the site sends Django's default, the same)."""
    with standalone_site(tmp_path_factory.mktemp("example_project_coop"), "same-origin") as site:
        yield site


@pytest.fixture(scope="module")
def reachable_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoopSite]:
    """The hosted page on another origin sends no COOP, and the site allows its popups
    (``same-origin-allow-popups``): the popup stays reachable, though on another origin."""
    tmp = tmp_path_factory.mktemp("example_project_reachable")
    with standalone_site(tmp, None, {"UNIPOST_DEMO_COOP": "same-origin-allow-popups"}) as site:
        yield site


def watch_the_popup(page: Any) -> None:
    """Keep the page's own handle on the popup (window.__popup), to see what it sees."""
    page.add_init_script(
        """(() => {
            const open = window.open;
            window.open = function (...args) {
                const opened = open.apply(this, args);
                window.__popup = opened;
                return opened;
            };
        })();"""
    )


def start_cut_off_popup(page: Any, coop: CoopSite, label: str) -> Flow:
    flow = start_popup(page, label)
    assert flow.popup.url.startswith(coop.server.base_url + "/connect/")  # another origin
    assert flow.popup.evaluate("() => window.opener === null") is True  # COOP cut it off
    # ...and the opener reads the popup as closed while it is open: closed is not a close.
    page.wait_for_function("() => window.__popup && window.__popup.closed === true")
    assert flow.popup.is_closed() is False
    _expect()(popup_state(page)).to_have_attribute("data-popup", "cut_off")
    return flow


def test_cut_off_popup_approve_completes_and_reports(
    page: Any, coop_site: CoopSite, screenshot_dir: Path
) -> None:
    expect = _expect()
    watch_the_popup(page)
    log_in_to_headless(page, coop_site.base_url)
    flow = start_cut_off_popup(page, coop_site, "LinkedIn")
    headers = requests.get(flow.popup.url, timeout=10).headers
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    shoot(flow.popup, screenshot_dir, "coop-hosted-page")
    press_and_wait_for_close(flow, "Approve")
    expect_connected(page, "LinkedIn")
    expect(events(page).locator("li")).to_have_text(
        ['connect("linkedin")', re.compile(r"^onSuccess: completed")]
    )
    [remote] = [s for s in coop_site.fake.sessions.values() if s.platform == "linkedin"]
    assert remote.status == "completed"
    shoot(page, screenshot_dir, "coop-approve")


def test_cut_off_popup_deny_and_error_report(page: Any, coop_site: CoopSite, screenshot_dir: Path) -> None:
    expect = _expect()
    watch_the_popup(page)
    log_in_to_headless(page, coop_site.base_url)
    flow = start_cut_off_popup(page, coop_site, "Bluesky")
    press_and_wait_for_close(flow, "Deny")
    expect(events(page)).to_contain_text("onError: cancelled")
    flow = start_cut_off_popup(page, coop_site, "YouTube")
    press_and_wait_for_close(flow, "Error")
    expect(events(page)).to_contain_text("onError: error")
    expect(outcome(page)).to_have_text(
        "YouTube reported a problem while connecting, so nothing was connected. You can try again."
    )
    shoot(page, screenshot_dir, "coop-deny-error")


def test_cut_off_popup_that_never_returns_is_found_by_polling(page: Any, coop_site: CoopSite) -> None:
    expect = _expect()
    watch_the_popup(page)
    log_in_to_headless(page, coop_site.base_url)
    flow = start_cut_off_popup(page, coop_site, "Facebook")
    # UniPost's own success page: no way back, no report; the poll of api-session sees it.
    flow.popup.get_by_role("button", name="Approve without returning").click()
    expect(flow.popup.get_by_role("heading", name="Connected")).to_be_visible()
    expect(events(page)).to_contain_text("onSuccess: completed", timeout=20_000)
    flow.popup.close()


def test_closing_a_cut_off_popup_cannot_be_seen_but_waiting_can_be_stopped(
    page: Any, coop_site: CoopSite, screenshot_dir: Path
) -> None:
    expect = _expect()
    watch_the_popup(page)
    log_in_to_headless(page, coop_site.base_url)
    flow = start_cut_off_popup(page, coop_site, "X (Twitter)")
    flow.popup.close()
    # The documented limit: the page cannot tell this close from COOP's cut; it waits on,
    # and the user (or the page) stops waiting.
    expect(page.locator("#waiting")).to_be_visible()
    with page.expect_response(
        lambda r: urlsplit(r.url).path.endswith(f"/api/sessions/{flow.session['id']}/")
    ):
        pass  # a poll goes on meanwhile
    assert "onClose" not in events(page).inner_text()
    page.get_by_role("button", name="Stop waiting").click()
    expect(events(page)).to_contain_text("aborted")
    expect(page.locator("#waiting")).to_be_hidden()
    shoot(page, screenshot_dir, "coop-stopped-waiting")


# -- the hosted page on another origin, no COOP, and a site that allows popups -----------------


def test_a_reachable_popup_on_another_origin_is_watched_and_its_close_seen(
    page: Any, reachable_site: CoopSite, screenshot_dir: Path
) -> None:
    expect = _expect()
    watch_the_popup(page)
    log_in_to_headless(page, reachable_site.base_url)
    flow = start_popup(page, "LinkedIn")
    assert flow.popup.url.startswith(reachable_site.server.base_url + "/connect/")
    assert flow.popup.evaluate("() => window.opener !== null") is True  # not cut off
    assert page.evaluate("() => window.__popup.closed") is False
    # Unreadable (another origin) but open for a while: now a close would be believed.
    expect(popup_state(page)).to_have_attribute("data-popup", "open")
    flow.popup.close()
    expect(events(page)).to_contain_text("onClose: pending")

    # The same popup again, to the end: reported through the opener, confirmed by the API.
    flow = start_popup(page, "LinkedIn")
    press_and_wait_for_close(flow, "Approve")
    expect_connected(page, "LinkedIn")
    shoot(page, screenshot_dir, "reachable-approve")
