"""The oversight pack in a browser, as a board member opens it: from a file, offline.

The pack `datashare demo` writes (the session's shared demo home, tests/conftest.py: every
contract, eight months, the pack written by `datashare report` at the demo's end) is read
as it stands: the headline figures are the warehouse's, no chart text spills out of its
chart, and print media applies the print styles. The values outside the agreed categories
need deliveries made for them: one home built for that test by the whole pipeline
(`datashare run`, then `datashare report`) from synthetic deliveries of recorded crime and
stop and search for three months, the latest crime release carrying `Theft ` and `THEFT` and
the latest stop and search month twelve searches under misspelt Acts; they are one labelled
group whose note counts what the warehouse holds. Chromium (tests/browser.py) checks what a
reader would. The pages are kept as screenshots (`oversight-pack.png`,
`oversight-pack-print.png`) for the README.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipelines.cli.main import main
from pipelines.demo.synthetic import write_delivery
from pipelines.governance.delivery_schedule import scheduled_periods
from pipelines.oversight.charts import fmt_count, fmt_ratio, fmt_share, month_label
from pipelines.oversight.pack_summary import fmt_days
from pipelines.validation.agreed_values import NOT_AGREED
from schemas.contract import load_contracts
from tests.browser import chromium_browser, offline_page, require_chromium, screenshots_dir
from tests.conftest import SharedGreatExpectations, make_home

pytestmark = pytest.mark.slow  # the module's home runs the whole pipeline

CONTRACTS = load_contracts()
UNTIL = dt.date(2025, 12, 20)  # deliveries for the months to November 2025
MISSPELT = ("Misuse o Drugs Act 1971 (section 23)", "Police and Criminal Evidence Act 1984")


def _periods(name: str) -> list[str]:
    contract = CONTRACTS[name]
    if contract.schedule.period == "once":
        return [contract.schedule.first_period]
    periods = scheduled_periods(contract, UNTIL)
    return periods[-3:] if contract.schedule.period == "monthly" else periods[-2:]


def _edit_csv(path: Path, edit) -> None:
    """Rewrite a delivered CSV with `edit(rows)` applied (header and layout kept)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    edit(rows)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# The contracts the labelled group is shown for: recorded crime's categories and the Acts
# stop and search uses. (Every contract's pack is the demo's.)
GROUPED = ("borough_crime", "stop_and_search")


def _write_deliveries(dropzone: Path) -> None:
    for index, name in enumerate(CONTRACTS):
        if name not in GROUPED:
            continue
        for i, period in enumerate(_periods(name)):
            path = dropzone / name / period / f"{period}-{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_delivery(CONTRACTS[name], period, path, 300, 100 * index + i, 0)
    crime = sorted((dropzone / "borough_crime").rglob("*.csv"))[-1]
    searches = sorted((dropzone / "stop_and_search").rglob("*.csv"))[-1]

    def thefts(rows: list[dict]) -> None:
        theft = [r for r in rows if r["MajorText"] == "Theft"]
        theft[0]["MajorText"], theft[1]["MajorText"] = "Theft ", "THEFT"

    def acts(rows: list[dict]) -> None:
        for i in range(12):
            rows[i]["Legislation"] = MISSPELT[i % 2]

    _edit_csv(crime, thefts)
    _edit_csv(searches, acts)


@pytest.fixture(scope="module")
def demo_pack(shared_demo: Path) -> dict:
    """The pack `datashare demo` wrote in the session's shared demo home, and that home's
    warehouse: read only (never written: other modules copy that home)."""
    require_chromium()
    home = shared_demo / "home"
    path = home / "reports" / "oversight-pack.html"
    assert path.exists(), (shared_demo / "demo-stdout.txt").read_text(encoding="utf-8")
    return {"warehouse": home / "warehouse.duckdb", "path": path, "url": path.as_uri()}


@pytest.fixture(scope="module")
def pack(tmp_path_factory, ge_helper_process: SharedGreatExpectations) -> dict:
    """A home built by `datashare run` from deliveries carrying values outside the agreed
    categories (see `_write_deliveries`), and its pack written by `datashare report`; the
    run uses the worker's great-expectations helper (conftest).

    One Dagster run at a time (DATASHARE_MAX_RUNS=1, a user's setting): the two contracts
    then run in this process, one after the other, with the worker's helper. At two, each
    goes to a spawned worker process that imports Dagster, makes the definitions and
    imports great-expectations of its own: 19.7 s of CPU against 4.8 s, for the same
    curated rows, marts and breaches (compared row for row). Contracts side by side have
    tests of their own (tests/test_pipeline.py); this module looks at the pack."""
    require_chromium()
    patch = pytest.MonkeyPatch()
    try:
        patch.setenv("DATASHARE_MAX_RUNS", "1")
        settings = make_home(tmp_path_factory.mktemp("pack-home"), patch)
        _write_deliveries(settings.dropzone)
        with ge_helper_process.installed():
            assert main(["run"]) == 0
        assert main(["report"]) == 0
        path = settings.home / "reports" / "oversight-pack.html"
        yield {"warehouse": settings.warehouse, "path": path, "url": path.as_uri()}
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def browser(pack: dict) -> Iterator[object]:
    """One Chromium for the module's pages, each opened in a fresh context: once `pack`
    has run the pipeline (Dagster must not run in a thread where Playwright is running)."""
    with chromium_browser() as browser:
        yield browser


def query(pack: dict, sql: str) -> list[tuple]:
    with duckdb.connect(str(pack["warehouse"]), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_the_headline_figures_are_the_warehouses(demo_pack, browser):
    pack = demo_pack
    with offline_page("oversight-pack", browser) as page:
        page.goto(pack["url"])
        cards = page.eval_on_selector_all(
            "a.headline",
            "cards => cards.map(c => ({key: c.dataset.headline, href: c.getAttribute('href'),"
            " value: c.querySelector('.value').textContent,"
            " period: c.querySelector('.period').textContent}))",
        )
        assert page.blocked == []
        sections = page.eval_on_selector_all("section[id]", "s => s.map(e => e.id)")
    found = {c["key"]: c for c in cards}
    assert len(found) >= 9 and sections[0] == "summary"
    assert all(c["href"][1:] in sections and c["period"] for c in cards)

    # Independently of the pack's own SQL: the figures straight from the views.
    ((ratio, end),) = query(pack, """
        SELECT ratio_to_white, month FROM oversight.stop_search_disproportionality
        WHERE time_window = '12 months' AND basis = 'self-defined' AND ethnic_group = 'Black'
        ORDER BY month DESC LIMIT 1""")  # fmt: skip
    assert found["stop_search_black_white_ratio"]["value"] == fmt_ratio(ratio)
    assert found["stop_search_black_white_ratio"]["period"].startswith(
        f"12 months to {month_label(end)}"
    )
    ((crimes, end),) = query(pack, """
        SELECT sum(last_12_months), max(month) FROM oversight.crime_trends
        WHERE month = (SELECT max(month) FROM oversight.crime_trends)""")  # fmt: skip
    assert found["crime_last_12_months"]["value"] == (fmt_count(crimes) if crimes else
                                                       "not available")  # fmt: skip
    ((share, end),) = query(pack, """
        SELECT sum(attended_within_target) / sum(calls_attended), max(month)
        FROM oversight.emergency_response WHERE grade = 'I'
          AND month = (SELECT max(month) FROM oversight.emergency_response)""")  # fmt: skip
    assert (found["emergency_i_within_target"]["value"], found["emergency_i_within_target"][
        "period"]) == (fmt_share(share), month_label(end))  # fmt: skip
    ((days, withheld, end),) = query(pack, """
        SELECT median_days_to_finalise, allegations_finalised_suppressed, month
        FROM oversight.complaints_timeliness WHERE handling = 'Schedule 3'
        ORDER BY month DESC LIMIT 1""")  # fmt: skip
    assert found["complaints_median_days"]["value"] == ("withheld" if withheld else
                                                         fmt_days(days))  # fmt: skip
    ((trust,),) = query(pack, """
        SELECT max(mean_of_boroughs) FROM oversight.trust_and_confidence
        WHERE measure = 'Trust MPS'
          AND date = (SELECT max(date) FROM oversight.trust_and_confidence)""")  # fmt: skip
    assert found["trust_mps"]["value"] == fmt_share(trust)


def test_no_chart_text_overflows_its_chart(demo_pack, browser):
    pack = demo_pack
    with offline_page("oversight-pack-charts", browser) as page:
        page.goto(pack["url"])
        spilled = page.evaluate("""() => {
            const out = [];
            for (const svg of document.querySelectorAll('figure svg')) {
                const box = svg.getBoundingClientRect();
                const [, , w, h] = svg.getAttribute('viewBox').split(' ').map(Number);
                for (const t of svg.querySelectorAll('text')) {
                    const r = t.getBoundingClientRect();  // after any rotation
                    const b = t.getBBox();  // in the viewBox's units
                    const inside = r.left >= box.left - 1 && r.right <= box.right + 1
                        && r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
                    const rotated = t.hasAttribute('transform');
                    const fits = rotated || (b.x >= -1 && b.x + b.width <= w + 1
                        && b.y >= -1 && b.y + b.height <= h + 1);
                    if (!inside || !fits) out.push([svg.getAttribute('aria-label'),
                                                    t.textContent, b.x, b.width, w]);
                }
            }
            return out;
        }""")
        count = page.eval_on_selector_all("figure svg", "s => s.length")
    assert count >= 12 and spilled == []


def test_values_outside_the_agreed_categories_are_one_labelled_group(pack, browser):
    agreed = CONTRACTS["borough_crime"].column("major_category").value_rules[0].valid_values
    listed = ", ".join("'" + v.replace("'", "''") + "'" for v in agreed)
    ((cells, crimes),) = query(pack, f"""
        SELECT count(*), sum("count") FROM curated.borough_crime
        WHERE major_category NOT IN ({listed})""")  # fmt: skip
    assert cells == 2 * 24  # two rows of the release, each 24 months
    with offline_page("oversight-pack-crime", browser) as page:
        page.goto(pack["url"])
        chart = page.locator("figure", has=page.locator("svg[aria-label^='Recorded crime']"))
        lines = chart.locator("g.series").evaluate_all("gs => gs.map(g => g.dataset.series)")
        note = chart.locator("figcaption").inner_text()
        power = page.locator("figure", has=page.locator("svg[aria-label='By the power used']"))
        bars = power.locator("g.category").evaluate_all("gs => gs.map(g => g.dataset.category)")
        power_note = power.locator("figcaption").inner_text()
        chart.screenshot(path=str(screenshots_dir() / "oversight-pack-crime-trends.png"))
    assert set(lines) <= set(agreed) | {NOT_AGREED} and lines[-1] == NOT_AGREED
    assert f"{NOT_AGREED}: {cells:,} monthly figures ({crimes:,} crimes)" in note
    assert "major_category_known" in note
    assert bars[-1] == NOT_AGREED and not set(MISSPELT) & set(bars)
    ((searches,),) = query(pack, """
        SELECT searches FROM oversight.stop_search_outcomes WHERE time_window = '12 months'
          AND basis = 'self-defined' AND ethnic_group = 'All' AND object_of_search = 'All'
          AND legislation = 'Not an agreed value'
          AND month = (SELECT max(month) FROM oversight.stop_search_outcomes)""")  # fmt: skip
    assert searches == 12 and f"{NOT_AGREED}: 12 searches" in power_note


def test_print_media_applies_the_print_styles(demo_pack, browser):
    pack = demo_pack
    with offline_page("oversight-pack-print", browser) as page:
        page.goto(pack["url"])
        page.emulate_media(media="print")
        styles = page.evaluate("""() => {
            const css = e => getComputedStyle(e);
            const main = document.querySelector('main').getBoundingClientRect();
            return {
                sections: [...document.querySelectorAll('section[id]:not(#summary)')]
                    .map(s => css(s).breakBefore),
                summary: css(document.getElementById('summary')).breakAfter,
                nav: css(document.querySelector('nav')).display,
                figures: [...document.querySelectorAll('figure')]
                    .map(f => css(f).breakInside),
                wide: [...document.querySelectorAll('figure svg')]
                    .filter(s => s.getBoundingClientRect().right > main.right + 1).length,
                colour: css(document.querySelector('a.headline .value')).color,
            };
        }""")
        pdf = page.pdf(format="A4")
    assert set(styles["sections"]) == {"page"} and styles["summary"] == "page"
    assert styles["nav"] == "none" and set(styles["figures"]) == {"avoid"}
    assert styles["wide"] == 0  # every chart scaled to the printed width, none clipped
    assert styles["colour"] in ("rgb(0, 0, 0)", "rgb(27, 27, 27)")  # black on white
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages >= len(styles["sections"]) + 1  # the summary page, then a page per measure
    (screenshots_dir() / "oversight-pack.pdf").write_bytes(pdf)
