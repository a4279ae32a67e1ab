"""What leads read across a month's whole life: re-sends, held-back months, late months.

Registers are written straight into the lake (tests/breach_homes.py), as the pipeline
writes them, including records written before this version (a held delivery's minor
breach with the action "delivery published", a failing share of 1.0 over no rows). Every
count and status a lead reads is checked against a query of the warehouse.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli.main import main
from pipelines.cli.review import review_path
from pipelines.governance.breach_notice import notice_from_warehouse, what_we_did
from pipelines.governance.breach_register import BREACH_EVENT_SCHEMA, BreachRegister
from pipelines.governance.views import clause_table, in_memory
from pipelines.lake.register import (
    BREACH_SCHEMA,
    DELIVERY_EVENT_SCHEMA,
    Breach,
    DeliveryEvent,
    Register,
)
from pipelines.lake.store import open_lake
from pipelines.reviews.breach_review import write_review
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import load_contracts
from schemas.contract_page import clause_for, contract_document, rule_clauses
from tests.breach_homes import breach, deliver, late, today
from tests.conftest import build_template, restore_template

S = "stop_and_search"
U = "use_of_force"
OPEN = "status IN ('open', 'notified', 'acknowledged')"
T0 = datetime(2025, 9, 25, 9, tzinfo=UTC)


@cache
def _clauses() -> pa.Table:
    """Stop and search's clause table, made once for the module's Hypothesis examples (a
    table of the contract alone, 14 ms to make, which each example made again)."""
    return clause_table({S: load_contracts()[S]})


def _event(lake, contract, period, delivery_id, event, at, **fields):
    Register(lake).record(
        DeliveryEvent(contract=contract, period=period, delivery_id=delivery_id, event=event,
                      event_at=at, **fields)
    )  # fmt: skip


def _rebuild(home) -> None:
    build_warehouse(open_lake(home.lake), load_contracts(), home.warehouse)


def _query(home, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def resent(home):
    """August 2025 of stop and search: a file rejected (critical), then re-sent and
    published (with a minor breach). September: published with a breach, then restated
    (the re-send published, the first superseded). Use of force September: held back by a
    critical breach, its minor breach recorded with the action an earlier version wrote
    ("delivery published"). Returns the breach ids by a short name."""
    lake = open_lake(home.lake)
    ids = {}
    aug = "2025-08"
    first = deliver(lake, S, aug, "0-first-attempt.csv", 0, "rejected", at=T0)
    ids["aug_columns"] = breach(
        lake, S, aug, first, "file.columns", "critical",
        "The file lacks 1 agreed column(s): Officer-defined ethnicity.",
        action="delivery rejected", raised_at=T0 + timedelta(minutes=1),
    )  # fmt: skip
    second = deliver(lake, S, aug, "2025-08-stop-and-search.csv", 4_000, at=T0 + timedelta(days=2))
    ids["aug_minor"] = breach(
        lake, S, aug, second, "self_defined_ethnicity_completeness", "minor",
        "1,200 of 4,000 rows (30.0%) have no Self-defined ethnicity.", 1_200, 4_000,
        action="delivery published", raised_at=T0 + timedelta(days=2, minutes=1),
    )  # fmt: skip
    sep = "2025-09"
    at = T0 + timedelta(days=30)
    old = deliver(lake, S, sep, "2025-09-stop-and-search.csv", 4_000, at=at)
    ids["sep_old"] = breach(
        lake, S, sep, old, "type_known", "major", "12 of 4,000 rows (0.3%): Type is not one "
        "of the 3 agreed values.", 12, 4_000, raised_at=at + timedelta(minutes=1),
    )  # fmt: skip
    new = deliver(lake, S, sep, "restated-2025-09.csv", 4_010, at=at + timedelta(days=3))
    _event(lake, S, sep, old, "superseded", at + timedelta(days=3, minutes=3),
           reason=f"Replaced as a whole by delivery {new[:12]}.")  # fmt: skip
    ids["sep_new"] = breach(
        lake, S, sep, new, "type_known", "major", "3 of 4,010 rows (0.1%): Type is not one "
        "of the 3 agreed values.", 3, 4_010, raised_at=at + timedelta(days=3, minutes=1),
    )  # fmt: skip
    held = deliver(lake, U, sep, "2025-09-use-of-force.csv", 5_000, "validated", at=at)
    _event(lake, U, sep, held, "held", at + timedelta(minutes=3), rows_delivered=5_000,
           rows_curated=4_994, rows_quarantined=6, reason="Held back by critical breach(es) "
           "of file.manifest; the previously published month stays in place.")  # fmt: skip
    ids["uof_manifest"] = breach(
        lake, U, sep, held, "file.manifest", "critical", "The manifest says 5,100 rows; the "
        "file has 5,000.", action="delivery held", raised_at=at + timedelta(minutes=1),
    )  # fmt: skip
    ids["uof_minor"] = breach(
        lake, U, sep, held, "borough.required", "minor", "1 of 5,000 rows has no Borough.",
        1, 5_000, action="delivery published", raised_at=at + timedelta(minutes=1),
    )  # fmt: skip
    _rebuild(home)
    return ids


def _notice(home, contract: str, period: str):
    with connect(home.warehouse) as con:
        return notice_from_warehouse(con, load_contracts()[contract], period, today())


def _cli_json(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["breaches", "list", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


# --- item 7: a replaced delivery's breaches close on their own ---------------------------


@pytest.fixture(scope="module")
def resent_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The `resent` home, built once for the module (its register and warehouse cost
    seconds); the template's folder and the breach ids."""
    return build_template(tmp_path_factory, "resent", resent)


@pytest.fixture
def resent_home(resent_template, monkeypatch):
    """The `resent` home, this test's own copy of the module's, and its breach ids."""
    folder, ids = resent_template
    return restore_template(folder, monkeypatch), dict(ids)


def test_a_fixed_month_leaves_every_count_of_open_breaches(resent_home, capsys):
    home, ids = resent_home
    status = dict(_query(home, "SELECT breach_id, status FROM governance.breach_register"))
    assert status[ids["aug_columns"]] == "superseded"  # the rejected file, re-sent
    assert status[ids["sep_old"]] == "superseded"  # the restated month's first delivery
    assert status[ids["aug_minor"]] == status[ids["sep_new"]] == "open"
    assert status[ids["uof_manifest"]] == "open"  # held, nothing re-sent: still to fix

    # The CLI reads the lake through the same views: the same statuses.
    listed = {e["breach_id"]: e["status"] for e in _cli_json(capsys)}
    assert listed == status
    open_ids = {e["breach_id"] for e in _cli_json(capsys, "--status", "open")}
    sql = "SELECT breach_id FROM governance.breach_register WHERE status = 'open'"
    assert open_ids == {b for (b,) in _query(home, sql)}
    assert ids["aug_columns"] not in open_ids

    # The review page: the headline counts are the warehouse's open breaches.
    written = write_review(home, review_path(home), today())
    page = written.page.read_text(encoding="utf-8")
    ((critical,),) = _query(home, "SELECT count(*) FROM governance.breach_register "
                                  f"WHERE {OPEN} AND severity = 'critical'")  # fmt: skip
    assert critical == 1  # the held month; the rejected file was fixed by its re-send
    assert f"<div class=critical><strong>{critical}</strong>critical</div>" in page
    assert written.open_breaches == len(open_ids) == page.count("<tr class=breach ")
    assert "2 more breach(es) closed on their own as superseded" in page

    # The month's notice leaves the fixed breach out.
    notice = _notice(home, S, "2025-08")
    assert notice.breach_ids == [ids["aug_minor"]]
    assert "0-first-attempt.csv" in notice.markdown  # what arrived is still listed
    assert "| rejected, not read |" in notice.markdown


def test_a_superseded_breach_keeps_its_history_and_can_be_reopened(resent_home, capsys):
    home, ids = resent_home
    (entry,) = [e for e in _cli_json(capsys, "--period", "2025-08") if e["rule"] == "file.columns"]
    steps = [(h["step"], h["status"], h["actor"]) for h in entry["history"]]
    assert steps == [("raised", "open", "validation"), ("superseded", "superseded", "pipeline")]
    assert "2025-08-stop-and-search.csv" in entry["history"][1]["note"]
    assert entry["later_delivery_path"] == f"{S}/2025-08/2025-08-stop-and-search.csv"

    capsys.readouterr()
    assert main(["breaches", "show", ids["aug_columns"]]) == 0
    shown = capsys.readouterr().out
    assert "status: superseded" in shown
    assert "open (raised by validation)" in shown and "superseded by pipeline: its delivery" in (
        shown
    )
    # A lead may disagree: the reopen is later than the supersession, so it stands.
    assert main(["breaches", "reopen", ids["aug_columns"], "--by", "lead", "--note", "no"]) == 0
    ((now,),) = _query(home, "SELECT status FROM governance.breach_register WHERE breach_id = ?",
                       [ids["aug_columns"]])  # fmt: skip
    assert now == "open"
    # The audit log names the period of each status change, and a reopen as such.
    log = _query(
        home,
        'SELECT action, by_whom, period FROM governance.audit_log WHERE subject = ? ORDER BY "at"',
        [ids["aug_columns"]],
    )
    assert log == [("breach superseded", "pipeline", "2025-08"), ("breach reopened", "lead",
                                                                   "2025-08")]  # fmt: skip


def test_review_recurrence_never_counts_more_open_periods_than_periods(resent_home):
    home, _ = resent_home
    # September broke type_known in both its deliveries: two breaches, one period; and
    # August's published delivery broke it too.
    ((august,),) = _query(
        home, "SELECT delivery_id FROM governance.deliveries WHERE period = '2025-08' "
        "AND status = 'published'"
    )  # fmt: skip
    breach(open_lake(home.lake), S, "2025-08", august, "type_known", "major", "1 row.", 1, 4_000)
    _rebuild(home)
    written = write_review(home, review_path(home), today())
    page = written.page.read_text(encoding="utf-8")
    table = page.split("id=recurring-rules>")[1].split("</table>")[0]
    rows = table.split("<tr>")[2:]
    assert any("type_known" in row for row in rows)
    for row in rows:
        cells = [c.split("</td>")[0] for c in row.split("<td")[1:]]
        periods, still = (int(cells[i].removeprefix(" class=n>")) for i in (2, 4))
        assert still <= periods
        rule = cells[1].removeprefix(">")
        ((in_warehouse, open_in_warehouse),) = _query(
            home,
            f"SELECT count(DISTINCT period), count(DISTINCT period) FILTER (WHERE {OPEN}) "
            "FROM governance.breach_register WHERE contract = ? AND rule = ?",
            [S, rule],
        )
        assert (periods, still) == (in_warehouse, open_in_warehouse)


# --- item 6: what happened to a held or rejected delivery, whatever the stored action ----


def test_a_held_months_notice_never_says_it_was_published(resent_home, capsys):
    home, ids = resent_home
    notice = _notice(home, U, "2025-09")
    assert set(notice.breach_ids) == {ids["uof_manifest"], ids["uof_minor"]}
    did = [line for line in notice.markdown.splitlines() if "**What we did:**" in line]
    assert len(did) == 2
    assert all("held back; nothing from it was published" in line for line in did)
    assert "delivery was published" not in notice.markdown
    assert "the rest were published" not in notice.markdown
    # The listing says what the warehouse says.
    (minor,) = [e for e in _cli_json(capsys, "--contract", U) if e["rule"] == "borough.required"]
    ((action, recorded, delivery),) = _query(
        home, "SELECT action, action_recorded, delivery_status FROM governance.breach_register "
        "WHERE breach_id = ?", [ids["uof_minor"]]
    )  # fmt: skip
    assert (minor["action"], minor["delivery_status"]) == (action, delivery) == (
        "delivery held", "held")  # fmt: skip
    assert recorded == "delivery published"  # kept, as validation wrote it
    assert minor["what_we_did"].startswith("the delivery was held back; nothing from it")
    capsys.readouterr()
    assert main(["breaches", "list", "--contract", U]) == 0
    listed = capsys.readouterr().out
    assert [line.split()[5] for line in listed.splitlines() if line.startswith("B-")] == [
        "held", "held"
    ]  # fmt: skip
    page = write_review(home, review_path(home), today()).page.read_text(encoding="utf-8")
    row = page.split(ids["uof_minor"])[1].split("</tr>")[0]
    assert "What we did: the delivery was held back; nothing from it was published" in row


def test_a_replaced_delivery_says_it_was_replaced(resent_home, capsys):
    home, ids = resent_home
    entries = {e["breach_id"]: e for e in _cli_json(capsys, "--status", "superseded")}
    assert entries[ids["aug_columns"]]["what_we_did"] == (
        "the file was not read; nothing from it was published. The month was re-sent: "
        f"{S}/2025-08/2025-08-stop-and-search.csv, published on 27 September 2025"
    )
    assert entries[ids["sep_old"]]["what_we_did"].startswith(
        "the failing rows were held back; the rest were published, until the delivery was "
        "replaced; nothing from it is published now. The month was re-sent: "
    )


# --- the late month that came later -------------------------------------------------------


def test_a_late_month_that_came_later_says_so_and_asks_for_the_next_on_time(home):
    lake = open_lake(home.lake)
    late_id = late(lake, S, "2025-10")
    deliver(lake, S, "2025-10", "2025-10-stop-and-search.csv", 3_900,
            at=datetime(2026, 1, 5, 10, tzinfo=UTC))  # fmt: skip
    _rebuild(home)
    notice = _notice(home, S, "2025-10")
    assert notice.breach_ids == [late_id]  # still a breach: it was late
    md = notice.markdown
    assert (
        "**What we did:** the month was recorded as late; its file came later: "
        f"{S}/2025-10/2025-10-stop-and-search.csv, published on 5 January 2026" in md
    )
    assert "**What we ask:** Send each month by its due date." in md
    assert "tell us when it will come" not in md


# --- item 9: figures that mean what they say ----------------------------------------------


def test_deliveries_show_rows_curated_only_for_what_is_published(resent_home):
    home, _ = resent_home
    rows = dict(
        ((c, p, s), (passed, curated))
        for c, p, s, passed, curated in _query(
            home,
            "SELECT contract, period, status, rows_passed, rows_curated FROM governance.deliveries",
        )
    )
    assert rows[(U, "2025-09", "held")] == (4_994, 0)  # validated rows, none published
    assert rows[(S, "2025-09", "superseded")] == (4_000, 0)
    assert rows[(S, "2025-09", "published")] == (4_010, 4_010)
    assert rows[(S, "2025-08", "rejected")] == (0, 0)


def test_no_failing_share_where_no_rows_were_checked(resent_home, capsys):
    home, ids = resent_home
    lake = open_lake(home.lake)
    # A record as an earlier version wrote it: 1.0 of 0 rows.
    key = lake.breaches_path(S, "2025-08", next(
        d for (d,) in _query(home, "SELECT delivery_id FROM governance.breaches WHERE "
                                   "breach_id = ?", [ids["aug_columns"]])))  # fmt: skip
    table = lake.read_table(key)
    share = table.schema.get_field_index("failing_share")
    lake.write_table(key, table.set_column(share, "failing_share", pa.array([1.0], pa.float64())))
    _rebuild(home)
    shares = dict(_query(home, "SELECT breach_id, failing_share FROM governance.breaches "
                               "WHERE rows_checked = 0"))  # fmt: skip
    assert shares and all(v is None for v in shares.values())
    listed = {e["breach_id"]: e["failing_share"] for e in _cli_json(capsys)}
    assert all(listed[b] is None for b in shares)


def test_review_summary_counts_letters_not_files(resent_home):
    home, _ = resent_home
    written = write_review(home, review_path(home), today())
    months = _query(home, f"SELECT DISTINCT contract, period FROM governance.breach_register "
                          f"WHERE {OPEN}")  # fmt: skip
    assert written.letters == len(months) == len(written.notices) // 2
    assert f"{len(months)} notice letter(s) (one per contract-month" in written.text()


# --- item 10: one clause numbering ----------------------------------------------------------


def test_every_export_cites_the_clause_the_notice_cites(resent_home, capsys):
    home, ids = resent_home
    capsys.readouterr()
    assert main(["breaches", "list", "--format", "csv"]) == 0
    rows = {r["breach_id"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    warehouse = dict(
        ((b, (n, t)) for b, n, t in _query(
            home, "SELECT breach_id, clause_number, clause_title FROM governance.breaches"))
    )  # fmt: skip
    assert {b: (r["clause_number"], r["clause_title"]) for b, r in rows.items()} == warehouse
    assert rows[ids["aug_minor"]]["clause_number"] == "8.2.2"
    assert rows[ids["aug_columns"]]["clause_number"] == "7"
    assert rows[ids["aug_columns"]]["clause_location"].endswith(".yaml: (as the pipeline wrote it)")
    notice = _notice(home, S, "2025-08")
    assert "**Clause:** 8.2.2: self_defined_ethnicity_completeness" in notice.markdown
    page = write_review(home, review_path(home), today()).page.read_text(encoding="utf-8")
    row = page.split(ids["aug_minor"])[1].split("</tr>")[0]
    assert "<span class=note>clause 8.2.2</span>" in row
    capsys.readouterr()
    assert main(["breaches", "show", ids["aug_minor"]]) == 0
    assert "clause: 8.2.2 (self_defined_ethnicity_completeness: " in capsys.readouterr().out


# --- every sequence of deliveries of one month ---------------------------------------------

OUTCOMES = st.sampled_from(["rejected", "held", "published", "published-with-breach"])


def _play(lake, outcomes: list[str]) -> dict[str, bool]:
    """Deliveries of one month in the order given, as intake, validation and publishing
    record them; returns each breach id and whether it should be open now."""
    period, expected, standing = "2025-08", {}, []
    for n, outcome in enumerate(outcomes):
        at = T0 + timedelta(hours=n)
        delivery_id = f"{n:064d}"
        _event(lake, S, period, delivery_id, "received", at, source_path=f"{S}/{period}/{n}.csv")
        status = "published" if outcome.startswith("published") else outcome
        if status == "published":
            # Publishing supersedes the month published before and what was held before.
            for earlier in standing:
                _event(lake, S, period, earlier, "superseded", at + timedelta(minutes=4))
            standing = []
        _event(lake, S, period, delivery_id, status, at + timedelta(minutes=3))
        if status in ("published", "held"):
            standing.append(delivery_id)
        if outcome != "published":
            b = breach(lake, S, period, delivery_id, f"rule_{n}", "major", "broken",
                       raised_at=at + timedelta(minutes=1))  # fmt: skip
            expected[b] = n
    # Open while no delivery received after it was published: the re-send replaced it.
    return {
        b: not any(o.startswith("published") for o in outcomes[n + 1 :])
        for b, n in expected.items()
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OUTCOMES, min_size=1, max_size=5))
def test_open_breaches_are_exactly_those_no_published_resend_replaced(outcomes):
    with tempfile.TemporaryDirectory() as folder:
        lake = open_lake(Path(folder))
        expected = _play(lake, outcomes)
        entries = BreachRegister(lake).entries()
        status = {e["breach_id"]: e["status"] for e in entries}
        assert {b for b, s in status.items() if s == "open"} == {
            b for b, is_open in expected.items() if is_open
        }
        assert {b for b, s in status.items() if s == "superseded"} == {
            b for b, is_open in expected.items() if not is_open
        }
        for e in entries:
            # Nothing said about a breach contradicts its delivery's status.
            did = what_we_did(e)
            if e["delivery_status"] in ("held", "rejected", "superseded"):
                assert "nothing from it" in did and "the delivery was published" not in did
            assert (e["status"] == "superseded") == (
                e["later_delivery_id"] is not None and e["delivery_status"] != "published"
            )
        # The month's letter, from the same views: exactly the open breaches, each saying
        # what became of its delivery.
        register, contract = Register(lake), load_contracts()[S]
        events = pa.Table.from_pylist(register.events(), DELIVERY_EVENT_SCHEMA)
        con = in_memory(register.breach_table(), BREACH_EVENT_SCHEMA.empty_table(), events,
                        _clauses())  # fmt: skip
        with con:
            notice = notice_from_warehouse(con, contract, "2025-08", today())
        assert set(notice.breach_ids) == {b for b, is_open in expected.items() if is_open}
        delivery = {e["breach_id"]: e["delivery_status"] for e in entries}
        for item in notice.markdown.split("\n### ")[1:]:
            breach_id = item.split("**Breach reference:** ")[1].split()[0]
            did = item.split("**What we did:** ")[1].splitlines()[0]
            if delivery[breach_id] in ("held", "rejected"):
                assert "nothing from it was published" in did
            else:
                assert delivery[breach_id] == "published" and "nothing from it" not in did


def test_run_summary_counts_open_breaches_as_the_warehouse_does(resent_home):
    from pipelines.orchestration.pending_runs import RunReport

    home, _ = resent_home
    ((open_, critical, superseded),) = _query(
        home,
        f"SELECT count(*) FILTER (WHERE {OPEN}), "
        f"count(*) FILTER (WHERE {OPEN} AND severity = 'critical'), "
        "count(*) FILTER (WHERE status = 'superseded') FROM governance.breach_register",
    )
    summary = RunReport(home, load_contracts()).text()
    assert (
        f"open breaches:      {open_} ({critical} critical); {superseded} superseded by a "
        "published re-send" in summary
    )
    assert (open_, critical, superseded) == (4, 1, 2)


def test_run_summary_says_what_rows_published_counts_for_a_wide_file(home):
    from pipelines.orchestration.pending_runs import RunReport

    published = {"delivery_id": "d", "contract": "borough_crime", "event": "published"}
    report = RunReport(
        home, load_contracts(), runs=[("borough_crime", "August 2025", "r", True, 1)]
    )
    report.events = [published]
    report.current = {"d": {**published, "rows_curated": 1_000}}
    assert (
        "rows published:     1,000 (rows of the files; a wide file's row is one curated row "
        in (report.text())
    )


def test_the_review_page_reads_a_warehouse_built_by_the_previous_version(resent_home):
    home, ids = resent_home
    with duckdb.connect(str(home.warehouse)) as con:  # as the previous version built it
        for view in ("audit_log", "breach_register", "breach_history"):
            con.execute(f"DROP VIEW governance.{view}")
    written = write_review(home, review_path(home), today())
    assert (
        ids["aug_columns"]
        not in written.page.read_text(encoding="utf-8")
        .split("id=open-breaches")[1]
        .split("</table>")[0]
    )
    ((open_,),) = _query(home, f"SELECT count(*) FROM governance.breach_register WHERE {OPEN}")
    assert written.open_breaches == open_


def _stop_and_search_doc() -> dict:
    return contract_document(load_contracts()[S].path)


def _rule_names() -> st.SearchStrategy[str]:
    listed = sorted(rule_clauses(_stop_and_search_doc()))
    known = ["delivery.late", "delivery.restated", "file.format", "dropzone.link", "dataset.mix"]
    return st.one_of(
        st.sampled_from(listed + known),
        st.builds(lambda a, b: a + b, st.sampled_from(["dataset.mix.", "file.", "x_", ""]),
                  st.text("abcdef._%", max_size=8)),
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.lists(_rule_names(), min_size=1, max_size=6, unique=True))
def test_the_warehouse_cites_the_clause_a_notice_cites_for_any_rule(rules):
    """governance.breaches joins governance.clauses; notices call clause_for: the same."""
    made = [Breach(S, "1.0.0", "2025-08", "d", rule, "x", "minor", "", 0, 0, "") for rule in rules]
    records = pa.Table.from_pylist(
        [{**b.__dict__, "breach_id": b.breach_id, "failing_share": None} for b in made],
        BREACH_SCHEMA,
    )
    con = in_memory(
        records,
        BREACH_EVENT_SCHEMA.empty_table(),
        DELIVERY_EVENT_SCHEMA.empty_table(),
        _clauses(),
    )
    with con:
        got = dict(con.execute("SELECT rule, clause_number FROM governance.breaches").fetchall())
    doc = _stop_and_search_doc()
    assert got == {rule: clause_for(doc, rule).number for rule in rules}
