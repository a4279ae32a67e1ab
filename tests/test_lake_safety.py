"""Storage analysts can trust: kills, open connections, rebuilds, retention, the audit log."""

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.cli.main import main
from pipelines.demo.synthetic import write_delivery
from pipelines.lake.retention import enforce_retention, expiry
from pipelines.lake.store import FolderLake
from schemas.contract import load_contracts
from tests.conftest import SharedGreatExpectations, build_template, drop, restore_template
from tests.forked_runs import Forked, Forker

# Each runs the whole pipeline: `pytest -m 'not slow'` leaves them out. The runs in this
# process use the worker's great-expectations helper (conftest's ge_helper: about 5 s of
# CPU a run saved); the killed `datashare run` processes start their own, as a user's do.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ge_helper")]


def _count(settings, sql: str):
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


# The killed runs' processes: each is `datashare run` as its script runs it (the command
# line, the home in its environment, a session of its own that the kill takes whole, its own
# great-expectations helper), forked from one process that imported what a run imports
# (tests/forked_runs.py) instead of a new interpreter importing it again for each kill (1.5
# to 2 s of CPU each).
@pytest.fixture(scope="module")
def _forker() -> Iterator[Forker]:
    forker = Forker()
    try:
        yield forker
    finally:
        forker.close()


def _datashare(forker: Forker, home, *args: str) -> Forked:
    env = {**os.environ, "DATASHARE_HOME": str(home.home), "DAGSTER_HOME": str(home.dagster_home)}
    out = home.home.with_name(f"{home.home.name}-run.out")  # beside the home, not in it
    return forker.start("pipelines.cli.main:program", list(args), env, out)


# Each test's whole-pipeline first run is the same, and costs seconds: made once for the
# module (conftest's build_template) and put back for each test at the very path it was made
# at (the warehouse's views name the lake by its path). Every test starts from it, the kill
# tests too (they once had a synthetic January 2024 of their own, a whole run more).
@pytest.fixture(scope="module")
def _june_template(
    tmp_path_factory, real_stop_and_search, ge_helper_process: SharedGreatExpectations
) -> Path:
    def make(home):
        drop(home, "stop_and_search", "2022-06", real_stop_and_search)
        with ge_helper_process.installed():
            assert main(["run"]) == 0

    return build_template(tmp_path_factory, "june", make)[0]


@pytest.fixture
def june_published(_june_template, monkeypatch):
    """A home whose real June 2022 file `datashare run` has published."""
    return restore_template(_june_template, monkeypatch)


# July's rows: enough that each phase below lasts long enough to be seen by a poll every 5
# ms (the shortest, staging's file being written), and that the month is two validation
# batches (`row_validation.BATCH_BYTES`, 16 MB: 100,000 rows are ~21 MB), so that a kill
# while staging can find one batch staged and the next not yet read; no more: the killed
# run and the next one each read them all. A killed run left to finish cost 9.1 s of CPU
# at 150,000 rows (its great-expectations helper included), 7.9 s at 50,000 (one batch).
JULY_ROWS = 100_000


@pytest.fixture(scope="module")
def _july_delivery(tmp_path_factory, stop_and_search) -> Path:
    """July 2022's JULY_ROWS synthetic rows (the month after the real June), written once for
    the module: each kill test drops the same bytes (the same seed), and writing them costs
    seconds, a copy a blink."""
    path = tmp_path_factory.mktemp("july") / "d.csv"
    write_delivery(stop_and_search, "2022-07", path, rows=JULY_ROWS, seed=2, defect_rate=0.001)
    return path


# Where July's files are while `datashare run` takes it, in the order they appear (a run
# at load 16, polled every 5 ms: landed at 21.3 s; staging's temporary file written from
# 22.2 s to 24.1 s; staged whole at 24.1 s; curated at 27.4 s; the run ended at 34.9 s,
# after the catalog and marts; 150,000 rows once gave each phase two to three times as long
# at a lower load, and cost more than a second of CPU more in each run). Each case
# kills the run the moment its phase is seen, not after a fixed time: a sleep that outlasts
# a run that got faster would kill nothing and pass without testing anything. The window
# between the curated swap and its "published" event (tens of milliseconds) is too short
# to hit reliably, so the last case kills at the swap and the event may or may not be
# written: both must end whole.
JULY = ("contract=stop_and_search", "period=2022-07")


def _files(folder: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(folder) if e.is_file()]
    except FileNotFoundError:
        return []


def _landed(lake: Path) -> bool:
    """July's delivery is in the landing area, and no rows of it are staged yet."""
    landing = lake / "landing" / Path(*JULY)
    return any(not e.name.startswith(".") for e in _files(landing)) and not _staged(lake)


def _staging(lake: Path) -> bool:
    """The row engine is writing July's staged rows: its temporary file has bytes in it."""
    written = (e for e in _files(lake / "staging" / Path(*JULY)) if e.name.startswith("."))
    return any(e.stat().st_size > 0 for e in written)


def _staged(lake: Path) -> bool:
    """July's rows are staged whole (validated, awaiting publication), not yet curated."""
    staged = [e for e in _files(lake / "staging" / Path(*JULY)) if not e.name.startswith(".")]
    return bool(staged) and not _curated(lake)


def _curated(lake: Path) -> bool:
    """July's staged file has been swapped in as the curated month."""
    return (lake / "curated" / Path(*JULY) / "data.parquet").exists()


def _kill_when(process: Forked, lake: Path, phase) -> bool:
    """Kill `process`'s group the moment `phase(lake)` holds; False if the run ended first
    (or never showed the phase within five minutes)."""
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        try:
            seen = phase(lake)
        except FileNotFoundError:  # a temporary file renamed between listing and stat
            seen = False
        if seen:
            os.killpg(process.pid, signal.SIGKILL)
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("phase", [_landed, _staging, _staged, _curated], ids=lambda f: f.__name__)
def test_a_killed_run_leaves_a_consistent_state_and_the_next_run_finishes(
    june_published, _july_delivery, _forker, phase, capsys
):
    # Last month (the real June 2022) is published; this month's delivery is in flight when
    # the process dies.
    home = june_published
    drop(home, "stop_and_search", "2022-07", _july_delivery)

    process = _datashare(_forker, home, "run")
    try:
        seen = _kill_when(process, home.lake, phase)
    finally:  # the forker serves the next case only once this run is reaped
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # The phase was seen and the kill is what ended the run (a run that finished before
    # the phase was seen, or before the kill, fails here instead of passing vacuously).
    assert seen, f"the run ended before {phase.__name__[1:]} was seen"
    assert process.returncode == -signal.SIGKILL

    # Whatever the moment of the kill: the catalog opens, June is whole, July is absent or
    # whole, never half.
    months = dict(_count(home, "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1"))
    assert months["2022-06"] + _quarantined(home, "2022-06") == 16_332
    assert months.get("2022-07", 0) in (0, JULY_ROWS - _quarantined(home, "2022-07"))

    assert main(["run"]) == 0
    months = dict(_count(home, "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1"))
    assert months["2022-07"] + _quarantined(home, "2022-07") == JULY_ROWS
    (statuses,) = _count(home, "SELECT list(status ORDER BY period) FROM governance.deliveries")
    assert statuses[0] == ["published", "published"]


def _quarantined(home, period: str) -> int:
    quarantine = home.lake / "quarantine" / "contract=stop_and_search" / f"period={period}"
    files = list(quarantine.glob("*.parquet")) if quarantine.exists() else []
    if not files:
        return 0
    names = ", ".join(f"'{f}'" for f in files)
    return duckdb.sql(f"SELECT count(*) FROM read_parquet([{names}])").fetchall()[0][0]


def test_an_analyst_connection_open_across_a_run_never_blocks_it(
    june_published, real_stop_and_search, stop_and_search, tmp_path
):
    home = june_published  # June 2022 run and published
    analyst = duckdb.connect(str(home.warehouse), read_only=True)
    assert analyst.execute("SELECT count(*) FROM curated.stop_and_search").fetchone() == (16_332,)

    restated = tmp_path / "restated.csv"
    lines = real_stop_and_search.read_text(encoding="utf-8").splitlines(keepends=True)
    restated.write_text("".join(lines[:1001]), encoding="utf-8")
    drop(home, "stop_and_search", "2022-06", restated)
    assert main(["run"]) == 0  # the open connection does not make the run fail

    # The analyst's session still answers; a new connection sees the restated month.
    analyst.execute("SELECT count(*) FROM governance.deliveries").fetchall()
    analyst.close()
    assert _count(home, "SELECT count(*) FROM curated.stop_and_search") == [(1_000,)]


def test_warehouse_is_rebuilt_from_the_lake_alone(june_published, capsys):
    home = june_published  # June 2022 run and published
    home.warehouse.unlink()
    assert main(["warehouse", "rebuild"]) == 0
    assert _count(home, "SELECT count(*) FROM curated.stop_and_search") == [(16_332,)]
    comments = _count(
        home,
        "SELECT comment FROM duckdb_columns() "
        "WHERE table_name = 'stop_and_search' AND column_name = 'officer_defined_ethnicity'",
    )
    assert "as the officer perceived it" in comments[0][0]


def test_retention_lists_then_erases_and_records(june_published, capsys):
    home = june_published  # June 2022 run and published
    contracts = load_contracts()
    assert expiry("2022-06", "P6Y") == date(2028, 7, 1)
    lake = FolderLake(home.lake)
    assert enforce_retention(lake, contracts, apply=False, by="t", today=date(2028, 6, 30)) == []
    due = enforce_retention(lake, contracts, apply=False, by="t", today=date(2028, 7, 1))
    assert {e.area for e in due} >= {"landing", "curated"}
    assert (home.lake / due[0].path).exists()  # a dry run erases nothing

    erased = enforce_retention(lake, contracts, apply=True, by="dpo", today=date(2028, 7, 1))
    assert all(not (home.lake / e.path).exists() for e in erased)
    assert main(["warehouse", "rebuild"]) == 0
    assert _count(home, "SELECT count(*) FROM curated.stop_and_search") == [(0,)]
    rows = _count(home, "SELECT area, erased_by, clause FROM governance.erasures")
    assert len(rows) == len(erased) and rows[0][1] == "dpo" and "P6Y" in rows[0][2]
    # The record of what was delivered survives the data.
    assert _count(home, "SELECT count(*) FROM governance.deliveries") == [(1,)]


def test_audit_log_has_collection_publication_breach_changes_and_exports(june_published, capsys):
    home = june_published  # June 2022 run and published
    (breach_id,) = _count(home, "SELECT breach_id FROM governance.breaches")[0]
    assert main(["breaches", "notify", breach_id, "--by", "lead", "--note", "monthly letter"]) == 0
    args = ["--contract", "stop_and_search", "--period", "2022-06"]
    assert main(["breaches", "notice", *args]) == 0
    actions = dict(_count(home, "SELECT action, by_whom FROM governance.audit_log"))
    assert actions["collection"].startswith("run ")
    assert actions["publication"].startswith("run ")
    assert actions["breach notified"] == "lead"
    assert "export" in actions
