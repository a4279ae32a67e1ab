"""The breach register and the notice to the force, from the command line."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import main
from tests.breach_homes import seeded_home
from tests.conftest import drop


@pytest.fixture
def real_june(home, real_stop_and_search, capsys):
    drop(home, "stop_and_search", "2022-06", real_stop_and_search)
    assert main(["run"]) == 0
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
    assert "quality[self_defined_ethnicity_completeness]" in markdown
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


@pytest.fixture
def seeded(home):
    return home, seeded_home(home)


def test_list_columns_are_as_wide_as_their_content_when_piped(seeded, capsys):
    assert main(["breaches", "list", "--contract", "stop_and_search"]) == 0
    out = capsys.readouterr().out
    heading = out.splitlines()[0].split()
    assert heading[:6] == ["breach_id", "contract", "period", "severity", "status", "rule"]
    assert "rows failing" in out.splitlines()[0]  # a heading is never cut (was `failing_r`)
    assert "self_defined_ethnicity_completeness " in out  # the rule whole
    assert "the agreement allows at most 25%." in out  # the detail whole, into a pipe
    assert "…" not in out


def test_list_fits_a_terminal_by_cutting_the_detail_only(seeded):
    _, ids = seeded
    from pipelines.breach_register import BreachRegister
    from pipelines.breaches_cli import LIST_COLUMNS, table
    from pipelines.lake import open_lake

    rows = BreachRegister(open_lake(seeded[0].lake)).entries()
    text = table(rows, LIST_COLUMNS, width=150)
    assert max(len(line) for line in text.splitlines()) <= 150
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
    assert [e["status"] for e in resolved["history"]] == ["notified", "resolved"]


@pytest.mark.parametrize(
    "argv",
    [["breaches", "list"], ["breaches", "show", "B-1"], ["report"],
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
