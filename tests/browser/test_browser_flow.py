"""End to end in a real browser: the example project, its live fake UniPost, Chromium.

log in → Connections → Connect LinkedIn → the fake hosted page → Approve / Deny / Error →
back on Connections with a message; then the admin's session changelist. Each final page
is saved, full page, under artifacts/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CONNECTIONS_PATH = "/unipost/connections/"
# "Connect LinkedIn", or "Reconnect LinkedIn" once an earlier test connected one.
CONNECT_LINKEDIN = re.compile(r"^(Re)?connect LinkedIn$", re.IGNORECASE)

# Which hosted-page outcomes have been driven on this module's server (the admin test
# drives whichever are missing, so it also works when run alone).
_done: set[str] = set()


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def log_in(page: Any, base_url: str) -> None:
    expect = _expect()
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + CONNECTIONS_PATH)
    expect(page.get_by_role("heading", level=1, name="Connections")).to_be_visible()


def connect_linkedin(page: Any, base_url: str, choice: str) -> None:
    """From Connections, start a LinkedIn connection and press ``choice`` on the hosted page."""
    expect = _expect()
    if not page.url.startswith(base_url + CONNECTIONS_PATH):
        page.goto(base_url + CONNECTIONS_PATH)
    page.get_by_role("button", name=CONNECT_LINKEDIN).click()
    expect(page.get_by_role("heading", name="Connect your LinkedIn account")).to_be_visible()
    assert "/fake-unipost/connect/linkedin" in page.url
    page.get_by_role("button", name=choice, exact=True).click()
    page.wait_for_url(re.compile(re.escape(base_url + CONNECTIONS_PATH)))
    _done.add(choice)


def status_message(page: Any) -> Any:
    return page.get_by_role("status")


def shoot(page: Any, directory: Path, name: str) -> None:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


# The module's tests share one server and one user, and a pending session is reused
# by the next "Connect LinkedIn" (services.start_session). So the order is Deny, Approve,
# then Error, which leaves one session in each of Cancelled, Completed and Pending.


def test_deny_shows_a_clear_message(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    log_in(page, demo_site)
    connect_linkedin(page, demo_site, "Deny")
    expect(status_message(page)).to_contain_text(
        "You declined the authorization, so no LinkedIn account was connected."
    )
    attempts = page.get_by_role("region", name="Recent connection attempts")
    declined = attempts.get_by_role("listitem").filter(has_text="Not connected: you declined")
    expect(declined.first).to_be_visible()
    shoot(page, screenshot_dir, "deny")


def test_approve_connects_and_lists_the_account(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    log_in(page, demo_site)
    connect_linkedin(page, demo_site, "Approve")
    expect(status_message(page)).to_contain_text("Your LinkedIn account is connected.")
    accounts = page.get_by_role("region", name="Your accounts")
    card = (
        accounts.get_by_role("listitem")
        .filter(has=page.get_by_role("heading", name="LinkedIn", exact=True))
        .first
    )
    # Named at once: the return reads the account list when the webhook has not come yet.
    expect(card).to_contain_text("Connected as LinkedIn demo account")
    expect(card).not_to_contain_text(re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-"))  # no internal ids
    expect(card.locator("summary", has_text="Disconnect")).to_be_visible()  # behind a confirmation
    # The card now offers a reconnect instead.
    expect(card.get_by_role("button", name="Reconnect LinkedIn")).to_be_visible()
    shoot(page, screenshot_dir, "success")


def test_error_shows_a_clear_message(page: Any, demo_site: str, screenshot_dir: Path) -> None:
    expect = _expect()
    log_in(page, demo_site)
    connect_linkedin(page, demo_site, "Error")
    expect(status_message(page)).to_contain_text(
        "LinkedIn reported a problem while connecting, so nothing was connected. You can try again."
    )
    shoot(page, screenshot_dir, "error")


def test_admin_changelist_shows_sessions_with_their_states(
    page: Any, demo_site: str, screenshot_dir: Path
) -> None:
    expect = _expect()
    log_in(page, demo_site)
    for choice in ("Deny", "Approve", "Error"):
        if choice not in _done:
            connect_linkedin(page, demo_site, choice)
    page.goto(demo_site + "/admin/")
    page.get_by_role("main").get_by_role("link", name="Connect sessions").click()
    page.wait_for_url(demo_site + "/admin/unipost_connect/connectsession/")
    results = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Status"))
    expect(results).to_have_count(1)
    rows = results.locator("tbody").get_by_role("row")
    # Approved → Completed, denied → Cancelled, error → still Pending: each a coloured badge.
    for label in ("Completed", "Cancelled", "Pending"):
        row = rows.filter(has_text=label).first
        expect(row).to_contain_text("demo")
        expect(row).to_contain_text("LinkedIn")
        badge = row.get_by_text(label, exact=True)
        expect(badge).to_be_visible()
        background = badge.evaluate("el => getComputedStyle(el).backgroundColor")
        assert background not in ("rgba(0, 0, 0, 0)", "transparent"), f"the {label} badge has no colour"
    # The hosted url (its state parameter is a bearer secret) is never in the list.
    expect(results).not_to_contain_text("/fake-unipost/connect/")
    shoot(page, screenshot_dir, "admin")
