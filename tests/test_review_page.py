"""The breach review page and the notices it links, as a lead opens them.

Most tests read a register written straight into the lake (tests/breach_homes.py); the
browser tests open the files from file:// in Debian's chromium with the network cut, count
what they show against the warehouse, check that markup a delivery carries stays text, and
keep screenshots (test-artifacts/screenshots/, for the README). One browser test runs the
whole pipeline on files carrying markup: it is marked slow.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import redirect_stdout

import duckdb
import pytest

from pipelines.cli.main import main
from pipelines.cli.review import review_path
from pipelines.home.settings import Settings
from pipelines.reviews.breach_review import ReviewWritten, write_review
from tests.breach_homes import MARKUP_HEADER, seeded_home, today
from tests.browser import chromium_browser, offline_page
from tests.conftest import REAL_STOP_AND_SEARCH, SharedGreatExpectations, drop, make_home


def _seed(home: Settings) -> tuple[Settings, dict[str, str], ReviewWritten]:
    ids = seeded_home(home)
    written = write_review(home, review_path(home), today())
    return home, ids, written


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A seeded register and its review page, written once for the tests that only read
    them (each test wrote its own: a second apiece)."""
    with pytest.MonkeyPatch.context() as patch:
        yield _seed(make_home(tmp_path_factory.mktemp("review-home"), patch))


@pytest.fixture
def own_seeded(home: Settings) -> tuple:
    """A seeded register and its review page of the test's own, for a test that writes
    them again (the command writes its letters with today's date, not the seeded one)."""
    return _seed(home)


def _query(home, sql: str) -> list[tuple]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_review_page_lists_every_open_breach_most_severe_first(seeded):
    home, ids, written = seeded
    page = written.page.read_text(encoding="utf-8")
    ((open_count,),) = _query(
        home,
        "SELECT count(*) FROM governance.breach_register "
        "WHERE status IN ('open', 'notified', 'acknowledged')",
    )
    assert written.open_breaches == open_count == 6
    assert page.count("<tr class=breach ") == open_count
    assert ids["sep_ethnicity"] not in page.split("id=open-breaches")[1].split("</table>")[0]
    # Critical first (the rejected use-of-force month), then major, oldest first.
    order = [page.index(ids[k]) for k in ("uof_format", "sep_type", "oct_type")]
    assert order == sorted(order)
    assert "Broken month after month" in page and "September 2025, October 2025" in page


def test_review_page_gives_the_exact_command_for_each_step(seeded):
    home, ids, written = seeded
    page = written.page.read_text(encoding="utf-8")
    prefix = f"datashare --home {home.home} breaches"
    assert f"{prefix} notify {ids['oct_type']}" in page  # open: may be notified
    assert f"{prefix} notify {ids['sep_type']}" not in page  # already notified
    assert f"{prefix} ack {ids['sep_type']}" in page
    assert f"{prefix} waive {ids['sep_type']} --note &#x27;why&#x27;" in page
    assert f"{prefix} notice --contract stop_and_search --period 2025-12" in page


def test_each_notice_the_page_links_is_written_beside_it(seeded):
    home, _, written = seeded
    page = written.page.read_text(encoding="utf-8")
    months = _query(
        home,
        "SELECT DISTINCT contract, period FROM governance.breach_register "
        "WHERE status IN ('open', 'notified', 'acknowledged') ORDER BY ALL",
    )
    for contract, period in months:
        link = f"notices/notice-{contract}-{period}.html"
        assert f"href='{link}'" in page
        assert (written.page.parent / link).exists()
        assert (written.page.parent / link).with_suffix(".md").exists()
    # The page is a view: writing drafts records no export (only `breaches notice` does).
    assert _query(home, "SELECT count(*) FROM governance.exports") == [(1,)]


def test_each_notice_beside_the_page_is_the_one_breaches_notice_makes(seeded):
    """The page's letters read one in-memory copy of the governance views (a pass over the
    lake per letter took minutes on the demo's home): each is still, word for word, the
    letter `datashare breaches notice` makes from the warehouse itself."""
    from pipelines.governance.breach_notice import notice_from_warehouse, notice_stem
    from pipelines.warehouse.catalog import connect
    from schemas.contract import load_contracts

    home, _, written = seeded
    contracts = load_contracts()
    notices = sorted(written.page.parent.glob("notices/notice-*.md"))
    assert len(notices) >= 2
    with connect(home.warehouse) as con:
        for contract, period in _query(
            home,
            "SELECT DISTINCT contract, period FROM governance.breach_register "
            "WHERE status IN ('open', 'notified', 'acknowledged') ORDER BY ALL",
        ):
            notice = notice_from_warehouse(con, contracts[contract], period, today())
            folder = written.page.parent / "notices"
            stem = notice_stem(contract, period)
            assert (folder / f"{stem}.md").read_text(encoding="utf-8") == notice.markdown
            assert (folder / f"{stem}.html").read_text(encoding="utf-8") == notice.html


def test_sent_to_the_force_shows_each_export_and_notification(seeded):
    _, ids, written = seeded
    page = written.page.read_text(encoding="utf-8")
    assert "notice notice-stop_and_search-2025-09.md (2 breach(es))" in page
    assert f"22 October 2025: <code>{ids['sep_type']}</code> marked notified by lead (letter)" in (
        page
    )


def test_markup_from_a_delivery_is_escaped_on_the_page(seeded):
    _, _, written = seeded
    page = written.page.read_text(encoding="utf-8")
    assert MARKUP_HEADER not in page and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page


def test_review_command_writes_the_page_and_the_run_summary_links_it(own_seeded, capsys):
    home, _, _ = own_seeded
    assert main(["review"]) == 0
    out = capsys.readouterr().out
    assert f"Breach review: {review_path(home)}" in out and "6 open breach(es)" in out
    from pipelines.orchestration.pending_runs import RunReport

    summary = RunReport(home, {}).text()
    assert f"--home {home.home} review" in summary
    assert str(review_path(home)) in summary


# --- in a browser --------------------------------------------------------------------------


def test_review_page_and_its_notice_in_a_browser(seeded, browser):
    """The page matches the warehouse and links its notices; a notice prints as a letter;
    neither runs the markup a delivery carried. Each page in a context of its own."""
    home, ids, written = seeded
    ((open_count,),) = _query(
        home,
        "SELECT count(*) FROM governance.breach_register "
        "WHERE status IN ('open', 'notified', 'acknowledged')",
    )
    ((exports,),) = _query(home, "SELECT count(*) FROM governance.exports")
    with offline_page("breach-review", browser) as page:
        page.goto(written.page.as_uri())
        assert page.locator("tr.breach").count() == open_count
        assert page.locator("#open-count strong").inner_text() == str(open_count)
        assert page.locator("tr.export").count() == exports
        assert page.locator("figure svg polyline").count() >= 1  # the chart, inline
        assert page.evaluate("window.pwned") is None  # the header's script never ran
        assert MARKUP_HEADER in page.locator("#open-breaches").inner_text()
        assert page.blocked == []  # nothing fetched from anywhere
        # A notice is one click away, from the file alone.
        page.locator(f"tr.breach:has-text('{ids['dec_late']}') a").click()
        page.wait_for_load_state()
        assert page.url.endswith("notices/notice-stop_and_search-2025-12.html")
        assert page.locator("h1").inner_text() == (
            "Stop and search: notice of breaches for December 2025"
        )
        page.go_back()
        # Printed: the screen's hint goes, the histories stay.
        hint = page.locator("#print-hint")
        assert hint.is_visible()
        page.emulate_media(media="print")
        assert not hint.is_visible()
        assert page.locator("ol.history").first.is_visible()

    # A notice in the browser prints as a letter and escapes markup.
    notice = written.page.parent / "notices" / "notice-stop_and_search-2025-11.html"
    with offline_page("breach-notice", browser) as page:
        page.goto(notice.as_uri())
        assert page.locator("h3").count() == 1  # the one breach of the month
        assert page.locator("main b, main script").count() == 0  # no markup from the file
        text = page.locator("main").inner_text()
        assert "2025-11-<b>bold</b>.csv" in text and MARKUP_HEADER in text
        assert page.evaluate("window.pwned") is None
        width = "getComputedStyle(document.body).maxWidth"
        assert page.evaluate(width) != "none"
        page.emulate_media(media="print")
        assert page.evaluate(width) == "none"  # the print layout uses the whole page
        assert page.blocked == []


RUN_ON_MARKUP = "test_a_run_on_files_with_markup_shows_escaped_everywhere"


@pytest.fixture(scope="module")
def markup_run(
    tmp_path_factory: pytest.TempPathFactory, ge_helper_process: SharedGreatExpectations
) -> Iterator[Settings]:
    """A home where `datashare run` (in this process, with the worker's great-expectations
    helper) took a delivery whose file name and header carry markup, and a value that is
    markup, then `datashare review` wrote its page."""
    folder = tmp_path_factory.mktemp("markup-run")
    lines = REAL_STOP_AND_SEARCH.read_text(encoding="utf-8").splitlines()[:41]
    header = lines[0] + ',"<b>Rank</b>"'
    rows = [line + ",<script>window.pwned=1</script>" for line in lines[1:]]
    rows[3] = rows[3].replace("Person search", "<b>Person</b> search", 1)
    source = folder / "2022-06-<b>x.csv"
    source.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        home = make_home(folder, patch)
        drop(home, "stop_and_search", "2022-06", source)
        with ge_helper_process.installed(), redirect_stdout(io.StringIO()):
            assert main(["run"]) == 0
            assert main(["review"]) == 0
        yield home


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[object]:
    """One Chromium for the module's browser tests (a launch, with Playwright's driver, is
    about a second and a half of CPU), each page in a context of its own. Started once the
    run on files with markup is over, if that test is to run: Dagster must not run in this
    thread while Playwright's event loop is in it."""
    if any(getattr(item, "originalname", None) == RUN_ON_MARKUP for item in request.session.items):
        request.getfixturevalue("markup_run")
    with chromium_browser() as launched:
        yield launched


@pytest.mark.slow
def test_a_run_on_files_with_markup_shows_escaped_everywhere(markup_run, browser):
    """The whole pipeline: a delivery whose file name and header carry markup, and a
    value that is markup; the notice and the page show them as text, counts as the
    warehouse has them."""
    home = markup_run
    ((open_count,),) = _query(
        home, "SELECT count(*) FROM governance.breach_register WHERE status = 'open'"
    )
    assert open_count >= 2  # the unagreed column, the unknown type
    with offline_page("breach-review-after-a-run", browser) as page:
        page.goto(review_path(home).as_uri())
        assert page.locator("tr.breach").count() == open_count
        assert page.locator("main b, main script").count() == 0
        assert page.evaluate("window.pwned") is None
        page.goto(
            (review_path(home).parent / "notices/notice-stop_and_search-2022-06.html").as_uri()
        )
        assert page.locator("main b, main script").count() == 0
        assert "2022-06-<b>x.csv" in page.locator("main").inner_text()
        assert page.locator("h3").count() == open_count
