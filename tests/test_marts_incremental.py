"""The marts recomputed for the months a run changed (issue 21) hold exactly what a full
recompute would, over any sequence of deliveries: new months, gaps, months restated with
other rows, months erased, ethnicity values no mapping knows (a new group shown in every
month). The stop-and-search marts are recomputed by 12-month window, data_quality by
contract and period (street crime's months beside stop and search's), and each
computation's provenance record, which then reads only the changed periods, is what
reading every period gives. The rows are the real files' (June 2022 stop and search, the
Met's January 2023 street crime), checked by their contracts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.lake.provenance import mart_source_rows
from pipelines.lake.store import FolderLake, Lake, S3Lake, open_lake
from pipelines.oversight.mart_runner import (
    COMPUTED_FROM,
    MARTS,
    compute_mart,
    mart_metadata,
    warehouse_connection,
    write_mart,
    write_marts,
)
from pipelines.validation.row_validation import validate_delivery
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts
from tests.conftest import REAL_DATA, REAL_STOP_AND_SEARCH
from tests.s3_server import LAKE_BUCKET

CONTRACTS = load_contracts()
INCREMENTAL = [name for name, mart in MARTS.items() if mart.incremental]
# The marts recomputed by month window (the others, by period, have no month column).
BY_MONTH = [name for name in INCREMENTAL if not MARTS[name].incremental.by_period]
REAL_STREET_CRIME = REAL_DATA / "street_crime" / "2023-01-metropolitan-street-burglary-only.csv"
# A month always published, long before the others: the curated view always has a file.
ANCHOR = "2019-01"


@pytest.fixture(scope="module")
def real_rows(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """The real June 2022 file's curated rows, as the contract's checks leave them."""
    lake = FolderLake(tmp_path_factory.mktemp("real") / "lake")
    contract = CONTRACTS["stop_and_search"]
    outcome = validate_delivery(contract, REAL_STOP_AND_SEARCH, "2022-06", "real", lake)
    assert outcome.rows_quarantined == 0
    return lake.read_table(lake.staging_path("stop_and_search", "2022-06", "real"))


@pytest.fixture(scope="module")
def street_rows(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """The Met's real January 2023 street crime file's curated rows."""
    lake = FolderLake(tmp_path_factory.mktemp("street") / "lake")
    contract = CONTRACTS["street_crime"]
    outcome = validate_delivery(contract, REAL_STREET_CRIME, "2023-01", "real", lake)
    assert outcome.rows_curated > 0
    return lake.read_table(lake.staging_path("street_crime", "2023-01", "real"))


def publish_street(lake: Lake, pool: pa.Table, period: str, first: int, n: int, tag: str):
    """Publish `n` real street crime rows as the whole of `period`, as delivery `tag`."""
    rows = pool.slice(first % max(pool.num_rows - n, 1), n)
    for column, value in (("_period", period), ("_delivery_id", tag)):
        rows = rows.set_column(
            rows.schema.get_field_index(column), column, pa.array([value] * rows.num_rows)
        )
    lake.write_table(lake.curated_path("street_crime", period), rows)


def month_of(index: int) -> str:
    """Month `index` of the months deliveries are drawn from (2023-01 on)."""
    return f"{2023 + index // 12}-{index % 12 + 1:02d}"


def publish(lake: Lake, pool: pa.Table, period: str, first: int, n: int, tag: str, odd: bool):
    """Publish `n` real rows (from row `first` of `pool`) as the whole of `period`: dated in
    that month, as delivery `tag`; `odd`: some officer-defined values no mapping knows."""
    rows = pool.slice(first % (pool.num_rows - n), n)
    year, month = (int(x) for x in period.split("-"))
    # Noon UTC on days 1-28: the same month in London.
    dates = [dt.datetime(year, month, 1 + i % 28, 12, tzinfo=dt.UTC) for i in range(n)]
    rows = rows.set_column(
        rows.schema.get_field_index("date"), "date", pa.array(dates, rows.schema.field("date").type)
    )
    if odd:
        officer = rows.schema.get_field_index("officer_defined_ethnicity")
        values = [
            "Martian" if i % 3 == 0 else v for i, v in enumerate(rows.column(officer).to_pylist())
        ]
        rows = rows.set_column(officer, "officer_defined_ethnicity", pa.array(values, pa.string()))
    rows = rows.set_column(
        rows.schema.get_field_index("_period"), "_period", pa.array([period] * n, pa.string())
    )
    rows = rows.set_column(
        rows.schema.get_field_index("_delivery_id"),
        "_delivery_id",
        pa.array([tag] * n, pa.string()),
    )
    lake.write_table(lake.curated_path("stop_and_search", period), rows)


def erase(lake: FolderLake, period: str, contract: str = "stop_and_search") -> None:
    """Retention's erasure of a month: its curated partition deleted."""
    shutil.rmtree(lake.path(lake.curated_path(contract, period)).parent, ignore_errors=True)


def assert_same_as_full(lake: Lake, warehouse: Path, names: list[str] = BY_MONTH) -> None:
    """Each incremental mart's file holds the full recompute's rows, in its order, and its
    latest provenance record the rows reading every period gives."""
    with warehouse_connection(warehouse, CONTRACTS) as con:
        _same_as_full(lake, con, names)


def write_and_check(lake: Lake, warehouse: Path, names: list[str]) -> None:
    """The marts written as a run writes them (`write_marts`: one connection, the register
    read once, the lake's kept record files for which deliveries each month holds), then
    held to `assert_same_as_full` over the same connection."""
    with warehouse_connection(warehouse, CONTRACTS, records_once=True, lake=lake) as con:
        for name in names:
            write_mart(name, con, lake, CONTRACTS)
        _same_as_full(lake, con, names)


def _same_as_full(lake: Lake, con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    # Each contract's rows of every period, read once for the marts reading it (stop and
    # search is read by all three): the same query, over the same unchanged connection.
    every_period: dict[tuple, list[dict]] = {}
    for name in names:
        full = compute_mart(name, con, lake, CONTRACTS)
        kept = lake.read_table(f"oversight/{name}/data.parquet")
        assert COMPUTED_FROM in kept.schema.metadata
        assert kept.replace_schema_metadata(None).equals(full), name
        recorded = json.loads(kept.schema.metadata[COMPUTED_FROM])["sources_key"]
        sources = {c: CONTRACTS[c].version for c in MARTS[name].source_contracts(CONTRACTS)}
        record = lake.read_table(recorded).drop_columns(["computation_id", "computed_at", "mart"])
        assert record.to_pylist() == mart_source_rows(con, sources, every_period), name


def home(folder: Path, pool: pa.Table, street: pa.Table | None = None) -> tuple[FolderLake, Path]:
    """A lake with an early month of stop and search (and of street crime, if given), so
    that each curated view reads files, and its warehouse."""
    lake = FolderLake(folder / "lake")
    publish(lake, pool, ANCHOR, 0, 30, "anchor", False)
    if street is not None:
        publish_street(lake, street, ANCHOR, 0, 30, "street-anchor")
    return lake, build_warehouse(lake, CONTRACTS, folder / "warehouse.duckdb")


@pytest.fixture(scope="module")
def template_home(
    real_rows: pa.Table, street_rows: pa.Table, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """`home`'s lake and warehouse built once, at the path each example copies it back to
    (the warehouse's views name the lake's path), and the copy kept to copy from."""
    folder = tmp_path_factory.mktemp("incremental") / "home"
    home(folder, real_rows, street_rows)
    template = folder.parent / "template"
    shutil.copytree(folder, template)
    return folder, template


@pytest.fixture(scope="module")
def search_home(real_rows: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`home` of stop and search alone (its anchor month, every contract's catalog), built
    once for the tests below that start from it: where it was built, and a pristine copy."""
    folder = tmp_path_factory.mktemp("search") / "home"
    home(folder, real_rows)
    shutil.copytree(folder, folder.parent / "pristine")
    return folder, folder.parent / "pristine"


def restored(made: tuple[Path, Path]) -> tuple[FolderLake, Path]:
    """A home built once put back as it was built, at the very path it was built at (the
    warehouse's views name the lake by its path): whatever a test before wrote is gone."""
    folder, pristine = made
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    return FolderLake(folder / "lake"), folder / "warehouse.duckdb"


# One step: a month (index), how many rows and from where, a new tag (restatements), odd
# values, or the month erased; of stop and search or of street crime.
steps = st.lists(
    st.tuples(
        st.integers(0, 30),
        st.integers(12, 60),
        st.integers(0, 10_000),
        st.booleans(),
        st.sampled_from(["publish", "publish", "publish", "erase", "street", "erase street"]),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=int(os.environ.get("INCREMENTAL_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(st.integers(0, 30), min_size=1, max_size=14, unique=True), steps=steps)
def test_incremental_marts_equal_a_full_recompute(
    real_rows, street_rows, template_home, history, steps
):
    """After each delivery, the marts a run recomputes for its months only are, row for row
    and in order, what computing them from every month gives; so is their provenance."""
    folder, template = template_home
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder)
    lake, warehouse = FolderLake(folder / "lake"), folder / "warehouse.duckdb"
    for i, index in enumerate(history):
        publish(lake, real_rows, month_of(index), i * 97, 20 + i, f"h{i}", False)
        if i % 2:
            publish_street(lake, street_rows, month_of(index), i * 31, 15 + i, f"sh{i}")
    write_and_check(lake, warehouse, INCREMENTAL)  # computed whole: no record yet
    for n, (index, rows, first, odd, action) in enumerate(steps):
        period = month_of(index)
        if action == "erase":
            erase(lake, period)
        elif action == "erase street":
            erase(lake, period, "street_crime")
        elif action == "street":
            publish_street(lake, street_rows, period, first, rows, f"st{n}-{first}")
        else:
            publish(lake, real_rows, period, first, rows, f"s{n}-{first}", odd)
        write_and_check(lake, warehouse, INCREMENTAL)


def test_a_new_month_recomputes_only_the_months_it_reaches(real_rows, search_home):
    """A new month on top of two years recomputes the 12 months its windows reach, and
    leaves the figures of earlier months as the file had them: a month whose rows changed
    without a new delivery (which publishing never does) is not read again, while a full
    recompute would show it."""
    lake, warehouse = restored(search_home)
    for i in range(24):
        publish(lake, real_rows, month_of(i), i * 50, 40, f"h{i}", False)
    write_marts(warehouse, lake, BY_MONTH, CONTRACTS)
    # Month 0's rows replaced behind the runner's back: same delivery, same count.
    publish(lake, real_rows, month_of(0), 5_000, 40, "h0", False)
    publish(lake, real_rows, month_of(24), 0, 40, "new", False)
    write_marts(warehouse, lake, BY_MONTH, CONTRACTS)
    first = dt.date(2023, 1, 1)
    for name in BY_MONTH:
        kept = lake.read_table(f"oversight/{name}/data.parquet")
        full = compute_mart(name, warehouse, lake, CONTRACTS)
        old_kept = kept.filter(pc.equal(kept["month"], first)).replace_schema_metadata(None)
        old_full = full.filter(pc.equal(full["month"], first))
        assert not old_kept.equals(old_full), name  # not recomputed: the file's figures
        new = dt.date(2025, 1, 1)
        assert (
            kept.filter(pc.equal(kept["month"], new))
            .replace_schema_metadata(None)
            .equals(full.filter(pc.equal(full["month"], new)))
        )
        record = json.loads(kept.schema.metadata[COMPUTED_FROM])
        assert record["periods"]["stop_and_search"]["2025-01"] == [["new", 40]]
        assert record["rows_in_period"] is True


def test_a_row_outside_its_month_recomputes_everything(real_rows, search_home):
    """A published row dated in another month than its period (a contract without the
    in-period rule) cannot be sliced by period: every month is computed again."""
    lake, warehouse = restored(search_home)
    for i in range(14):
        publish(lake, real_rows, month_of(i), i * 50, 40, f"h{i}", False)
    write_marts(warehouse, lake, BY_MONTH, CONTRACTS)
    publish(lake, real_rows, month_of(20), 0, 40, "late", False)
    stray = lake.read_table(lake.curated_path("stop_and_search", month_of(20)))
    dates = stray["date"].to_pylist()
    dates[0] = dt.datetime(2023, 2, 10, 12, tzinfo=dt.UTC)  # a row of 2023-02 in 2024-09
    stray = stray.set_column(
        stray.schema.get_field_index("date"),
        "date",
        pa.array(dates, stray.schema.field("date").type),
    )
    lake.write_table(lake.curated_path("stop_and_search", month_of(20)), stray)
    write_marts(warehouse, lake, BY_MONTH, CONTRACTS)
    assert_same_as_full(lake, warehouse)
    for name in BY_MONTH:
        kept = lake.read_table(f"oversight/{name}/data.parquet")
        assert json.loads(kept.schema.metadata[COMPUTED_FROM])["rows_in_period"] is False


def test_a_mart_file_of_the_previous_version_is_computed_whole_then_kept(real_rows, search_home):
    """A home whose marts an earlier version wrote (no record of what they were computed
    from) gets them computed from every month once, with the record, and sliced after."""
    lake, warehouse = restored(search_home)
    for i in range(13):
        publish(lake, real_rows, month_of(i), i * 50, 40, f"h{i}", False)
    for name in BY_MONTH:  # as the previous version wrote them
        table = compute_mart(name, warehouse, lake, CONTRACTS)
        lake.write_table(
            f"oversight/{name}/data.parquet",
            table.replace_schema_metadata(mart_metadata(MARTS[name])),
        )
    publish(lake, real_rows, month_of(13), 0, 40, "new", False)
    write_marts(warehouse, lake, BY_MONTH, CONTRACTS)
    assert_same_as_full(lake, warehouse)
    publish(lake, real_rows, month_of(14), 0, 40, "newer", False)
    write_marts(warehouse, lake, BY_MONTH, CONTRACTS)
    assert_same_as_full(lake, warehouse)


def test_the_incremental_path_on_an_s3_lake(real_rows, street_rows, s3, tmp_path):
    """On a lake in S3 (SeaweedFS), a new month of each contract recomputes only what it
    changed, and every incremental mart and its provenance equal a full recompute."""
    _, prefix = s3
    lake = open_lake(f"s3://{LAKE_BUCKET}/{prefix}")
    assert isinstance(lake, S3Lake)
    publish(lake, real_rows, ANCHOR, 0, 30, "anchor", False)
    publish_street(lake, street_rows, ANCHOR, 0, 30, "street-anchor")
    for i in range(3):
        publish(lake, real_rows, month_of(i), i * 50, 40, f"h{i}", False)
    warehouse = build_warehouse(lake, CONTRACTS, tmp_path / "warehouse.duckdb")
    write_marts(warehouse, lake, INCREMENTAL, CONTRACTS)
    first = {n: lake.read_table(f"oversight/{n}/data.parquet") for n in INCREMENTAL}
    publish(lake, real_rows, month_of(3), 0, 40, "new", False)
    publish_street(lake, street_rows, month_of(3), 0, 25, "street-new")
    write_marts(warehouse, lake, INCREMENTAL, CONTRACTS)
    assert_same_as_full(lake, warehouse, INCREMENTAL)
    for name in INCREMENTAL:
        record = json.loads(
            lake.read_table(f"oversight/{name}/data.parquet").schema.metadata[COMPUTED_FROM]
        )
        before = json.loads(first[name].schema.metadata[COMPUTED_FROM])
        # Sliced, not computed whole: the record carried over, with the new month in it.
        assert record["fingerprint"] == before["fingerprint"]
        assert record["periods"]["stop_and_search"][month_of(3)] == [["new", 40]]
    quality = lake.read_table("oversight/data_quality/data.parquet")
    street = quality.filter(pc.equal(quality["contract"], "street_crime"))
    assert sorted(set(street["period"].to_pylist())) == [ANCHOR, month_of(3)]


def test_a_narrowed_read_has_the_whole_views_types_after_a_file_widened_a_column(
    real_rows, search_home
):
    """A month's file written after the warehouse was built, with a column of a wider type
    than the earlier files (a later contract version taking a flag as the Met's text),
    widens the whole curated view's column when it is read. A read narrowed to earlier
    months gives that month's rows with the view's types now, as the whole view filtered
    to them does, not the types the view had when the warehouse was built. (It holds
    because the runner's connection binds each curated view when it opens, which brings
    the types DuckDB lists for the view up to date; narrowed reads take them from there.)"""
    from pipelines.oversight.incremental_marts import _period_source, _used_by_period

    lake, warehouse = restored(search_home)
    for i in range(3):
        publish(lake, real_rows, month_of(i), i * 50, 40, f"h{i}", False)
    publish(lake, real_rows, month_of(3), 200, 40, "wider", False)
    key = lake.curated_path("stop_and_search", month_of(3))
    wider = lake.read_table(key)
    flag = wider.schema.get_field_index("part_of_a_policing_operation")
    texts = pa.array(["Yes" if v else "No" for v in wider.column(flag).to_pylist()], pa.string())
    lake.write_table(key, wider.set_column(flag, "part_of_a_policing_operation", texts))

    with warehouse_connection(warehouse, CONTRACTS) as con:
        known = set(_used_by_period(con, "stop_and_search"))
        for periods in ([month_of(0)], [month_of(0), month_of(3)]):
            source = _period_source(con, "stop_and_search", periods, known)
            listed = ", ".join(f"'{p}'" for p in periods)
            whole = con.sql(
                "SELECT * FROM warehouse.curated.stop_and_search "
                f"WHERE _period IN ({listed}) ORDER BY ALL"
            )
            narrowed = con.sql(
                f"SELECT * FROM {source or 'warehouse.curated.stop_and_search'} "
                f"WHERE _period IN ({listed}) ORDER BY ALL"
            )
            assert narrowed.columns == whole.columns
            assert [str(t) for t in narrowed.types] == [str(t) for t in whole.types], periods
            assert narrowed.fetchall() == whole.fetchall()
