"""Fixtures for the real-browser tests: the example project on a free loopback port,
serving its embedded fake UniPost, and Debian's Chromium driven by Playwright.

No browser is ever downloaded: Playwright launches ``/usr/bin/chromium`` (or the file
named by ``UNIPOST_BROWSER``). ``scripts/install-browser`` installs it with apt-get.
The tests skip, saying why, only when no browser can be found or launched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.example_site import free_port, start_site

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
DEFAULT_BROWSER = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DEMO_USER = ("demo", "demo")


@pytest.fixture(scope="module")
def browser_executable() -> str:
    """The Chromium to drive; skips the module when there is none or Playwright is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Playwright for Python is not importable ({exc}); pip install playwright")
    path = os.environ.get("UNIPOST_BROWSER", DEFAULT_BROWSER)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"no Chromium at {path}; run scripts/install-browser (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example project under ``runserver`` on a free port; yields its base URL.

    Migrated and seeded (``demo_setup``) into a fresh database; the fake UniPost's
    webhooks arrive 0.2 s after approval. The server is stopped in the finalizer.
    """
    finalizers: list[Callable[[], None]] = []
    try:
        site = start_site(tmp_path_factory.mktemp("example_project"), free_port(), {}, finalizers)
        yield site.base_url
    finally:
        for finalize in reversed(finalizers):
            finalize()


@pytest.fixture(scope="module")
def browser(browser_executable: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium with a fresh profile; skips when it cannot be launched."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    manager = sync_playwright()
    playwright = manager.start()
    try:
        try:
            # A persistent context is how Playwright takes a user-data-dir of our choosing.
            context = playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=browser_executable,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},
                locale="en-US",
                timeout=30_000,
            )
        except PlaywrightError as exc:
            first_line = (str(exc).strip().splitlines() or ["unknown error"])[0]
            pytest.skip(f"Chromium at {browser_executable} could not be launched: {first_line}")
        try:
            yield context
        finally:
            context.close()
    finally:
        manager.__exit__(None, None, None)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, demo_site: str) -> Iterator[Any]:
    """A fresh tab, logged out (cookies cleared), with short timeouts."""
    browser.clear_cookies()
    tab = browser.new_page()
    tab.set_default_timeout(10_000)
    tab.set_default_navigation_timeout(15_000)
    try:
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
