"""The breach register and the notice to the force, from the command line."""

import csv

import duckdb
import pytest

from pipelines.cli import main
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
