"""What people see, in Chromium: the shipped pages at phone and desktop widths with no
sideways scroll, connect and disconnect by keyboard alone (with the confirmation step),
a visible focus ring, and an axe-core audit of each page with no serious or critical
violation, in light and dark. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CONNECTIONS = "/unipost/connections/"
WIDTHS = (320, 390, 1280)


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def log_in(page: Any, base_url: str, username: str = "demo") -> None:
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(username)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + CONNECTIONS)


def no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def serious_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def tab_to(page: Any, name: re.Pattern[str], limit: int = 80) -> None:
    """Press Tab until the focused element's accessible text matches ``name``."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        text = page.evaluate(
            "(document.activeElement.innerText || document.activeElement.value || '').trim()"
        )
        if name.search(" ".join(text.split())):
            return
    raise AssertionError(f"no focusable element matching {name.pattern!r}")


def focus_ring_shown(page: Any) -> bool:
    return bool(
        page.evaluate(
            "(() => { const s = getComputedStyle(document.activeElement);"
            " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; })()"
        )
    )


def test_connect_and_disconnect_by_keyboard_with_a_confirmation(
    page: Any, demo_site: str, screenshot_dir: Path
) -> None:
    expect = _expect()
    log_in(page, demo_site)
    page.goto(demo_site + CONNECTIONS)
    tab_to(page, re.compile(r"^(Connect|Reconnect) Facebook$"))
    assert focus_ring_shown(page)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Connect your Facebook account")).to_be_visible()
    tab_to(page, re.compile(r"^Approve$"))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(demo_site + CONNECTIONS)))
    expect(page.get_by_role("status")).to_contain_text("Your Facebook account is connected.")
    card = page.locator(".upc-card--facebook")
    expect(card).to_contain_text("Connected as")

    # Disconnect: the first press only opens the confirmation.
    tab_to(page, re.compile(r"^Disconnect"))
    while "upc-card--facebook" not in page.evaluate(
        "document.activeElement.closest('.upc-card')?.className || ''"
    ):
        tab_to(page, re.compile(r"^Disconnect"))
    page.keyboard.press("Enter")
    confirm = card.get_by_role("button", name=re.compile(r"^Yes, disconnect"))
    expect(confirm).to_be_visible()
    expect(card).to_contain_text("Connected as")  # nothing happened yet
    shoot(page, screenshot_dir, "connections-disconnect-confirmation")
    tab_to(page, re.compile(r"^Yes, disconnect"))
    assert focus_ring_shown(page)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(demo_site + CONNECTIONS)))
    expect(page.get_by_role("status")).to_contain_text("Your Facebook account is disconnected.")
    expect(page.locator(".upc-card--facebook")).to_contain_text("Not connected")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_pages_fit_the_screen_and_pass_an_accessibility_audit(
    page: Any, demo_site: str, screenshot_dir: Path, width: int
) -> None:
    expect = _expect()
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(demo_site + "/login/")
    assert no_sideways_scroll(page)
    assert serious_violations(page) == []
    log_in(page, demo_site)
    # An account on the page, whatever ran before: approve a Threads connection.
    page.locator(".upc-card--threads .unipost-connect-button").click()
    expect(page.get_by_role("heading", name="Connect your Threads account")).to_be_visible()
    assert no_sideways_scroll(page), "the fake's hosted page scrolls sideways"
    assert serious_violations(page) == [], "the fake's hosted page"
    if width != 320:
        shoot(page, screenshot_dir, f"hosted-page-{width}")
    page.get_by_role("button", name="Approve", exact=True).click()
    page.wait_for_url(re.compile(re.escape(demo_site + CONNECTIONS)))
    expect(page.locator(".upc-card--threads")).to_contain_text("Connected as")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert no_sideways_scroll(page), f"the connections page scrolls sideways at {width} px"
        assert serious_violations(page) == [], f"the connections page ({scheme})"
        shoot(page, screenshot_dir, f"connections-{width}-{scheme}")
    page.emulate_media(color_scheme="light")
    # Each card's button is on the page, none cut off.
    buttons = page.locator(".upc-card .unipost-connect-button")
    assert buttons.count() == 9
    for i in range(buttons.count()):
        box = buttons.nth(i).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def shoot(page: Any, directory: Path, name: str) -> None:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


def test_the_popup_return_page_passes_the_audit(page: Any, demo_site: str) -> None:
    """The page a popup flow ends on, held still (its script, which reports and moves on,
    is not loaded) so the audit sees it."""
    expect = _expect()
    log_in(page, demo_site)
    page.route("**/popup_return.js", lambda route: route.abort())
    token = page.evaluate("document.cookie.match(/csrftoken=([^;]+)/)[1]")
    started = page.request.post(
        demo_site + "/unipost/api/sessions/",
        data={"platform": "tiktok", "popup": True},
        headers={"X-CSRFToken": token, "Referer": demo_site + CONNECTIONS},
    )
    assert started.status == 201, started.text()
    page.goto(started.json()["url"])
    page.get_by_role("button", name="Approve", exact=True).click()
    page.wait_for_url(re.compile(re.escape(demo_site + "/unipost/return/")))
    expect(page.get_by_role("status")).to_contain_text("Finishing the connection")
    assert no_sideways_scroll(page)
    assert serious_violations(page) == []


def test_the_admin_funnel_passes_the_audit(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    log_in(page, demo_site)
    # Something to count: a connection approved, one declined, one left on the hosted page.
    for platform, choice in (("youtube", "Approve"), ("pinterest", "Deny"), ("instagram", "")):
        page.goto(demo_site + CONNECTIONS)
        page.locator(f".upc-card--{platform} .unipost-connect-button").click()
        page.wait_for_url(re.compile(r"/fake-unipost/connect/"))
        if choice:
            page.get_by_role("button", name=choice, exact=True).click()
            page.wait_for_url(re.compile(re.escape(demo_site + CONNECTIONS)))
    page.goto(demo_site + "/admin/unipost_connect/")
    page.get_by_role("link", name="Connect funnel").first.click()
    page.wait_for_load_state()
    assert serious_violations(page) == []
    shoot(page, screenshot_dir, "admin-funnel")
