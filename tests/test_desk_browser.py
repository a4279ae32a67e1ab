"""The leads' desk in Debian's chromium, as a lead and a viewer use it.

`datashare desk` is started as a user starts it (its own process, on a free loopback
port) on a register written straight into the lake (tests/breach_homes.py). Chromium,
driven by Playwright, may reach only that address. A lead signs in, filters, acknowledges
a breach, reads the month's notice and marks it sent; a viewer sees no buttons and is
refused when posting anyway. An engineer follows a month's Data Docs link from Dagster to
the desk (that desk served in the test's own process: its command is the lead's). Every
page looked at is kept as a screenshot.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from urllib.parse import urljoin

import duckdb
import pytest

from pipelines.desk.users import UserStore
from tests.breach_homes import seeded_home
from tests.browser import VIEWPORT, chromium_browser, screenshots_dir
from tests.conftest import SharedGreatExpectations, make_home

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module", autouse=True)
def _quick_password_hashes() -> Iterator[None]:
    """The module's accounts hashed with argon2id at its lightest cost rather than the
    desk's default (three passes over 64 MiB on four lanes: 0.2 s of CPU to hash, and again
    to check each sign-in), as tests/test_desk.py does. A hash names its own cost, so the
    desk checks these at it too, in its own process or this one: still argon2id, checked by
    argon2-cffi, and nothing these tests look at depends on the cost."""
    from argon2 import PasswordHasher

    from pipelines.desk import users

    light = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "_HASHER", light)
        patch.setattr(users, "_DUMMY_HASH", light.hash("not a password of anyone"))
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_desk(home) -> Iterator[str]:
    """`datashare desk` on `home`, until the block ends; yields its address."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli.main", "--home", str(home.home), "desk",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/login", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    out = process.stdout.read().decode() if process.stdout else ""
                    raise AssertionError(f"the desk did not start:\n{out}") from None
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


@contextmanager
def desk_in_this_process(home) -> Iterator[str]:
    """The desk `datashare desk` serves (the same app, made from the same settings), served
    by uvicorn in a thread of this process, until the block ends; yields its address. For a
    test that needs a desk but not its command: a `datashare desk` process costs about 1.8 s
    of CPU to start (Python, then the command line's imports)."""
    import threading

    import uvicorn

    from pipelines.desk.app import create_app
    from pipelines.desk.config import load_desk_config

    port = _free_port()
    app = create_app(home, load_desk_config())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    # Its own event loop in its own thread: none is running in this one, where Dagster runs.
    thread = threading.Thread(target=server.run, name="desk", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the desk did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def browser_pages(url: str, browser: object) -> Iterator[object]:
    """A function making fresh Chromium pages in `browser` (each its own context, so its own
    cookies) that reach only the desk; `page.blocked` lists anything else they asked for.
    The contexts are closed when the block ends."""
    contexts = []

    def new_page():
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        blocked: list[str] = []

        def route(request_route) -> None:
            if request_route.request.url.startswith(url):
                request_route.continue_()
            else:
                blocked.append(request_route.request.url)
                request_route.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.blocked = blocked
        return page

    try:
        yield new_page
    finally:
        for context in contexts:
            context.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(screenshots_dir() / f"desk-{name}.png"), full_page=False)


def _sign_in(page, url: str, name: str) -> None:
    page.goto(f"{url}/")
    assert "/login" in page.url  # signed out: sent to sign in
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state()


def _count(home, sql: str) -> int:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


# The module's tests share one Chromium (a launch, with Playwright's driver, is about two
# seconds of CPU), each test's pages in contexts of their own. It starts once the engineer's
# run is over: a Chromium kept open holds Playwright's event loop in this thread, and a
# Dagster run in it then leaves a coroutine never awaited. So the engineer's run is the
# module's first step (`engineer_desk`), whichever test comes first.


@pytest.fixture(scope="module")
def engineer_desk(
    tmp_path_factory: pytest.TempPathFactory,
    real_stop_and_search,
    ge_helper_process: SharedGreatExpectations,
) -> Iterator[tuple[object, str]]:
    """The real June 2022 file through `datashare run` (in this process, with the worker's
    great-expectations helper), with the address of a desk on that home set; the home, and
    that desk's address, served until the module ends (the desk in this process: its
    command is the lead's). Dagster's instance is the home's meanwhile."""
    from pipelines.cli.main import main
    from tests.conftest import drop

    with pytest.MonkeyPatch.context() as patch:
        home = make_home(tmp_path_factory.mktemp("engineer-home"), patch)
        drop(home, "stop_and_search", "2022-06", real_stop_and_search)
        UserStore(home.home).add("victor", "viewer", PASSWORD)
        with desk_in_this_process(home) as url:
            with pytest.MonkeyPatch.context() as run_env, ge_helper_process.installed():
                run_env.setenv("DATASHARE_DESK_URL", url)
                with redirect_stdout(io.StringIO()):
                    assert main(["run", "--settle", "0"]) == 0
            yield home, url


@pytest.fixture(scope="module")
def chromium(engineer_desk):
    """One Chromium for the module's tests, once the engineer's run is over (above)."""
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="class")
def seeded_desk(tmp_path_factory: pytest.TempPathFactory):
    """One desk on a seeded register for the lead's and the viewer's tests (each started
    its own: a process, a second and a half): what the lead does is acknowledged and sent,
    and the viewer's test asserts nothing the lead's actions change."""
    with pytest.MonkeyPatch.context() as patch:
        home = make_home(tmp_path_factory.mktemp("desk-home"), patch)
        ids = seeded_home(home)
        store = UserStore(home.home)
        store.add("alice", "lead", PASSWORD)
        store.add("victor", "viewer", PASSWORD)
        with running_desk(home) as url:
            yield home, ids, url


class TestOneDeskForALeadAndAViewer:
    """A lead and a viewer on one seeded desk, each in Chromium contexts of their own."""

    def test_a_lead_signs_in_filters_acknowledges_and_sends_the_notice(self, seeded_desk, chromium):
        home, ids, url = seeded_desk
        open_count = _count(
            home,
            "SELECT count(*) FROM governance.breach_register "
            "WHERE status IN ('open', 'notified', 'acknowledged')",
        )
        with browser_pages(url, chromium) as new_page:
            page = new_page()
            page.goto(f"{url}/")
            _shot(page, "sign-in")
            _sign_in(page, url, "alice")
            assert page.locator("#open-total").inner_text() == str(open_count)
            assert page.locator("#breaches tbody tr").count() == open_count
            _shot(page, "breaches")

            # Filter: stop and search's major breaches.
            page.select_option("select[name=contract]", "stop_and_search")
            page.select_option("select[name=severity]", "major")
            page.click("button:has-text('Show')")
            page.wait_for_load_state()
            majors = _count(
                home,
                "SELECT count(*) FROM governance.breach_register "
                "WHERE contract = 'stop_and_search' AND severity = 'major' "
                "AND status IN ('open', 'notified', 'acknowledged')",
            )
            assert page.locator("#breaches tbody tr").count() == majors
            assert page.locator("#match-count strong").inner_text() == str(majors)

            # The breach whose file carried markup: shown as text, its script never runs.
            page.click(f"a:has-text('{ids['nov_extra']}')")
            page.wait_for_load_state()
            assert "<script>window.pwned=1</script>" in page.locator("#detail").inner_text()
            assert page.evaluate("window.pwned") is None

            # Acknowledge October's breach with a note.
            page.goto(f"{url}/breaches/{ids['oct_type']}")
            form = page.locator(f"form[action='/breaches/{ids['oct_type']}/ack']")
            form.locator("input[name=note]").fill("agreed by phone")
            form.locator("button").click()
            page.wait_for_load_state()
            assert "is now acknowledged (by alice)" in page.locator(".flash").inner_text()
            assert "agreed by phone" in page.locator("#history").inner_text()
            _shot(page, "breach")

            # The month's notice: the letter, then mark as sent.
            page.click("a:has-text('the notice for October 2025')")
            page.wait_for_load_state()
            letter = page.frame_locator("iframe.letter")
            assert letter.locator("h1").inner_text() == (
                "Stop and search: notice of breaches for October 2025"
            )
            _shot(page, "notice")
            page.click("button:has-text('Mark as sent')")
            page.wait_for_load_state()
            assert "Recorded as sent by alice" in page.locator(".flash").inner_text()
            assert "by alice: notice notice-stop_and_search-2025-10.md" in (
                page.locator("#sent").inner_text()
            )
            assert page.blocked == []

            # The letter alone prints as the letter, without the desk around it.
            page.goto(f"{url}/notices/stop_and_search/2025-10/letter")
            page.emulate_media(media="print")
            assert page.locator("h1").is_visible()
            assert page.locator("header.top").count() == 0
        assert (
            _count(
                home,
                "SELECT count(*) FROM governance.audit_log WHERE by_whom = 'alice' "
                "AND action IN ('breach acknowledged', 'breach notified', 'export')",
            )
            == 3  # the ack, the late breach notified by the sending, the export
        )

    def test_a_viewer_reads_but_cannot_act(self, seeded_desk, chromium):
        home, ids, url = seeded_desk
        with browser_pages(url, chromium) as new_page:
            page = new_page()
            _sign_in(page, url, "victor")
            page.goto(f"{url}/breaches/{ids['oct_type']}")
            assert "victor (viewer)" in page.locator("header.top").inner_text()
            assert page.locator(".actions button").count() == 0
            _shot(page, "viewer-breach")
            page.goto(f"{url}/notices")
            assert page.locator("#months tbody tr").count() >= 1
            _shot(page, "notices")
            page.goto(f"{url}/contracts/stop_and_search")
            assert (
                page.locator("h1").first.inner_text() == "Stop and search: data-sharing agreement"
            )
            _shot(page, "agreement")
            page.goto(f"{url}/notices/stop_and_search/2025-10")
            assert page.locator("button:has-text('Mark as sent')").count() == 0
            # Posting anyway, with a valid CSRF token from the page: refused.
            token = page.locator("input[name=csrftoken]").first.get_attribute("value")
            answer = page.request.post(
                f"{url}/breaches/{ids['oct_type']}/ack", form={"csrftoken": token, "note": "x"}
            )
            assert answer.status == 403 and "Only a lead can do this" in answer.text()
            # And a signed-out browser sees nothing.
            stranger = new_page()
            stranger.goto(f"{url}/breaches/{ids['oct_type']}")
            assert "/login" in stranger.url
            shown = stranger.locator("body").inner_text()
            assert ids["oct_type"] not in shown and "Type is not one of" not in shown
        assert (
            _count(home, "SELECT count(*) FROM governance.audit_log WHERE by_whom = 'victor'") == 0
        )


def test_an_engineer_opens_a_months_data_docs_from_dagster_on_the_desk(engineer_desk, chromium):
    """The real June 2022 file through `datashare run`; with the desk's address set, the
    month's `data_docs` link in Dagster is the desk's page (both of the month's checks carry
    it too), served with its stylesheets from the lake, and it works in chromium though
    sandboxed: styled, its table drawn by its scripts, its rows links to the checks."""
    import dagster as dg

    home, url = engineer_desk
    instance = dg.DagsterInstance.get()
    assert instance.root_directory == str(home.home / "dagster")
    event = instance.get_latest_materialization_event(dg.AssetKey(["validated", "stop_and_search"]))
    link = event.asset_materialization.metadata["data_docs"].value
    assert link.startswith(f"{url}/docs/contract=stop_and_search/period=2022-06/"), link
    # Both of the month's checks carry the same link, so the check is one click from it.
    for check in ("contract_conformance", "breaches_to_follow_up"):
        (record,) = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(["validated", "stop_and_search"]), check), limit=1
        )
        evaluation = record.event.dagster_event.event_specific_data
        assert evaluation.metadata["data_docs"].value == link, check
    with browser_pages(url, chromium) as new_page:
        page = new_page()
        _sign_in(page, url, "victor")
        # The page and each stylesheet it names, as the desk serves them (signed in).
        served = page.request.get(link)
        assert served.status == 200
        assert served.headers["content-type"].startswith("text/html")
        styles = re.findall(r'href="([^"]+\.css)"', served.text())
        assert styles
        for href in styles:
            css_url = urljoin(link, href)
            assert css_url.startswith(f"{url}/docs/")
            css = page.request.get(css_url)
            assert css.status == 200 and css.headers["content-type"].startswith("text/css")
        page.goto(link)
        page.wait_for_load_state("networkidle")
        assert "Dataset checks" in page.locator("body").inner_text()
        # Bootstrap's CSS applied (from docs/_static), and the page's scripts ran.
        assert page.evaluate("typeof window.jQuery") == "function"
        assert page.evaluate("window.origin") == "null"  # sandboxed: an origin of its own
        _shot(page, "data-docs")
        assert page.blocked == []
