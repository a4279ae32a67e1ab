"""What a data engineer checks by eye in the Dagster UI after `datashare demo`, in a browser.

One demo home (every contract for eight months; stop and search and use of force looked at)
and one real `dagster-webserver` are shared by the module (and by tests/test_dagster_ui.py,
on the same worker: conftest's `demo_webserver`), and so is the UI itself: loaded once in
headless Chromium (Debian's `chromium`, driven by Playwright), each test's pages are reached
through the app's own router, as a user's clicks on its links reach them (a page load costs
about a second and a half of CPU, the app's scripts run again and its first queries asked
again; a move within it, a third of that). Between two pages the app shows a third (its code
locations), and no dialog is left open, so nothing of one page is on screen when the
next's assertions run. The app is loaded in a fresh profile (no localStorage: what a
first visit has), and the sign-up prompt's test, the first, looks at that load. What is
expected (periods, held and published months, breaches) is read from the lake's governance
register and the code location's definitions, never written down here, and the assertions
are on what the pages show. Every page visited is kept as a screenshot
(`test-artifacts/screenshots/`, or `$DATASHARE_SCREENSHOTS`), written whether its test passes
or fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.orchestration.job_names import delivery_job_name
from tests.browser import VIEWPORT, require_chromium, screenshots_dir
from tests.conftest import UI_DEMO_CONTRACTS
from tests.webserver import Webserver

pytestmark = pytest.mark.slow

CONTRACTS = ("stop_and_search", "use_of_force")
# Delivery runs the demo makes of each: one for all its months, and for stop and search a
# second, for the restated month's corrected file the demo sends once the months are in.
DEMO_RUNS = {"stop_and_search": 2, "use_of_force": 1}
CHECK = "contract_conformance"
# The UI's path for the code location's repository: `@dg.definitions` puts everything in
# Dagster's singleton repository, and the UI names that by the location alone.
REPOSITORY = "datashare"
# The first page of a run waits on the webserver and its code server: generous, since the
# suite runs on every core at once. A page that is right shows within a second or two.
PAGE_TIMEOUT_MS = 30_000
SIGN_UP_TEXTS = ("Join the Dagster community", "Notify me")


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    """Debian's chromium; without it these tests skip (on CI they fail: `make test` installs
    it there). Asked first, so a machine without it does not run the demo for nothing."""
    return require_chromium()


@dataclass(frozen=True)
class Month:
    """One contract-month as the register has it: the delivery its check stands on."""

    contract: str
    period: str
    delivery_id: str
    breaches: tuple[dict, ...]

    def count(self, severity: str) -> int:
        return sum(b["severity"] == severity for b in self.breaches)


@dataclass(frozen=True)
class Demo:
    home: Path
    periods: dict[str, list[str]]  # contract -> the months it sent something for
    held: Month  # use of force: the manifest disagrees with the file
    published_with_breaches: Month  # stop and search: rows quarantined, major breaches
    published: Month  # stop and search's last month, published


def _read_demo(home: Path) -> Demo:
    from pipelines.lake.register import Register
    from pipelines.lake.store import open_lake

    register = Register(open_lake(home / "lake"))
    periods, deliveries, breaches = {}, {}, {}
    for contract in CONTRACTS:
        deliveries[contract] = sorted(
            register.deliveries(contract).values(), key=lambda d: (d["period"], d["event_at"])
        )
        periods[contract] = sorted({d["period"] for d in deliveries[contract]})
        breaches[contract] = register.breaches(contract)

    def month(delivery: dict) -> Month:
        contract, delivery_id = delivery["contract"], delivery["delivery_id"]
        own = tuple(b for b in breaches[contract] if b["delivery_id"] == delivery_id)
        return Month(contract, delivery["period"], delivery_id, own)

    held = [month(d) for d in deliveries["use_of_force"] if d["event"] == "held"]
    assert len(held) == 1, deliveries["use_of_force"]
    sent = deliveries["stop_and_search"]
    published = [d for d in sent if d["event"] == "published"]
    # A month published with rows quarantined for major breaches.
    with_breaches = [
        month(d)
        for d in published
        if d["rows_quarantined"] and month(d).count("major") and not month(d).count("critical")
    ]
    assert with_breaches, sent
    last = month(published[-1])
    assert last.period == periods["stop_and_search"][-1], (last, periods)
    return Demo(home, periods, held[0], with_breaches[-1], last)


@pytest.fixture(scope="module")
def webserver(demo_webserver: Webserver) -> Webserver:
    """The real `dagster-webserver` on a copy of the session's demo home (every contract,
    eight months, as `datashare demo` made it), which tests/test_dagster_ui.py looks at too:
    conftest's `demo_webserver`, one per worker. Module-scoped, so that the module's tests
    are one unit of `make test`'s work."""
    return demo_webserver


@pytest.fixture(scope="module")
def demo(webserver: Webserver) -> Demo:
    """What the demo home the webserver shows holds (read from its register)."""
    assert CONTRACTS == UI_DEMO_CONTRACTS
    return _read_demo(webserver.home)


@pytest.fixture(scope="module")
def definitions(demo: Demo):
    """The code location's definitions, as the webserver loads them for the demo home."""
    from pipelines.home.settings import load_settings
    from pipelines.orchestration.definitions import build_definitions

    return build_definitions(load_settings(demo.home))


@pytest.fixture(scope="module")
def browser(chromium: str):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser):
    """A fresh browser context: a new profile, nothing stored from an earlier test."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


# The page the app shows between two others: its code locations, a page none of the tests
# looks at, and whose components no other page shares (so none is left showing what an
# earlier page showed, as two asset pages in a row might).
BETWEEN = "/deployment/locations"


def _route(page, path: str) -> None:
    """Move the loaded app to `path` as a click on one of its links does: the address
    changes in place and the app's router, told of it, shows that page (no reload)."""
    page.evaluate(
        "path => { history.pushState({}, '', path);"
        " dispatchEvent(new PopStateEvent('popstate', {state: {}})); }",
        path,
    )


def visit(page, webserver: Webserver, path: str) -> None:
    """Show `path` in the module's app: through the code locations page, once it shows and
    no dialog is left open, so nothing of the page before is on screen."""
    from playwright.sync_api import expect

    page.first_load = False
    _route(page, BETWEEN)
    expect(page).to_have_url(f"{webserver.url}{BETWEEN}")
    expect(page.get_by_text("Configuration (read-only)", exact=True)).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)
    _route(page, path)
    expect(page).to_have_url(f"{webserver.url}{path}")


# The page a first visit opens, and the query whose answer says whether the app shows the
# sign-up prompt (it opens one second after that answer).
FIRST_PAGE = "/overview/activity/timeline"


def _is_nux_query(response) -> bool:
    return "/graphql" in response.url and "ShouldShowNux" in (response.request.post_data or "")


def _first_visit(context, webserver: Webserver):
    """A page of `context` (a fresh profile) on the app's first load, its clock installed
    (time runs as ever, unless a test drives it); `nux` is the sign-up query's answer."""
    page = context.new_page()
    page.clock.install()
    with page.expect_response(_is_nux_query) as nux:
        page.goto(f"{webserver.url}{FIRST_PAGE}")
    page.nux = nux.value
    page.first_load = True  # until `visit` moves it
    return page


@pytest.fixture(scope="module")
def app(browser, webserver: Webserver):
    """The Dagster UI loaded once, in a fresh profile, for the module's pages: a first visit,
    which the sign-up prompt's test looks at before any other test moves it (a load is
    about four seconds of Chromium's CPU)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield _first_visit(context, webserver)
    finally:
        context.close()


@pytest.fixture
def page(app):
    """The module's app, for a test to `visit` its pages in."""
    return app


@contextmanager
def screenshot(page, name: str) -> Iterator[None]:
    """Keep the page as `<name>.png` once the block is done, passed or failed."""
    try:
        yield
    finally:
        try:
            page.screenshot(path=screenshots_dir() / f"{name}.png")
        except Exception as error:  # a closed or crashed page must not hide the failure
            print(f"no screenshot {name}.png: {error}")


def _job_path(job: str) -> str:
    return f"/locations/{REPOSITORY}/jobs/{job}"


def test_no_sign_up_prompt_on_a_fresh_profile(page, context, webserver: Webserver):
    from playwright.sync_api import expect

    # A first visit, a profile of its own: the module's app, loaded afresh for this test's
    # look (the module's first), or, should another test have moved it already, a page of
    # this test's own.
    if not page.first_load:
        page = _first_visit(context, webserver)

    with screenshot(page, "no-sign-up-prompt"):
        expect(page.get_by_role("tab", name="Timeline")).to_be_visible()
        assert page.nux.ok, page.nux.status
        # The prompt opens one second after the app learns it should (its ShouldShowNux
        # query): the page's clock is driven past that instead of sleeping.
        page.clock.run_for(2_000)
        expect(page.get_by_role("tab", name="Timeline")).to_be_visible()
        for text in SIGN_UP_TEXTS:
            expect(page.get_by_text(text)).to_have_count(0)
        # Its e-mail field (placeholder hello@dagster.io).
        expect(page.locator("input[type=email], input[placeholder*='@']")).to_have_count(0)
        expect(page.get_by_role("dialog")).to_have_count(0)


def test_timeline_and_job_pages_show_the_demo_runs(page, webserver: Webserver, demo: Demo):
    from playwright.sync_api import expect

    visit(page, webserver, "/overview/activity/timeline")
    with screenshot(page, "overview-timeline"):
        for contract in CONTRACTS:
            # Each delivery job has its row, named and linked to the job's page, with a bar
            # for each batch of runs (a count on it when it holds more than one): one run of
            # the contract for all the months the demo sent (and one for a restatement).
            job = delivery_job_name(contract)
            link = page.locator(f'a[href="{_job_path(job)}"]')
            expect(link).to_be_visible()
            expect(link).to_contain_text(job)
            bars = page.locator(f'div:has(> div > div > a[href="{_job_path(job)}"])').locator(
                ".chunk-popover-target"
            )
            expect(bars.first).to_be_visible()
            runs = sum(int(bar.inner_text().strip() or 1) for bar in bars.all())
            assert runs == DEMO_RUNS[contract], (job, runs, demo.periods[contract])
        # Hovering a bar lists its runs, each a link to the run's page. A contract's one
        # run is a narrow bar that ends at the "now" line, which is drawn over it: the
        # line is made to let the pointer through, as a user's pointer reaches the bar
        # beside it.
        through = page.add_style_tag(
            content="[class*='RunTimeline_dividerLine'] { pointer-events: none !important; }"
        )
        bars.first.hover()
        expect(page.locator('.bp5-popover-content a[href^="/runs/"]').first).to_be_visible()
        # The pointer moved off and the rule taken out: the app is left as a user's is.
        page.mouse.move(0, 0)
        expect(page.locator(".bp5-popover-content")).to_have_count(0)
        through.evaluate("e => e.remove()")

    for contract in CONTRACTS:
        job = delivery_job_name(contract)
        visit(page, webserver, f"{_job_path(job)}/runs")
        with screenshot(page, f"job-{job}-runs"):
            # One run for all the months the demo sent (the oldest in the list, newest first),
            # tagged with their range as the UI tags a single-run backfill it launches itself.
            first, last = demo.periods[contract][0], demo.periods[contract][-1]
            tags = page.get_by_text("View all tags")
            expect(tags).to_have_count(DEMO_RUNS[contract])
            tags.last.click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text(f"asset_partition_range_start: {first}")
            expect(dialog).to_contain_text(f"asset_partition_range_end: {last}")
            page.keyboard.press("Escape")
            expect(page.get_by_text("No runs found")).to_have_count(0)


def test_asset_graph_shows_every_asset_group(page, webserver: Webserver, definitions):
    from playwright.sync_api import expect

    groups = sorted({spec.group_name for spec in definitions.resolve_all_asset_specs()})
    assert len(groups) > 1, groups
    visit(page, webserver, "/asset-groups")
    with screenshot(page, "asset-graph"):
        for group in groups:
            # A collapsed group's box in the graph itself (inside the SVG), not the sidebar.
            node = page.locator(f'foreignObject [data-tooltip="{group}"]')
            expect(node).to_be_visible()


def _hide_navigation(page) -> None:
    """Fold the left navigation (if an earlier page of the test has not), so a partition's
    detail, its status tag on the right, fits in the window and in its screenshot."""
    from playwright.sync_api import expect

    toggle = page.get_by_role("img", name=re.compile(r"^panel_show_(left|right)$"))
    expect(toggle).to_be_visible()
    if toggle.get_attribute("aria-label") == "panel_show_right":
        page.get_by_text("Hide navigation", exact=True).click()
    expect(page.get_by_role("img", name="panel_show_left")).to_be_visible()


def _partition_header(page, period: str):
    """The header of a partition's detail pane: the month's name and its status tag."""
    return page.locator(f'div:has(> span > div[title="{period}"])')


def _open_asset_partition(page, webserver: Webserver, month: Month, layer: str = "validated"):
    """The asset <layer>/<contract>, its Partitions tab, one month; that month's header."""
    from playwright.sync_api import expect

    path = f"/assets/{layer}/{month.contract}?view=partitions&partition={month.period}"
    visit(page, webserver, path)
    _hide_navigation(page)
    header = _partition_header(page, month.period)
    expect(header).to_be_visible()
    return header


def _checks(definitions, contract: str) -> list[str]:
    """The names of the asset checks on validated/<contract>, from the definitions."""
    import dagster as dg

    key = dg.AssetKey(["validated", contract])
    graph = definitions.resolve_asset_graph()
    return sorted(k.name for k in graph.asset_check_keys if k.asset_key == key)


def _open_check_partition(page, webserver: Webserver, month: Month, check: str = CHECK):
    """A check of validated/<contract> (contract_conformance unless told), its Partitions
    tab, one month picked from the list as an engineer would; that month's header."""
    from playwright.sync_api import expect

    path = f"/assets/validated/{month.contract}?view=checks&checkDetail={check}"
    visit(page, webserver, path)
    _hide_navigation(page)
    page.locator("button[role=tab]", has_text="Partitions").click()
    page.get_by_placeholder("Filter by partition…").fill(month.period)
    page.get_by_text(month.period, exact=True).first.click()
    header = _partition_header(page, month.period)
    expect(header).to_be_visible()
    return header


def _metadata_row(page, label: str):
    """The row of a metadata table whose label is `label` (its value may hold a table)."""
    from playwright.sync_api import expect

    row = page.locator(f"xpath=//tr[td[1][normalize-space(.)='{label}']]")
    expect(row).to_be_visible()
    return row


def _delivery_row(page, delivery_id: str):
    """A delivery's line in the `deliveries` table of a validation (ids shown as 12 digits)."""
    deliveries = _metadata_row(page, "deliveries").locator("tr")
    return deliveries.filter(has=page.get_by_text(delivery_id[:12], exact=True))


def _markdown(page, label: str):
    """A Markdown metadata value: shown in its row, or in a dialog behind [Show Markdown]."""
    row = _metadata_row(page, label)
    expand = row.get_by_text("[Show Markdown]")
    if expand.count():
        expand.click()
        return page.get_by_role("dialog")
    return row


def test_held_back_month_shows_held_with_its_breach(page, webserver: Webserver, demo: Demo):
    from playwright.sync_api import expect

    held = demo.held
    (critical,) = [b for b in held.breaches if b["severity"] == "critical"]

    _open_asset_partition(page, webserver, held)
    with screenshot(page, "held-back-month-asset"):
        # The month's one delivery is held ...
        delivery = _delivery_row(page, held.delivery_id)
        expect(delivery.get_by_text("held", exact=True)).to_be_visible()
    with screenshot(page, "held-back-month-breaches"):
        # ... and its breaches say why.
        breaches = _markdown(page, "breaches")
        rule = breaches.get_by_text(critical["rule"], exact=True)
        expect(rule).to_be_visible()
        rule.scroll_into_view_if_needed()
        expect(breaches.get_by_text(critical["detail"].split(". ")[0])).to_be_visible()

    header = _open_check_partition(page, webserver, held)
    with screenshot(page, "held-back-month-check"):
        tag = header.locator(".BaseTag")
        expect(tag).to_have_text("Failed")
        # An error: the red cross, not the warning triangle.
        expect(tag.get_by_role("img", name="cancel")).to_be_visible()
        expect(tag.get_by_role("img", name="warning_outline")).to_have_count(0)
        detail = header.locator("xpath=..")  # the month's pane: description, metadata
        expect(detail.get_by_text(re.compile(r"held back", re.IGNORECASE)).first).to_be_visible()


def test_month_published_with_breaches_is_a_warning_not_an_outage(
    page, webserver: Webserver, demo: Demo, definitions
):
    from playwright.sync_api import expect

    month = demo.published_with_breaches
    majors = month.count("major")
    breach_count = re.compile(rf"\b{majors} (major )?breach", re.IGNORECASE)

    _open_asset_partition(page, webserver, month)
    with screenshot(page, "published-with-breaches-asset"):
        # Its delivery validated, a few rows quarantined, the major breaches listed.
        delivery = _delivery_row(page, month.delivery_id)
        expect(delivery.get_by_text("validated", exact=True)).to_be_visible()
        breaches = _markdown(page, "breaches")
        expect(breaches.get_by_text("major", exact=True)).to_have_count(majors)
        expect(breaches.get_by_text("critical", exact=True)).to_have_count(0)

    header = _open_asset_partition(page, webserver, month, layer="curated")
    with screenshot(page, "published-with-breaches-curated"):
        # And published: the curated month is there for analysts.
        expect(header.locator(".BaseTag")).to_have_text("Materialized")

    # No check of the month is an error (the red cross of a held-back month); conformance
    # says it was published, with its major breaches; and the breaches show as a warning
    # (the yellow triangle), on the conformance check or on a check of their own.
    checks = _checks(definitions, month.contract)
    assert CHECK in checks, checks
    warned = []
    for check in [CHECK, *sorted(set(checks) - {CHECK})]:
        header = _open_check_partition(page, webserver, month, check)
        detail = header.locator("xpath=..")  # the month's pane: description, metadata
        with screenshot(page, f"published-with-breaches-{check}"):
            tag = header.locator(".BaseTag")
            expect(tag).to_have_text(re.compile(r"^(Passed|Failed)$"))
            ok = tag.get_by_role("img", name=re.compile(r"^(check_circle|warning_outline)$"))
            expect(ok).to_be_visible()
            expect(tag.get_by_role("img", name="cancel")).to_have_count(0)
            expect(detail.get_by_text(re.compile(r"held back", re.IGNORECASE))).to_have_count(0)
            if check == CHECK:
                words = detail.get_by_text(re.compile(r"published", re.IGNORECASE)).first
                expect(words).to_be_visible()
                expect(words).to_contain_text(breach_count)
            if tag.get_by_role("img", name="warning_outline").count():
                expect(tag).to_have_text("Failed")
                expect(detail.get_by_text(breach_count).first).to_be_visible()
                warned.append(check)
    assert warned, f"no check of {month.contract} {month.period} warns of its breaches"


def test_sensors_and_schedules_are_listed(page, webserver: Webserver, definitions):
    from playwright.sync_api import expect

    sensors = [s.name for s in definitions.sensors]
    schedules = [s.name for s in definitions.schedules]
    assert sensors and schedules, (sensors, schedules)
    visit(page, webserver, "/automation")
    with screenshot(page, "automation"):
        for names, kind in ((sensors, "sensor"), (schedules, "Scheduled")):
            for name in names:
                item = page.get_by_text(name, exact=True)
                expect(item).to_be_visible()
                # The line under the name says what it is ("Standard sensor", "Scheduled At
                # 07:00 AM GMT").
                expect(item.locator("xpath=../..")).to_contain_text(kind)


@pytest.fixture
def offline(browser):
    """A fresh browser context whose every request but file:// is refused; the refused
    URLs are listed in its `blocked`. (tests.browser.offline_page starts a Playwright of its
    own, which cannot run beside this module's.)"""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    blocked: list[str] = []

    def only_files(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    # And any request the routing did not see (a service worker's, say) is counted too.
    context.on("request", lambda r: r.url.startswith("file://") or blocked.append(r.url))
    context.blocked = blocked
    try:
        yield context
    finally:
        context.close()


def test_data_docs_render_styled_with_the_network_cut(
    page, offline, webserver: Webserver, demo: Demo
):
    from playwright.sync_api import expect

    month = demo.published
    _open_asset_partition(page, webserver, month)
    with screenshot(page, "data-docs-link"):
        row = _metadata_row(page, "data_docs")
        link = row.locator('a[href^="file://"]').first
        expect(link).to_be_visible()
        row.locator("td").first.scroll_into_view_if_needed()  # the label: no sideways scroll
        url = link.get_attribute("href")

    docs = offline.new_page()
    docs.goto(url)
    with screenshot(docs, "data-docs"):
        container = docs.locator(".container-fluid").first
        expect(container).to_be_visible()
        table = docs.locator("table.table-bordered:visible").first
        expect(table).to_be_visible()
        # Bootstrap's rules, which the page does not have without its stylesheet: a gutter
        # inside .container-fluid, a .table as wide as its container, and the grey 1px
        # rule (#dee2e6) round every cell of a .table-bordered.
        gutter = container.evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)")
        assert gutter > 0, "no Bootstrap: .container-fluid has no padding"
        width, room = table.evaluate(
            "e => [e.getBoundingClientRect().width, e.parentElement.clientWidth]"
        )
        assert abs(width - room) < 2, f"no Bootstrap: .table is {width}px of {room}px"
        border = table.locator("td").first.evaluate(
            "e => { const s = getComputedStyle(e);"
            " return [s.borderTopWidth, s.borderTopStyle, s.borderTopColor].join(' '); }"
        )
        assert border == "1px solid rgb(222, 226, 230)", f"no Bootstrap: a cell's border {border}"
        # Its data asset is the contract's delivery for the month.
        overview = docs.get_by_text("Data asset:").first
        expect(overview).to_be_visible()
        (asset,) = re.findall(r"Data asset:(.*)", overview.inner_text())
        assert month.contract in asset and month.period in asset, asset
        shown = re.findall(r"\b[0-9a-f]{8,}\b", asset)
        assert shown and month.delivery_id.startswith(shown[0]), (asset, month.delivery_id)
        assert offline.blocked == [], f"the page asked the network for {offline.blocked}"
