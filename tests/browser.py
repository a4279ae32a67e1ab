"""Headless Chromium for the tests that look at pages as a person would.

Debian's `chromium` driven by Playwright for Python (Playwright's own browser download does
not work on this network). Missing, the browser tests skip with the reason, except on CI,
where `make test` installs it and they must run. Every page a test looks at is kept as a
screenshot in `test-artifacts/screenshots/` (or `$DATASHARE_SCREENSHOTS`; `make screenshots`
points it at `docs/screenshots/` for the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 800}


def screenshots_dir() -> Path:
    """Where page screenshots are kept."""
    folder = Path(
        os.environ.get("DATASHARE_SCREENSHOTS") or REPO_ROOT / "test-artifacts" / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium_path() -> str | None:
    """Debian's chromium (or `$DATASHARE_CHROMIUM`), if there is one."""
    configured = os.environ.get("DATASHARE_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The chromium to drive; skips the test (fails it on CI) when there is none."""
    path = chromium_path()
    if path is None:
        reason = (
            "no chromium: `apt-get install chromium` (as root, `make test` does it), or "
            "DATASHARE_CHROMIUM=/path/to/chromium"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    pytest.importorskip("playwright", reason="playwright: pip install -e '.[dev]'")
    return path


@contextmanager
def chromium_browser() -> Iterator[object]:
    """One headless Chromium for many pages (a module's tests, each page in a fresh
    context): launching one costs about a second of CPU. Yields the Playwright `Browser`;
    while it is open, `offline_page` must be given it (Playwright runs one driver per
    thread), and Dagster must not run in this thread (Playwright's event loop is running
    in it: Dagster's in-process run then leaves a coroutine never awaited)."""
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def offline_page(name: str, browser: object | None = None) -> Iterator[object]:
    """A fresh Chromium page with the network cut (only `file://` loads), kept as
    `<name>.png` when the block ends, whether its assertions passed or not: in a context of
    its own in `browser` (from `chromium_browser`), or in a browser launched for it.

    The screenshot is of the whole page, however long, when it is made for the README
    (`$DATASHARE_SCREENSHOTS`, `make screenshots`) or when the block failed; of its first
    screen (the window, 1280x800) when the block passed: a whole oversight pack is fifteen
    screens and a second of Chromium's CPU to draw (its first screen, a twentieth of that).

    Yields the Playwright `Page`; `page.blocked` lists every request that was refused.
    """
    if browser is None:
        with chromium_browser() as launched, offline_page(name, launched) as page:
            yield page
        return
    context = browser.new_context(viewport=VIEWPORT)
    try:
        blocked: list[str] = []

        def route(request_route) -> None:
            url = request_route.request.url
            if url.startswith(("file://", "data:", "about:")):
                request_route.continue_()
            else:
                blocked.append(url)
                request_route.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.blocked = blocked
        whole = bool(os.environ.get("DATASHARE_SCREENSHOTS"))
        try:
            yield page
        except BaseException:
            whole = True
            raise
        finally:
            page.screenshot(path=str(screenshots_dir() / f"{name}.png"), full_page=whole)
    finally:
        context.close()
