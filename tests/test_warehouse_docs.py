"""The warehouse explains itself (issue 24): every view and column says what it holds, snapshot
contracts have a `<contract>_latest` view, months are DATEs beside the text periods, and a
warehouse an earlier version built gets all of it when it is rebuilt.

One small demo home (`datashare demo --months 8 --rows 300`, as a user runs it, built once for
the session by tests/conftest.py) is the module's; the tests read its warehouse, or copies of
its lake and home.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from random import Random

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.cli.main import main
from pipelines.demo.synthetic import write_delivery
from pipelines.lake.store import open_lake
from pipelines.warehouse.catalog import (
    MONTH_OF_PERIOD,
    SCHEMAS,
    build_warehouse,
    catalog_shows,
    latest_view,
)
from schemas.contract import load_contracts
from schemas.contract_lint import lint_document
from tests.conftest import copy_home
from tests.previous_version import previous_version_code

ROOT = Path(__file__).resolve().parent.parent
# The last commit before the warehouse explained itself: its build_warehouse is what built
# the warehouses of homes made by the previous version.
PREVIOUS_VERSION = "dd49ab8"


def _datashare(home: Path, *argv: str) -> str:
    """`datashare ARGV...` on `home` (and nothing the environment names besides), through
    the command's own entry point in this process: a `datashare` process of its own cost
    two seconds of imports. Its output."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        for name in [k for k in os.environ if k.startswith(("DATASHARE_", "DAGSTER_"))]:
            patch.delenv(name)
        patch.setenv("DATASHARE_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        patch.setenv("DATASHARE_SETTLE_SECONDS", "0")
        status = main(list(argv))
    assert status == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, shared_demo: Path) -> Path:
    """A demo home: eight months of every contract, 300 rows each, run and reported (the
    module's copy of the session's, tests/conftest.py)."""
    return copy_home(shared_demo, tmp_path_factory.mktemp("docs") / "home")


@pytest.fixture
def con(demo: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(demo / "warehouse.duckdb"), read_only=True) as con:
        yield con


def _objects(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """Every view and table of the warehouse's schemas, with its comment."""
    rows = con.execute(
        """
        SELECT schema_name || '.' || view_name, comment FROM duckdb_views()
        WHERE database_name = current_database() AND schema_name IN ?
        UNION ALL
        SELECT schema_name || '.' || table_name, comment FROM duckdb_tables()
        WHERE database_name = current_database() AND schema_name IN ?
        """,
        [list(SCHEMAS), list(SCHEMAS)],
    ).fetchall()
    return dict(rows)


def _columns(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple[str, str | None]]:
    rows = con.execute(
        """
        SELECT schema_name || '.' || table_name, column_name, data_type, comment
        FROM duckdb_columns() WHERE database_name = current_database() AND schema_name IN ?
        """,
        [list(SCHEMAS)],
    ).fetchall()
    return {(table, column): (kind, comment) for table, column, kind, comment in rows}


@pytest.mark.slow
def test_every_view_and_column_says_what_it_holds(con: duckdb.DuckDBPyConnection) -> None:
    objects = _objects(con)
    columns = _columns(con)
    # Every schema is there, with the views the issue names.
    assert {name.split(".")[0] for name in objects} == set(SCHEMAS)
    for name in (
        "curated.borough_crime_releases",
        "curated.complaints_latest",
        "governance.breach_register",
        "governance.clauses",
        "oversight.complaints_timeliness",
    ):
        assert name in objects
    assert len([n for n in objects if n.startswith("oversight.")]) >= 10
    blank = sorted(name for name, comment in objects.items() if not (comment or "").strip())
    assert blank == [], f"views and tables without a comment: {blank}"
    blank_columns = sorted(f"{t}.{c}" for (t, c), (_, text) in columns.items() if not text)
    assert blank_columns == [], f"columns without a comment: {blank_columns}"
    # No comment is a placeholder: each says something of its own length.
    assert all(len(text or "") >= 15 for _, text in columns.values())


@pytest.mark.slow
def test_months_are_dates_in_curated_and_oversight(con: duckdb.DuckDBPyConnection) -> None:
    columns = _columns(con)
    curated = {t for (t, _) in columns if t.startswith("curated.")}
    oversight = {t for (t, _) in columns if t.startswith("oversight.")}
    # Every curated view keeps the text _period (queries on it keep working) and has the
    # same month as a DATE, the type of every mart's month.
    for table in curated:
        assert columns[(table, "_period")][0] == "VARCHAR"
        assert columns[(table, "_month")][0] == "DATE", table
    # Each mart's time is a DATE: its month (the first day), or for the quarterly survey the
    # quarter's last day; a mart by text period has the month beside it.
    for table in oversight:
        kinds = {c: columns[(t, c)][0] for (t, c) in columns if t == table}
        assert kinds.get("month", kinds.get("date")) == "DATE", table
        if "period" in kinds:
            assert kinds["month"] == "DATE", table
    # _month is _period's month, row for row.
    for table in sorted(curated):
        ((rows, wrong),) = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE strftime(_month, '%Y-%m') <> _period) "
            f"FROM {table}"
        ).fetchall()
        assert wrong == 0, table
    # A curated month joins a mart's month with no cast: stop and search by the mart's months.
    ((joined,),) = con.execute(
        "SELECT count(*) FROM curated.stop_and_search s "
        "JOIN (SELECT DISTINCT month FROM oversight.stop_search_disproportionality) m "
        "ON s._month = m.month"
    ).fetchall()
    ((total,),) = con.execute("SELECT count(*) FROM curated.stop_and_search").fetchall()
    assert joined == total > 0
    # The data-quality mart, by text period, also has the month as a DATE.
    ((bad,),) = con.execute(
        "SELECT count(*) FROM oversight.data_quality WHERE strftime(month, '%Y-%m') <> period"
    ).fetchall()
    assert bad == 0


def _readme_views() -> set[str]:
    """The views the README's table of the warehouse lists."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| view | one row per |") :].split("\n\n")[0]
    return {
        name
        for line in table.splitlines()[2:]
        for name in re.findall(r"`([a-z_]+\.[a-z_<>]+)`", line.split(" | ")[0])
    }


@pytest.mark.slow
def test_the_readme_lists_every_view(con: duckdb.DuckDBPyConnection) -> None:
    listed = _readme_views()
    contracts = load_contracts()
    for name in _objects(con):
        schema, table = name.split(".")
        generic = (
            "curated.<contract>_latest"
            if table.removesuffix("_latest") in contracts and table.endswith("_latest")
            else "curated.<contract>"
            if schema == "curated" and table in contracts
            else name
        )
        assert generic in listed, f"{name} is not in the README's table of views"
    # And the table names nothing the warehouse does not have.
    assert {n for n in listed if "<" not in n} <= set(_objects(con))


def _month_after(period: str, months: int = 1) -> str:
    year, month = map(int, period.split("-"))
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@pytest.mark.slow
def test_complaints_latest_has_one_row_per_allegation(demo: Path, tmp_path: Path) -> None:
    """Complaints re-sent as they change: the latest view keeps each allegation's newest
    snapshot, and counts what an independent GROUP BY counts."""
    lake_dir = tmp_path / "lake"
    shutil.copytree(demo / "lake", lake_dir)
    # A later month re-sends the first month's allegations, finalised since: real snapshots.
    folder = lake_dir / "curated" / "contract=complaints"
    periods = sorted(p.name.removeprefix("period=") for p in folder.iterdir())
    first, later = periods[0], _month_after(periods[-1])
    table = pq.read_table(folder / f"period={first}" / "data.parquet")
    resent = table.set_column(
        table.schema.get_field_index("_period"),
        "_period",
        pa.array([later] * table.num_rows, pa.string()),
    ).set_column(
        table.schema.get_field_index("outcome"),
        "outcome",
        pa.array(["resent snapshot"] * table.num_rows, pa.string()),
    )
    (folder / f"period={later}").mkdir()
    pq.write_table(resent, folder / f"period={later}" / "data.parquet")

    contracts = load_contracts()
    path = build_warehouse(open_lake(lake_dir), contracts, tmp_path / "warehouse.duckdb")
    with duckdb.connect(str(path), read_only=True) as con:
        ((snapshots, allegations),) = con.execute(
            "SELECT count(*), count(DISTINCT (case_reference, allegation_number)) "
            "FROM curated.complaints"
        ).fetchall()
        ((latest, keys),) = con.execute(
            "SELECT count(*), count(DISTINCT (case_reference, allegation_number)) "
            "FROM curated.complaints_latest"
        ).fetchall()
        assert snapshots == allegations + table.num_rows  # the re-sent ones twice
        assert latest == keys == allegations
        # Each allegation's row is from its latest delivered month (an independent query).
        ((stale,),) = con.execute(
            """
            SELECT count(*) FROM curated.complaints_latest l
            JOIN (SELECT case_reference, allegation_number, max(_period) AS newest
                  FROM curated.complaints GROUP BY ALL) n
            USING (case_reference, allegation_number)
            WHERE l._period <> n.newest
            """
        ).fetchall()
        assert stale == 0
        ((resent_rows,),) = con.execute(
            "SELECT count(*) FROM curated.complaints_latest WHERE outcome = 'resent snapshot'"
        ).fetchall()
        assert resent_rows == table.num_rows
        ((comment,),) = con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'complaints_latest'"
        ).fetchall()
        assert "one row per case_reference, allegation_number" in comment
        ((curated_comment,),) = con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'complaints'"
        ).fetchall()
        assert "complaints_latest" in curated_comment


# Any set of snapshots: (case, allegation, month delivered, delivery, row in its file).
_SNAPSHOTS = st.lists(
    st.tuples(
        st.sampled_from(["CO/00001/24", "CO/00002/24", "CO/00003/25"]),
        st.integers(1, 3),
        st.sampled_from(["2024-01", "2024-02", "2024-11", "2025-01"]),
        st.sampled_from(["a" * 64, "b" * 64]),
        st.integers(1, 5),
    ),
    max_size=40,
)


@functools.cache
def _scratch_database() -> duckdb.DuckDBPyConnection:
    """One in-memory database for the examples below: each builds its schema and drops it.
    (A connection of its own per order, 300 opens, was most of the test's time.)"""
    return duckdb.connect()


@contextlib.contextmanager
def _scratch_schema() -> Iterator[duckdb.DuckDBPyConnection]:
    """The scratch database with an empty `curated` schema, dropped with all it holds after."""
    con = _scratch_database()
    con.execute("DROP SCHEMA IF EXISTS curated CASCADE")
    con.execute("CREATE SCHEMA curated")
    try:
        yield con
    finally:
        con.execute("DROP SCHEMA curated CASCADE")


@given(rows=_SNAPSHOTS, seed=st.randoms(use_true_random=False))
@settings(max_examples=150, deadline=None)
def test_the_latest_view_keeps_each_records_newest_snapshot(rows: list, seed: Random) -> None:
    """For any snapshots, in any order: one row per record, from its latest month (of two
    in that month, a fixed one), whatever order the rows are read in; _month is _period's."""
    shuffled = list(rows)
    seed.shuffle(shuffled)
    picks = []
    for order in (rows, shuffled):
        with _scratch_schema() as con:
            con.execute(
                "CREATE TABLE curated.complaints (case_reference VARCHAR, allegation_number "
                "BIGINT, _period VARCHAR, _delivery_id VARCHAR, _source_row BIGINT)"
            )
            if order:
                con.executemany("INSERT INTO curated.complaints VALUES (?, ?, ?, ?, ?)", order)
            con.execute(
                f"CREATE VIEW curated.complaints_m AS SELECT *, {MONTH_OF_PERIOD} "
                "FROM curated.complaints"
            )
            con.execute(
                latest_view(
                    "curated.complaints_latest",
                    "curated.complaints_m",
                    ("case_reference", "allegation_number"),
                    "_period",
                )
            )
            latest = con.execute("SELECT * FROM curated.complaints_latest").fetchall()
        picks.append(sorted(latest))
        newest = {}
        for case, number, period, _, _ in order:
            newest[(case, number)] = max(period, newest.get((case, number), period))
        assert len(latest) == len(newest)
        for case, number, period, _, _, month in latest:
            assert period == newest[(case, number)]
            assert month.strftime("%Y-%m") == period
    assert picks[0] == picks[1]


def _previous_build_warehouse(home: Path, scratch: Path) -> None:
    """The previous version's `build_warehouse` over this home's lake, run from that version's
    own code and contracts (`git archive`) in a process of its own."""
    old = scratch / "previous-version"
    if not old.exists():
        previous_version_code(PREVIOUS_VERSION, old)
    build = (
        "import sys\nfrom pathlib import Path\n"
        "from pipelines.lake import open_lake\n"
        "from pipelines.warehouse import build_warehouse\n"
        "from schemas.contract import load_contracts\n"
        "build_warehouse(open_lake(sys.argv[1]), load_contracts(), Path(sys.argv[2]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", build, str(home / "lake"), str(home / "warehouse.duckdb")],
        cwd=old,
        env={**os.environ, "PYTHONPATH": str(old)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _views(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            f"{s}.{v}"
            for s, v in con.execute(
                "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }


def _undocumented(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [
            f"{t}.{c}"
            for (t, c), (_, text) in _columns(con).items()
            if not text and not t.startswith("governance.catalog")
        ]


def _lake_files(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): p.stat().st_size for p in (home / "lake").rglob("*")}


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper
def test_a_previous_versions_warehouse_gets_the_new_views(demo: Path, tmp_path: Path) -> None:
    """A home whose warehouse the previous version built: `datashare warehouse rebuild`
    gives it the new views; a run that publishes a month rebuilds it by itself."""
    home = tmp_path / "home"
    shutil.copytree(demo, home)
    lake, contracts = open_lake(home / "lake"), load_contracts()
    warehouse = home / "warehouse.duckdb"
    _previous_build_warehouse(home, tmp_path)
    previous_catalog = shutil.copy2(warehouse, tmp_path / "previous-catalog.duckdb")
    lake_then = _lake_files(home)
    assert "curated.complaints_latest" not in _views(warehouse)
    assert _undocumented(warehouse)  # the governance views' columns had no comments
    # Every contract's next publication sees the catalog lacks what it should show.
    assert not any(catalog_shows(warehouse, lake, c) for c in contracts.values())

    _datashare(home, "warehouse", "rebuild")
    assert "curated.complaints_latest" in _views(warehouse)
    assert _undocumented(warehouse) == []

    # Back to the previous version's catalog (the one it built above: the rebuild left the
    # lake as it was, so building it again in a process of the old code would give the same);
    # then a late month arrives and is run.
    assert _lake_files(home) == lake_then
    shutil.copy2(previous_catalog, warehouse)
    assert "curated.complaints_latest" not in _views(warehouse)
    periods = sorted(p.name for p in (home / "dropzone" / "complaints").iterdir())
    late = _month_after(periods[0], -1)
    write_delivery(
        contracts["complaints"],
        late,
        home / "dropzone" / "complaints" / late / f"{late}-metropolitan-complaint-allegations.csv",
        rows=300,
        seed=24,
        defect_rate=0,
    )
    _datashare(home, "run", "--settle", "0")
    assert "curated.complaints_latest" in _views(warehouse)
    assert _undocumented(warehouse) == []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ((published,),) = con.execute(
            "SELECT count(*) FROM curated.complaints WHERE _period = ?", [late]
        ).fetchall()
        ((curated,),) = con.execute(
            "SELECT sum(rows_curated) FROM governance.deliveries "
            "WHERE contract = 'complaints' AND period = ? AND status = 'published'",
            [late],
        ).fetchall()
        ((latest, allegations),) = con.execute(
            "SELECT (SELECT count(*) FROM curated.complaints_latest), "
            "count(DISTINCT (case_reference, allegation_number)) FROM curated.complaints"
        ).fetchall()
    assert published == curated > 0
    assert latest == allegations


# The snapshots term is contract data, linted like the rest. --------------------------------


def _complaints() -> dict:
    return yaml.safe_load((ROOT / "data_contracts" / "complaints.yaml").read_text())


def _with_snapshots(value: object) -> list[str]:
    doc = _complaints()
    table = doc["schema"][0]
    table["customProperties"] = [
        p for p in table["customProperties"] if p["property"] != "snapshots"
    ] + [{"property": "snapshots", "value": value}]
    path = ROOT / "data_contracts" / "complaints.yaml"
    return [f.message for f in lint_document(doc, path) if f.level == "error"]


def test_the_complaints_contract_names_its_snapshots() -> None:
    contract = load_contracts()["complaints"]
    assert contract.snapshots is not None
    assert contract.snapshots.key == ("case_reference", "allegation_number")
    assert contract.snapshots.snapshot_column == "_period"
    assert _with_snapshots({"key": ["case_reference", "allegation_number"]}) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("case_reference", "must be a mapping"),
        ({"key": []}, "must list the columns"),
        ({"key": ["case_refernce"]}, "did you mean case_reference"),
        ({"key": ["case_reference", "case_reference"]}, "names a column twice"),
        ({"key": ["borough"]}, "must be required: true"),
        ({"key": ["case_reference"], "snapshotColumn": "_perod"}, "nor _period"),
        ({"key": ["case_reference"], "snapshotColumn": "case_reference"}, "is in the key"),
        ({"key": ["case_reference"], "orderBy": "_period"}, "unknown field"),
    ],
)
def test_a_wrong_snapshots_term_is_caught(value: object, message: str) -> None:
    errors = _with_snapshots(value)
    assert any(message in e for e in errors), errors
