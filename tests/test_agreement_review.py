"""`datashare agreement review`: every figure the review states is the warehouse's.

Each figure is checked against a query of its own (`assert_figures_are_the_warehouses`),
written apart from the engine's SQL, on three homes: a register written straight into the
lake with breaches of every kind, answered and not (tests/breach_homes.py); the real June
2022 stop-and-search file carrying a column nobody agreed, through intake, validation,
publication, the warehouse and then retention; and a small `datashare demo` (slow: it runs
the whole pipeline, once for the session: tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import markupsafe
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pipelines.cli.main import main
from pipelines.governance.delivery_schedule import MONTHS, deadlines
from pipelines.intake.delivery_intake import take_deliveries
from pipelines.intake.dropzone import FolderDropZone
from pipelines.lake.publishing import awaiting_publication, publish_delivery
from pipelines.lake.register import BREACH_SCHEMA, Register
from pipelines.lake.retention import enforce_retention
from pipelines.lake.store import open_lake
from pipelines.reviews import agreement_page
from pipelines.reviews.agreement_page import (
    agreement_review_html,
    render_html,
    render_markdown,
    review_paths,
    write_agreement_review,
)
from pipelines.reviews.agreement_review import (
    GOVERNANCE_READ,
    LONDON,
    AgreementReview,
    Section,
    Table,
    build_review,
    review_tables,
    window,
)
from pipelines.validation.delivery_verdicts import validate_pending
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import Contract, load_contracts
from tests.breach_homes import MARKUP_HEADER, seeded_home
from tests.conftest import REAL_STOP_AND_SEARCH, build_template, copy_home, restore_template

OPEN = ("open", "notified", "acknowledged")


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchall()


def assert_figures_are_the_warehouses(
    con: duckdb.DuckDBPyConnection,
    review: AgreementReview,
    contract: Contract,
    curated_written: bool = True,
) -> None:
    """Each figure of `review` against a query of the warehouse written for this test
    (`curated_written`: the lake holds the curated rows, not only the register's records)."""
    name, first, last, today = contract.name, review.first, review.last, review.today
    window_ = [first, last]

    # Deliveries: the day each period's first file was received, and how late that was.
    received = dict(_one(con, """
        SELECT period, min(event_at) FROM governance.delivery_events
        WHERE contract = ? AND event = 'received' GROUP BY period""", [name]))  # fmt: skip
    watched_from = contract.schedule.late_checks_from or min(received, default=None)
    on_time = late = never = 0
    most_late = 0
    for row in review.periods:
        period = row["period"]
        due, _ = deadlines(contract, period)
        first_day = received[period].astimezone(LONDON).date() if period in received else None
        assert row["received"] == first_day, period
        if first_day is not None:
            assert row["days_late"] == max((first_day - due).days, 0), period
            on_time += first_day <= due
            late += first_day > due
            most_late = max(most_late, (first_day - due).days)
        elif watched_from and period >= watched_from and due <= today:
            never += 1
            assert row["verdict"] == "never received", period
    figures = review.figures
    assert figures["periods_on_time"] == on_time
    assert figures["periods_late"] == late
    assert figures["most_days_late"] == most_late
    assert figures["periods_never_received"] == never

    # Right first time: the first file received was published and broke no critical rule.
    ((right,),) = _one(con, """
        WITH firsts AS (
            SELECT period, arg_min(delivery_id, event_at) AS delivery_id
            FROM governance.delivery_events
            WHERE contract = ? AND event = 'received' AND period BETWEEN ? AND ?
            GROUP BY period)
        SELECT count(*) FROM firsts f
        WHERE EXISTS (SELECT 1 FROM governance.delivery_events e
                      WHERE e.delivery_id = f.delivery_id AND e.event = 'published')
          AND NOT EXISTS (SELECT 1 FROM governance.breach_records b
                          WHERE b.delivery_id = f.delivery_id AND b.severity = 'critical')
        """, [name, *window_])  # fmt: skip
    assert figures["periods_right_first_time"] == right

    # Breaches by severity, and the rules broken in two or more periods.
    by_severity = dict(_one(con, """
        SELECT severity, count(DISTINCT breach_id) FROM governance.breach_records
        WHERE contract = ? AND period BETWEEN ? AND ? GROUP BY severity""",
        [name, *window_]))  # fmt: skip
    assert figures["breaches"] == sum(by_severity.values())
    for severity in ("critical", "major", "minor"):
        assert figures[f"breaches_{severity}"] == by_severity.get(severity, 0)
    recurring = dict(_one(con, """
        SELECT rule, count(DISTINCT period) FROM governance.breach_records
        WHERE contract = ? AND period BETWEEN ? AND ?
        GROUP BY rule HAVING count(DISTINCT period) >= 2""", [name, *window_]))  # fmt: skip
    assert figures.get("recurring_rules", {}) == recurring

    # Answers: resolved (and how long from raised), notified, acknowledged in time or not.
    resolved = _one(con, """
        SELECT r.breach_id, min(r.raised_at), min(e.event_at)
        FROM governance.breach_records r JOIN governance.breach_events e USING (breach_id)
        WHERE r.contract = ? AND r.period BETWEEN ? AND ? AND e.status = 'resolved'
        GROUP BY r.breach_id""", [name, *window_])  # fmt: skip
    took = [(e.astimezone(LONDON).date() - r.astimezone(LONDON).date()).days
            for _, r, e in resolved]  # fmt: skip
    agreed = contract.agreement.get("noticeResponseDays")
    assert figures["breaches_resolved"] == len(resolved)
    assert figures["most_days_to_resolve"] == max(took, default=None)
    assert figures["resolved_within_agreed"] == sum(d <= agreed for d in took)
    notified = _one(con, """
        SELECT r.breach_id, min(e.event_at) FILTER (WHERE e.status = 'notified'),
               min(e.event_at) FILTER (WHERE e.status = 'acknowledged')
        FROM (SELECT DISTINCT breach_id FROM governance.breach_records
              WHERE contract = ? AND period BETWEEN ? AND ?) r
        JOIN governance.breach_events e USING (breach_id)
        GROUP BY r.breach_id HAVING count(*) FILTER (WHERE e.status = 'notified') > 0
        """, [name, *window_])  # fmt: skip
    assert figures["breaches_notified"] == len(notified)

    def london(at):
        return at.astimezone(LONDON).date()

    in_time = sum(bool(a) and (london(a) - london(n)).days <= agreed for _, n, a in notified)
    assert figures["acknowledged_in_time"] == in_time
    status = dict(_one(con, "SELECT breach_id, status FROM governance.breach_register"))
    overdue = sum(
        not a and status[b] == "notified" and (today - london(n)).days > agreed
        for b, n, a in notified
    )
    assert figures["notices_overdue"] == overdue

    # Open now, whatever period, and the oldest one's age.
    opened = _one(con, f"""
        SELECT severity, raised_at FROM governance.breach_register
        WHERE contract = ? AND status IN {OPEN}""", [name])  # fmt: skip
    assert figures["open_now"] == len(opened)
    assert figures["open_critical"] == sum(s == "critical" for s, _ in opened)
    assert sum(figures["open_by_age"].values()) == len(opened)
    ages = [(today - r.astimezone(LONDON).date()).days for _, r in opened]
    assert figures["oldest_open_days"] == max(ages, default=None)

    # Over-sharing: periods whose file carried an unagreed column.
    ((shared,),) = _one(con, """
        SELECT count(DISTINCT period) FROM governance.breach_records
        WHERE contract = ? AND rule = 'file.unagreed_columns' AND period BETWEEN ? AND ?""",
        [name, *window_])  # fmt: skip
    assert figures["over_sharing_periods"] == shared

    # Rows per period: published rows are the curated table's (a wide layout's rows_curated
    # counts file rows, each carrying many months: checked against the register there);
    # quarantined rows are the analysts' quarantine of the standing deliveries.
    by_period = dict(figures["rows_by_period"])
    for (period,) in _one(con, "SELECT DISTINCT period FROM governance.erasures "
                          "WHERE contract = ?", [name]):  # fmt: skip
        by_period.pop(period, None)  # the register remembers what retention erased since
    shown = {p: r["rows_curated"] for p, r in by_period.items() if r["rows_curated"]}
    if contract.layout is None and curated_written:
        curated = dict(_one(con, f"""
            SELECT _period, count(*) FROM curated.{name}
            WHERE _period BETWEEN ? AND ? GROUP BY _period""", window_))  # fmt: skip
        assert shown == curated
    else:
        # The rows that passed (on the validated event, or the published one) of each
        # delivery whose latest event is its publication.
        published = dict(_one(con, """
            WITH delivery AS (
                SELECT period, delivery_id, arg_max(event, event_at) AS latest,
                       max(rows_curated) AS rows_passed
                FROM governance.delivery_events
                WHERE contract = ? AND event <> 'duplicate' AND period BETWEEN ? AND ?
                GROUP BY ALL)
            SELECT period, sum(rows_passed) FROM delivery WHERE latest = 'published'
            GROUP BY period""", [name, *window_]))  # fmt: skip
        assert shown == {p: n for p, n in published.items() if p in by_period}
    quarantined = dict(_one(con, """
        SELECT _period, count(*) FROM governance.quarantine
        WHERE contract = ? AND _period BETWEEN ? AND ? GROUP BY _period""",
        [name, *window_]))  # fmt: skip
    shown = {p: r["rows_quarantined"] for p, r in by_period.items() if r["rows_quarantined"]}
    assert shown == quarantined

    # Retention: erasures recorded, and the curated periods held now.
    ((erased,),) = _one(con, "SELECT count(*) FROM governance.erasures WHERE contract = ?", [name])
    assert figures["erased_files"] == erased
    if contract.agreement.get("retention"):
        target = f"curated.{name}_releases" if contract.layout else f"curated.{name}"
        ((held,),) = _one(con, f"SELECT count(DISTINCT _period) FROM {target}")
        assert figures["curated_periods_held"] == held

    # Versions: those the breaches were checked under, and the contract file's own.
    seen = {v for (v,) in _one(con, """
        SELECT DISTINCT contract_version FROM governance.breach_records
        WHERE contract = ? AND period BETWEEN ? AND ?""", [name, *window_])}  # fmt: skip
    assert set(figures["versions"]) == seen | {contract.version}


def assert_read_once_is_the_same(
    warehouse: Path, lake, contract: Contract, direct: AgreementReview
) -> None:
    """The review built from `review_tables` (the governance views read once, as
    `datashare agreement review` builds every contract's) is `direct`, the one built from
    the warehouse itself, figure for figure and in both forms; and only those views were
    copied into memory, the curated tables being read where they stand."""
    with review_tables(warehouse) as tables:
        copied = build_review(tables, contract, lake, direct.today, direct.first, direct.last)
        in_memory = set(tables.execute("""
            SELECT schema_name, table_name FROM duckdb_tables()
            WHERE database_name = 'memory'""").fetchall())  # fmt: skip
    assert in_memory <= {("governance", name) for name in GOVERNANCE_READ}
    assert copied.figures == direct.figures
    assert render_html(copied) == render_html(direct)
    assert render_markdown(copied) == render_markdown(direct)


def assert_page_is_safe(page: str) -> None:
    """The page prints on its own: print styles, no script, nothing fetched."""
    assert "@media print" in page and "@page" in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page, re.I)
    assert "<link" not in page.lower() and "@import" not in page


# -- a register with breaches of every kind -------------------------------------------------


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """tests/breach_homes.py's seeded home, built once for the module (its register and
    warehouse cost more than a copy); the template's folder and the breach ids."""
    return build_template(tmp_path_factory, "agreement-seeded", seeded_home)


@pytest.fixture
def seeded(seeded_template, monkeypatch):
    """The seeded home, this test's own copy of the module's (each test writes its review
    pages, and some the lake or the warehouse), and its breach ids."""
    folder, ids = seeded_template
    return restore_template(folder, monkeypatch), dict(ids)


def test_seeded_review_figures_are_the_warehouses(seeded):
    home, ids = seeded
    contract = load_contracts()["stop_and_search"]
    today = dt.date(2026, 2, 2)  # 2025-12 is past its late date, never received
    review, page_path, md_path = write_agreement_review(
        home.warehouse, open_lake(home.lake), contract, home.home, today, "2025-09", "2025-12"
    )
    with connect(home.warehouse) as con:
        assert_figures_are_the_warehouses(con, review, contract, curated_written=False)

    f = review.figures
    # What a lead reads, stated: October came 8 days after its due date (20 November),
    # December never came, one breach was resolved 13 days after it was raised, and the
    # notice of the Type breach (notified 22 October) was never acknowledged.
    verdicts = [r["verdict"] for r in review.periods]
    assert verdicts == ["on time", "late", "on time", "never received"]
    assert review.periods[1]["days_late"] == 8
    assert f["breaches_resolved"] == 1 and f["most_days_to_resolve"] == 13
    assert f["notices_overdue"] == 1
    assert f["recurring_rules"] == {"type_known": 2, "delivery.late": 2}
    assert f["unagreed_columns"] == {MARKUP_HEADER: 1}

    page = page_path.read_text(encoding="utf-8")
    markdown = md_path.read_text(encoding="utf-8")
    assert (page_path, md_path) == review_paths(home.home, "stop_and_search")
    assert_page_is_safe(page)
    # Markup the force sent (an unagreed header) is shown as text, in both forms.
    assert html.escape(MARKUP_HEADER) in page and MARKUP_HEADER not in page
    assert MARKUP_HEADER not in markdown and r"\<script\>" in markdown
    # Each point links to a section that exists on the page, and says what the figures do.
    anchors = set(re.findall(r'<h2 id="([^"]+)"', page))
    assert {p.anchor for p in review.points} <= anchors
    assert {"deliveries", "breaches", "responses", "open", "over-sharing",
            "personal-data", "volume", "versions"} <= anchors  # fmt: skip
    assert "1 of 4 periods came late (up to 8 days) and 1 never came" in page
    assert "3 of 4 periods were right first time." in page
    assert "type_known failed in 2 periods (2 still open)" in markdown.replace("\\", "")
    assert "1 notice(s) of breach were not acknowledged within the agreed days." in page
    assert (
        "1 breach was resolved, in a median of 13 days from raised (at most 13 days); 0 "
        "within 10 days, the agreed response time." in page
    )
    assert "One version of the contract was in force over the window: 1.0.0" in page
    for point in review.points:
        assert f'{markupsafe.escape(point.text)} <a href="#{point.anchor}">Evidence</a>' in page
    # A server (the desk) gets the same page without writing a file (built from the
    # governance views copied into memory; the page above read the warehouse itself).
    served = agreement_review_html(
        home.warehouse, open_lake(home.lake), contract, today, "2025-09", "2025-12"
    )
    assert served == page


def test_a_second_contract_version_is_shown_with_what_changed(seeded, tmp_path):
    """Versions come from the breaches; what changed, from the contracts folder's history."""
    import subprocess

    home, ids = seeded
    folder = tmp_path / "contracts"
    folder.mkdir()
    source = load_contracts()["stop_and_search"].path
    text = source.read_text()
    older = text.replace("version: 1.0.0", "version: 0.9.0", 1).replace(
        "retention: P6Y", "retention: P7Y", 1
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(folder)]
    subprocess.run([*git, "init", "-q"], check=True)
    (folder / source.name).write_text(older)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "0.9.0"], check=True)
    (folder / source.name).write_text(text)
    subprocess.run([*git, "commit", "-qam", "1.0.0"], check=True)
    contract = load_contracts(folder)["stop_and_search"]

    # September's breaches were checked under 0.9.0.
    lake = open_lake(home.lake)
    september = "governance/breaches/contract=stop_and_search/period=2025-09/*"
    key = next(iter(lake.glob(september)))
    rows = lake.read_table(key).to_pylist()
    lake.write_table(key, pa.Table.from_pylist(
        [{**r, "contract_version": "0.9.0"} for r in rows], BREACH_SCHEMA))  # fmt: skip
    build_warehouse(lake, load_contracts(), home.warehouse)

    review, page_path, _ = write_agreement_review(
        home.warehouse, lake, contract, home.home, dt.date(2026, 2, 2), "2025-09", "2025-12"
    )
    with connect(home.warehouse) as con:
        assert_figures_are_the_warehouses(con, review, contract, curated_written=False)
    assert review.figures["versions"] == ["0.9.0", "1.0.0"]
    assert review.figures["governance_changes"] >= 1
    page = page_path.read_text(encoding="utf-8")
    assert "2 versions were in force over the window: 0.9.0, 1.0.0" in page
    assert "GOVERNANCE: needs a variation of the agreement" in page
    assert "P7Y" in page and "P6Y" in page
    assert any(p.anchor == "versions" and "governance change" in p.text for p in review.points)


def test_agreement_review_command_writes_every_contract(seeded, capsys, tmp_path):
    home, _ = seeded
    assert main(["--home", str(home.home), "agreement", "review"]) == 0
    out = capsys.readouterr().out
    lake = open_lake(home.lake)
    today = datetime.now(UTC).astimezone(LONDON).date()
    # One connection for every contract's review (as the command's one copy serves them);
    # each review still asks the warehouse's views themselves.
    with connect(home.warehouse) as con:
        for name, contract in load_contracts().items():
            page, md = review_paths(home.home, name)
            assert page.exists() and md.exists(), name
            assert str(page) in out
            # Built from the governance views read once for the command: the page the
            # warehouse itself gives.
            direct = render_html(build_review(con, contract, lake, today))
            assert page.read_text(encoding="utf-8") == direct, name
    # An agreement with nothing on record in the window says so, as a point to discuss.
    page = review_paths(home.home, "workforce")[0].read_text(encoding="utf-8")
    assert "Nothing is on record for the window: is the agreement still in use?" in page
    assert main(["--home", str(home.home), "agreement", "review", "nosuch"]) == 2
    assert main(["--home", str(home.home), "agreement", "review", "stop_and_search",
                 "--from", "2025-12", "--to", "2025-09"]) == 2  # fmt: skip
    # A warehouse built before the breach views (an upgraded home) is rebuilt from the lake.
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute("DROP VIEW governance.breach_register")
        con.execute("DROP VIEW governance.breach_history")
    page, _ = review_paths(home.home, "stop_and_search")
    before = page.read_text(encoding="utf-8")
    assert main(["--home", str(home.home), "agreement", "review", "stop_and_search"]) == 0
    assert page.read_text(encoding="utf-8") == before
    # Outside a home it says so, and makes none.
    nowhere = tmp_path / "nowhere"
    assert main(["--home", str(nowhere), "agreement", "review"]) == 2
    assert not nowhere.exists()
    assert "there is no datashare home" in capsys.readouterr().err


# -- the real June 2022 file, with a column nobody agreed, then past its retention ----------


def _process(root: Path, lake, contract: Contract, period: str) -> None:
    register = Register(lake)
    zone = FolderDropZone(root, settle_seconds=0)
    take_deliveries(contract.name, period, zone, lake, register, "t")
    validate_pending(contract, period, lake, register, "t")
    if candidate := awaiting_publication(register, contract.name, period):
        publish_delivery(lake, register, candidate, "t")


def test_real_file_over_sharing_and_retention(home):
    contract = load_contracts()["stop_and_search"]
    secret = "PC-4242-SECRET"
    header, *rows = REAL_STOP_AND_SEARCH.read_text(encoding="utf-8").splitlines()
    text = "\n".join([header + ",Officer collar number", *(r + f",{secret}" for r in rows)])
    target = home.dropzone / "stop_and_search" / "2022-06" / REAL_STOP_AND_SEARCH.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n", encoding="utf-8")
    lake = open_lake(home.lake)
    _process(home.dropzone, lake, contract, "2022-06")
    # The catalog of the one contract the lake holds, as in the Hypothesis test below: the
    # review reads only its rows (the seeded and demo tests build every contract's).
    catalog = {contract.name: contract}
    build_warehouse(lake, catalog, home.warehouse)

    # A month past the end of June 2022's six years: the curated month is past retention.
    today = dt.date(2028, 8, 1)
    review, page_path, md_path = write_agreement_review(
        home.warehouse, lake, contract, home.home, today, "2022-05", "2022-08"
    )
    with connect(home.warehouse) as con:
        assert_figures_are_the_warehouses(con, review, contract)
        ((published,),) = _one(con, "SELECT count(*) FROM curated.stop_and_search")
    assert published > 16_000
    assert_read_once_is_the_same(home.warehouse, lake, contract, review)
    assert review.figures["unagreed_columns"] == {"Officer collar number": 1}
    assert review.figures["files_past_retention"] > 0
    page = page_path.read_text(encoding="utf-8")
    assert secret not in page and secret not in md_path.read_text(encoding="utf-8")
    assert "Officer collar number" in page
    assert "held past retention: erase them before the meeting." in page
    assert_page_is_safe(page)

    # Retention applied: the review says when, what and how many rows, and nothing is left.
    erased = enforce_retention(lake, load_contracts(), True, "lead", today)
    build_warehouse(lake, catalog, home.warehouse)
    review, page_path, _ = write_agreement_review(
        home.warehouse, lake, contract, home.home, today, "2022-05", "2022-08"
    )
    with connect(home.warehouse) as con:
        assert_figures_are_the_warehouses(con, review, contract)
        ((delivered,),) = _one(con, """
            SELECT sum(rows_delivered) FROM governance.deliveries
            WHERE contract = 'stop_and_search' AND period = '2022-06'""")  # fmt: skip
    assert review.figures["erased_files"] == len(erased) > 0
    assert_read_once_is_the_same(home.warehouse, lake, contract, review)
    assert review.figures["files_past_retention"] == 0
    assert review.figures["curated_periods_held"] == 0
    page = page_path.read_text(encoding="utf-8")
    assert f"Checked in the lake on {today:%d %b %Y}: nothing is held past its retention." in page
    assert f"<td>{delivered:,}</td>" in page and f"{len(erased)} files of 1 period erased" in page


# -- properties ------------------------------------------------------------------------------

periods = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(2019, 2030), st.integers(1, 12))


@given(first=periods, last=periods, schedule=st.sampled_from(["monthly", "quarterly"]))
@hypothesis_settings(max_examples=200, deadline=None)
def test_window_is_every_period_of_the_schedule_between_the_two(first, last, schedule):
    contract = load_contracts()["stop_and_search"]
    import dataclasses

    contract = dataclasses.replace(
        contract, schedule=dataclasses.replace(contract.schedule, period=schedule)
    )
    got = window(contract, dt.date(2030, 1, 1), first, last)
    step = MONTHS[schedule]
    index = [int(p[:4]) * 12 + int(p[5:]) - 1 for p in got]
    assert all(b - a == step for a, b in zip(index, index[1:], strict=False))
    assert all(p <= last for p in got)
    start = int(first[:4]) * 12 + int(first[5:]) - 1
    assert not got or start - step < index[0] <= start
    first_of_schedule = int(contract.schedule.first_period[:4]) * 12
    assert all((i - first_of_schedule) % step == 0 for i in index)


@given(text=st.text(min_size=1, max_size=40))
@hypothesis_settings(max_examples=200, deadline=None)
def test_any_text_from_a_delivery_stays_text_in_both_forms(text):
    review = AgreementReview(
        contract="stop_and_search", title="Stop and search", reference="", first="2025-01",
        last="2025-12", today=dt.date(2026, 1, 1), periods=[], figures={},
        sections=[Section("over-sharing", "Over-sharing", [f"a {text} b"],
                          [Table(["Column"], [[text]])])],
    )  # fmt: skip
    page = render_html(review)
    assert str(markupsafe.escape(text)) in page
    body = page.split("<body>", 1)[1]
    # No tag but the page's own: every < in the body starts one of its elements.
    assert set(re.findall(r"<(/?[a-zA-Z0-9]+)", body)) <= {
        "h1", "/h1", "h2", "/h2", "p", "/p", "ol", "/ol", "table", "/table", "thead",
        "/thead", "tbody", "/tbody", "tr", "/tr", "th", "/th", "td", "/td", "body", "/body",
        "html", "/html",
    }  # fmt: skip
    markdown = render_markdown(review)
    for line in markdown.splitlines():
        if line.startswith("|") and "Column" not in line and "---" not in line:
            # A table row: one cell, whatever pipes or markup the text holds.
            assert len(re.findall(r"(?<!\\)\|", line)) == 2
    assert "<" not in markdown.replace('<a id="over-sharing"></a>', "").replace("\\<", "")


# -- the demo ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, shared_demo: Path) -> Path:
    """A demo home (eight months, 300 rows): the module's copy of the session's, since the
    review writes its pages into the home."""
    return copy_home(shared_demo, tmp_path_factory.mktemp("agreement-demo") / "home")


def _read_once(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The warehouse's governance and curated views and tables, each read once into an
    in-memory database under the same names. Each governance view reads the lake's files
    afresh (the breach register about a second on a busy machine), and the figures of ten
    reviews ask them over a hundred times: the same rows, read once."""
    copy = duckdb.connect()
    found = con.execute("""
        SELECT schema_name, view_name FROM duckdb_views()
        WHERE NOT internal AND schema_name IN ('governance', 'curated')
        UNION ALL SELECT schema_name, table_name FROM duckdb_tables()
        WHERE schema_name IN ('governance', 'curated')""").fetchall()  # fmt: skip
    for schema in sorted({s for s, _ in found}):
        copy.execute(f"CREATE SCHEMA {schema}")
    for schema, name in found:
        copy.register("rows", con.sql(f"SELECT * FROM {schema}.{name}").to_arrow_table())
        copy.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM rows")
        copy.unregister("rows")
    return copy


@pytest.mark.slow
def test_demo_reviews_match_the_warehouse(demo_home, capsys, monkeypatch):
    # The reviews the command builds, as it builds them (each the review its pages are
    # written from): building them again here doubled the test's time.
    built: dict[str, AgreementReview] = {}
    read_from: list[tuple[duckdb.DuckDBPyConnection, str]] = []  # kept: ids stay unique

    def kept(con, contract, *args, **kwargs):
        ((database,),) = con.execute("SELECT current_database()").fetchall()
        read_from.append((con, database))
        built[contract.name] = review = build_review(con, contract, *args, **kwargs)
        return review

    monkeypatch.setattr(agreement_page, "build_review", kept)
    assert main(["--home", str(demo_home), "agreement", "review"]) == 0
    contracts = load_contracts()
    assert set(built) == set(contracts)
    # Every review from one in-memory copy of the governance views, read once for the
    # command (it was a warehouse connection per contract, each reading the lake afresh).
    assert len({id(con) for con, _ in read_from}) == 1
    assert {database for _, database in read_from} == {"memory"}
    today = datetime.now(UTC).astimezone(LONDON).date()
    with connect(demo_home / "warehouse.duckdb") as warehouse, _read_once(warehouse) as con:
        for name, contract in contracts.items():
            review = built[name]
            # Over the command's default window, ending with the last period ended today,
            # and checked in the lake for retention.
            assert (review.today, review.last) == (today, window(contract, today)[-1]), name
            assert "files_past_retention" in review.figures or not contract.agreement.get(
                "retention"
            ), name
            assert_figures_are_the_warehouses(con, review, contract)
            page, md = review_paths(demo_home, name)
            text = page.read_text(encoding="utf-8")
            assert_page_is_safe(text)
            # The page written by the command states the same figures.
            f = review.figures
            assert f"Of {f['periods_due']:,} period" in text, name
            assert f"{f['breaches']:,} breach" in text, name
            for point in review.points:
                assert str(markupsafe.escape(point.text)) in text, name
    # The demo's stop and search has a rejected month, and a late one: both shown.
    stop = built["stop_and_search"]
    assert stop.figures["breaches_critical"] >= 1
    assert any("nothing published" in " ".join(r) for r in stop.sections[0].tables[0].rows)


# -- any register: every figure is the warehouse's (Hypothesis) --------------------------------

RULES = [("type_known", "major"), ("file.format", "critical"), ("gender_known", "minor"),
         ("file.unagreed_columns", "major")]  # fmt: skip
month = st.fixed_dictionaries({
    "days_after_end": st.integers(0, 60),  # the 20th of the next month is 19 days after its end
    "outcome": st.sampled_from(["published", "published", "rejected", "held"]),
    "breaches": st.lists(st.tuples(st.sampled_from(RULES), st.lists(
        st.tuples(st.sampled_from(["notified", "acknowledged", "resolved", "waived"]),
                  st.integers(0, 30)), max_size=3)), max_size=3, unique_by=lambda b: b[0]),
})  # fmt: skip


@given(months=st.lists(st.one_of(st.none(), month), min_size=1, max_size=6))
@hypothesis_settings(max_examples=12, deadline=None)
def test_any_register_review_figures_are_the_warehouses(months):
    import tempfile

    from pipelines.lake.store import FolderLake
    from tests.breach_homes import breach, deliver, step

    contract = load_contracts()["stop_and_search"]
    with tempfile.TemporaryDirectory() as folder:
        lake = FolderLake(Path(folder) / "lake")
        periods = [f"2025-{m:02d}" for m in range(1, len(months) + 1)]
        for period, got in zip(periods, months, strict=True):
            if got is None:
                continue
            end = datetime(2025, int(period[5:]) + 1, 1, 9, tzinfo=UTC)
            at = end + dt.timedelta(days=got["days_after_end"])
            delivery = deliver(
                lake, contract.name, period, f"{period}.csv", 100, got["outcome"], at
            )
            for (rule, severity), steps in got["breaches"]:
                raised = at + dt.timedelta(minutes=5)
                detail = f"'{rule}' broken ('x<y>')"
                breach_id = breach(lake, contract.name, period, delivery, rule, severity,
                                   detail, 1, 100, raised_at=raised)  # fmt: skip
                when = raised
                for status, days in steps:
                    when += dt.timedelta(days=days, hours=1)
                    step(lake, breach_id, contract.name, status, when)
        warehouse = Path(folder) / "warehouse.duckdb"
        # The catalog of the one contract the register holds: the review reads only its
        # rows, and each of the other nine contracts' views (empty here) added a second
        # to every example (the seeded and demo tests above build every contract's).
        build_warehouse(lake, {contract.name: contract}, warehouse)
        with connect(warehouse) as con:
            review = build_review(con, contract, lake, dt.date(2025, 12, 1), "2025-01", "2025-06")
            assert_figures_are_the_warehouses(con, review, contract, curated_written=False)
        # The same review from the governance views read once, whatever the register holds.
        assert_read_once_is_the_same(warehouse, lake, contract, review)
        page = render_html(review)
        assert "x<y>" not in page and "<script" not in page
