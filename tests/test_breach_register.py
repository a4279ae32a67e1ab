"""The breach register and the notice to the force, from the command line."""

import csv
import html
import io
import json
import re
import shutil
import subprocess
import sys
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from pipelines.cli.main import main
from pipelines.governance.breach_notice import notice_from_warehouse
from pipelines.warehouse.catalog import connect
from schemas.contract import contracts_dir, load_contracts
from schemas.contract_page import render_file
from tests.breach_homes import MARKUP_HEADER, seeded_home, today
from tests.conftest import (
    SharedGreatExpectations,
    build_template,
    drop,
    make_home,
    restore_template,
)


@pytest.fixture(scope="module")
def real_june_home(
    tmp_path_factory: pytest.TempPathFactory,
    real_stop_and_search,
    ge_helper_process: SharedGreatExpectations,
) -> Path:
    """A home where `datashare run` took the real June 2022 file: one whole run for the
    module, never written in (each test takes a copy). The run uses the worker's
    great-expectations helper (tests/conftest.py), not one of its own."""
    patch = pytest.MonkeyPatch()
    try:
        settings = make_home(tmp_path_factory.mktemp("real-june"), patch)
        drop(settings, "stop_and_search", "2022-06", real_stop_and_search)
        with ge_helper_process.installed():
            assert main(["run"]) == 0
    finally:
        patch.undo()
    return settings.home


@pytest.fixture
def real_june(home, real_june_home, capsys):
    """The test's own copy of the module's real June home, as its home."""
    shutil.copytree(real_june_home, home.home, dirs_exist_ok=True)
    capsys.readouterr()
    return home


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.startswith("B-")]


def test_list_filters_and_lifecycle_keeps_history(real_june, capsys):
    assert main(["breaches", "list", "--contract", "stop_and_search", "--status", "open"]) == 0
    out = capsys.readouterr().out
    (breach_id,) = _ids(out)
    assert "self_defined_ethnicity_complete" in out and "1 breach(es)" in out

    assert main(["breaches", "list", "--severity", "critical"]) == 0
    assert "No breaches match." in capsys.readouterr().out

    assert main(["breaches", "notify", breach_id[:8], "--by", "lead", "--note", "letter"]) == 0
    assert main(["breaches", "resolve", breach_id, "--by", "lead"]) == 0
    capsys.readouterr()
    # A resolved breach cannot be acknowledged; a waiver needs a reason.
    assert main(["breaches", "ack", breach_id]) == 1
    assert "cannot be moved to acknowledged" in capsys.readouterr().out
    assert main(["breaches", "reopen", breach_id]) == 1
    assert "--note" in capsys.readouterr().out

    assert main(["breaches", "show", breach_id]) == 0
    shown = capsys.readouterr().out
    assert "status: resolved" in shown
    assert "notified by lead: letter" in shown and "resolved by lead" in shown
    assert main(["breaches", "list", "--status", "open"]) == 0
    assert "No breaches match." in capsys.readouterr().out
    (status,) = (
        duckdb.connect(str(real_june.warehouse), read_only=True)
        .execute("SELECT status FROM governance.breach_register")
        .fetchone()
    )
    assert status == "resolved"


def test_notice_for_the_real_june_file_is_ready_to_send(
    real_june, real_stop_and_search, tmp_path, capsys, stop_and_search
):
    out_dir = tmp_path / "notices"
    args = ["--contract", "stop_and_search", "--period", "2022-06", "--output-dir", str(out_dir)]
    assert main(["breaches", "notice", *args]) == 0
    markdown = (out_dir / "notice-stop_and_search-2022-06.md").read_text()
    html = (out_dir / "notice-stop_and_search-2022-06.html").read_text()
    assert "MPS Stop and Search Data Team" in markdown  # addressed to the provider
    assert "2022-06-metropolitan-stop-and-search.csv" in markdown
    assert "16,332" in markdown
    assert "4,963 of 16,332 rows (30.4%) have no Self-defined ethnicity" in markdown
    assert "8.2.2: self_defined_ethnicity_completeness" in markdown  # the page's clause
    assert "yaml" not in markdown and "quality[" not in markdown  # not a path in a file
    assert "<h1>" in html and "30.4%" in html

    # Never the raw values of classified fields.
    classified = {stop_and_search.column(n).source_name for n in stop_and_search.classified}
    with open(real_stop_and_search, newline="", encoding="utf-8") as fh:
        values = {r[c] for r in csv.DictReader(fh) for c in classified if len(r[c]) >= 5}
    leaked = [v for v in values if v in markdown or v in html]
    assert leaked == []


def test_notice_for_a_period_with_nothing_delivered_says_so(real_june, capsys):
    assert main(["breaches", "notice", "--contract", "stop_and_search", "--period", "2022-07"]) == 1
    assert "nothing was delivered" in capsys.readouterr().out


# --- the listing as leads use it (a register written straight into the lake: no run) ------


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """tests/breach_homes.py's seeded home, built once for the module (a third of a second
    a test); the template's folder and the breach ids."""
    return build_template(tmp_path_factory, "seeded", seeded_home)


@pytest.fixture
def seeded(seeded_template, monkeypatch):
    """The seeded home, this test's own copy of the module's, and its breach ids."""
    folder, ids = seeded_template
    return restore_template(folder, monkeypatch), dict(ids)


def test_list_columns_are_as_wide_as_their_content_when_piped(seeded, capsys):
    assert main(["breaches", "list", "--contract", "stop_and_search"]) == 0
    out = capsys.readouterr().out
    heading = out.splitlines()[0].split()
    assert heading[:8] == [
        "breach_id", "contract", "period", "severity", "status", "delivery", "clause", "rule"
    ]  # fmt: skip
    assert "rows failing" in out.splitlines()[0]  # a heading is never cut (was `failing_r`)
    assert "self_defined_ethnicity_completeness " in out  # the rule whole
    assert "the agreement allows at most 25%." in out  # the detail whole, into a pipe
    assert "…" not in out


def test_list_fits_a_terminal_by_cutting_the_detail_only(seeded):
    _, ids = seeded
    from pipelines.cli.breaches import LIST_COLUMNS, table
    from pipelines.governance.breach_register import BreachRegister
    from pipelines.lake.store import open_lake

    rows = BreachRegister(open_lake(seeded[0].lake)).entries()
    text = table(rows, LIST_COLUMNS, width=170)
    assert max(len(line) for line in text.splitlines()) <= 170
    assert all(i in text for i in ids.values())  # ids whole
    assert "self_defined_ethnicity_completeness" in text and "…" in text


def test_list_as_csv_and_json_carries_every_field(seeded, capsys):
    home, ids = seeded
    assert main(["breaches", "list", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["breach_id"] for r in rows} == set(ids.values())
    sep = next(r for r in rows if r["breach_id"] == ids["sep_type"])
    assert sep["sample_rows"] == "4 18 77" and sep["status"] == "notified"
    assert sep["raised_at"].startswith("2025-10-21T09:00:00")

    assert main(["breaches", "list", "--format", "json", "--status", "resolved"]) == 0
    (resolved,) = json.loads(capsys.readouterr().out)
    assert resolved["breach_id"] == ids["sep_ethnicity"]
    # The history `breaches show` prints, the raising first.
    assert [e["status"] for e in resolved["history"]] == ["open", "notified", "resolved"]
    assert resolved["history"][0]["actor"] == "validation"


@pytest.mark.parametrize(
    "argv",
    [["breaches", "list"], ["breaches", "show", "B-1"], ["report"], ["review"],
     ["warehouse", "rebuild"], ["retention"]],
    ids=lambda a: " ".join(a),
)  # fmt: skip
def test_a_command_that_reads_a_home_says_there_is_none(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATASHARE_HOME", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"there is no datashare home at {tmp_path / '.datashare'}" in err
    assert "--home" in err
    assert not (tmp_path / ".datashare").exists()  # and none was made


@pytest.mark.parametrize(
    "argv", [["breaches", "list"], ["contracts", "show", "stop_and_search"]], ids=" ".join
)
def test_a_reader_that_leaves_early_gets_no_traceback(seeded, argv):
    home, _ = seeded
    # The pipe's reading end is closed before anything is written: every write fails.
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("datashare")), "--home", str(home.home), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


def contracts_page(name: str) -> str:
    return render_file(contracts_dir() / f"{name}.yaml")


# --- notices from the seeded register ------------------------------------------------------


def _notice(home, period: str, contract: str = "stop_and_search"):
    with connect(home.warehouse) as con:
        return notice_from_warehouse(con, load_contracts()[contract], period, today())


def test_notice_has_every_open_breach_of_the_month_late_included(seeded):
    home, ids = seeded
    notice = _notice(home, "2025-10")
    md = notice.markdown
    assert notice.breach_ids == [ids["oct_type"], ids["oct_late"]]
    assert md.startswith("# Stop and search: notice of breaches for October 2025\n")
    assert "## What must be fixed (2 items)" in md
    assert "### 1. Type is one of the published search types (major)" in md
    assert "### 2. Late delivery (major)" in md
    # Clauses as the agreement page numbers them, never a path in a YAML file.
    assert "**Clause:** 8.1.2: type\\_known" not in md  # underscores stay readable
    assert "**Clause:** 8.1.2: type_known: Type is one of the published search types." in md
    assert "**Clause:** 6.1: Schedule" in md and "yaml" not in md and "schema[" not in md
    page = contracts_page("stop_and_search")
    assert "| 8.1.2 | type_known |" in page and "### 6.1 Schedule" in page
    # Dates in words, the reply-by date from the agreement's noticeResponseDays (10).
    assert "**Date of this notice:** 12 January 2026" in md
    assert "**Reply by:** 22 January 2026 (10 days, clause 6.3)" in md
    assert notice.reply_by == date(2026, 1, 22)
    assert "Please acknowledge this notice by 22 January 2026" in md
    assert "| stop\\_and\\_search" not in md
    assert "| stop_and_search/2025-10/2025-10-stop-and-search.csv | 28 November 2025, 10:00 |" in md
    assert "**Seen before:** in 1 earlier period (September 2025)" in md
    assert "**Row numbers in the file:** 9 and 6 more" in md
    assert "The agreed layout (clause 7): 15 columns, headed Type, Date," in md


def test_notice_for_a_month_never_delivered(seeded):
    home, ids = seeded
    notice = _notice(home, "2025-12")
    assert notice.breach_ids == [ids["dec_late"]]
    assert "Nothing was delivered for December 2025." in notice.markdown
    assert "**Rows affected:** the whole month (no file arrived)" in notice.markdown
    assert "No delivery for December 2025 had arrived by 25 January 2026." in notice.markdown


def test_notice_leaves_out_what_is_resolved_and_says_what_was_sent(seeded):
    home, ids = seeded
    notice = _notice(home, "2025-09")
    assert notice.breach_ids == [ids["sep_type"]]  # the completeness breach was resolved
    assert "**Status:** notified on 22 October 2025" in notice.markdown
    assert "**Seen before:** not before: this is the first period with this breach" in (
        notice.markdown
    )


def test_notice_cli_writes_a_month_with_no_delivery(seeded, tmp_path, capsys):
    home, ids = seeded
    args = ["--contract", "stop_and_search", "--period", "2025-12", "--output-dir", str(tmp_path)]
    assert main(["breaches", "notice", *args]) == 0
    out = capsys.readouterr().out
    assert f"datashare breaches notify {ids['dec_late']}" in out
    assert (tmp_path / "notice-stop_and_search-2025-12.html").exists()
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        (what,) = con.execute(
            "SELECT what FROM governance.exports WHERE period = '2025-12'"
        ).fetchone()
    assert what == "notice notice-stop_and_search-2025-12.md (1 breach(es))"


def test_markup_from_a_delivery_is_text_in_both_renderings(seeded):
    home, _ = seeded
    notice = _notice(home, "2025-11")
    assert MARKUP_HEADER not in notice.html and "<b>bold" not in notice.html
    assert html.escape(MARKUP_HEADER) in notice.html
    assert "&lt;b&gt;bold&lt;/b&gt;" in notice.html
    assert "\\<script\\>" in notice.markdown and "\\<b\\>bold" in notice.markdown


def _markdown_blocks(text: str) -> list[str]:
    blocks = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("|---"):
            continue
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip("|"))
        else:
            cells = [re.sub(r"^(#+|-)\s+", "", line)]
        for cell in cells:
            cell = re.sub(r"\\(.)", r"\1", cell.replace("**", ""))
            blocks.append(" ".join(cell.split()))
    return blocks


class _HtmlBlocks(HTMLParser):
    BLOCKS = {"h1", "h2", "h3", "p", "li", "th", "td"}

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[str] = []
        self.depth = 0
        self.text = ""

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.depth += 1
            self.text = ""

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.depth -= 1
            self.blocks.append(" ".join(self.text.split()))

    def handle_data(self, data):
        if self.depth:
            self.text += data


@pytest.mark.parametrize("period", ["2025-09", "2025-10", "2025-11", "2025-12"])
def test_markdown_and_html_say_the_same(seeded, period):
    home, _ = seeded
    notice = _notice(home, period)
    parser = _HtmlBlocks()
    parser.feed(notice.html)
    # Every fact, heading and cell of one is in the other, in the same order.
    assert parser.blocks == _markdown_blocks(notice.markdown)
    assert len(parser.blocks) > 20
