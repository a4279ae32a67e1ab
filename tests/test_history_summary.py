"""The run's closing summary does not read the whole history again (issue 21, history row).

The summary gives the warehouse's totals: each curated table's rows and months, the
deliveries, quarantined rows and breaches, and the breaches still open. Asked of the
warehouse's views, each count opened every curated month, masked quarantine file, breach
file and event file of the lake, three times each in DuckDB (some 1,070 opens at 94 months
of one contract). Now what it needs of each file is kept in the home under the file's key,
size and time (`pipelines.warehouse.record_cache`), the delivery events are the
register's as already read, and a run opens only the files new or changed since.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.home.settings import Settings
from pipelines.lake import register as register_module
from pipelines.lake.register import Breach, DeliveryEvent, Register
from pipelines.lake.store import FolderLake
from pipelines.orchestration import run_summary
from pipelines.validation.row_validation import QUARANTINE_SCHEMA, curated_schema
from pipelines.warehouse import record_cache
from pipelines.warehouse.catalog import build_warehouse, catalog_current, connect
from schemas.contract import Contract, load_contracts

CONTRACT = "stop_and_search"
AN_HOUR_AGO = time.time() - 3600


def _period(m: int) -> str:
    return f"{2019 + m // 12}-{m % 12 + 1:02d}"


def _month(lake: FolderLake, m: int, rows: int = 3, breaches: int = 2, held: bool = False) -> None:
    """Month `m` as a run leaves it: its delivery's events, breach file, masked quarantine
    file and (published) curated month."""
    period, delivery = _period(m), f"d{m:03d}"
    register = Register(lake)
    at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=m)
    steps = ["received", "held"] if held else ["received", "validated", "published"]
    for n, event in enumerate(steps):
        register.record(
            DeliveryEvent(
                CONTRACT, period, delivery, event, rows_curated=rows, rows_quarantined=1,
                event_at=at + timedelta(seconds=n),
            )
        )  # fmt: skip
    register.write_breaches(
        CONTRACT,
        period,
        delivery,
        [
            Breach(
                CONTRACT,
                "1.0.0",
                period,
                delivery,
                f"rule.{b}",
                "c",
                "critical" if held else "major",
                "a",
                1,
                rows,
                "d",
            )
            for b in range(breaches)
        ],  # fmt: skip
    )
    quarantined = [
        {"contract": CONTRACT, "_delivery_id": delivery, "_source_row": 1, "_period": period,
         "rules": ["r"], "reasons": ["why"], "record": "{}"}
    ]  # fmt: skip
    lake.write_table(
        f"quarantine_masked/contract={CONTRACT}/period={period}/{delivery}.parquet",
        pa.Table.from_pylist(quarantined, QUARANTINE_SCHEMA),
    )
    if not held:
        schema = curated_schema(load_contracts()[CONTRACT])
        curated = [
            {"_delivery_id": delivery, "_source_row": i, "_period": period} for i in range(rows)
        ]
        lake.write_table(
            f"curated/contract={CONTRACT}/period={period}/data.parquet",
            pa.Table.from_pylist(curated, schema),
        )


def _written_earlier(lake: FolderLake) -> None:
    """Every file of the lake as if written an hour ago, as the months a run finds were."""
    for path in lake.root.rglob("*.parquet"):
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))


def _home(
    tmp_path: Path, months: int, contracts: dict[str, Contract] | None = None
) -> tuple[Settings, FolderLake]:
    lake = FolderLake(tmp_path / "lake")
    for m in range(months):
        _month(lake, m)
    _written_earlier(lake)
    warehouse = build_warehouse(lake, contracts or load_contracts(), tmp_path / "warehouse.duckdb")
    return Settings(tmp_path, tmp_path / "dropzone", lake.root, warehouse, tmp_path / "dg"), lake


@pytest.fixture(scope="module")
def three_months(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`_home` of three months (every contract's catalog), made once for the tests that
    start from it: the folder it was made in and a pristine copy (`_restored`)."""
    folder = tmp_path_factory.mktemp("three-months")
    _home(folder / "home", 3)
    shutil.copytree(folder / "home", folder / "pristine")
    return folder / "home", folder / "pristine"


def _restored(made: tuple[Path, Path]) -> tuple[Settings, FolderLake]:
    """A home made once (`three_months`, `one_month`) put back as it was made, at the very
    path it was made at (the catalog's views name the lake by its path): what an earlier
    user of it wrote, its summary's cache included, is gone."""
    home, pristine = made
    shutil.rmtree(home)
    shutil.copytree(pristine, home)
    lake = FolderLake(home / "lake")
    made = Settings(home, home / "dropzone", lake.root, home / "warehouse.duckdb", home / "dg")
    return made, lake


def _grown(three: tuple[Path, Path], months: int) -> tuple[Settings, FolderLake]:
    """`_home` of `months` (3 or more) months: the three-month home put back, and the
    months after written as `_home` writes them. Its catalog, built over three months, is
    the one `_home` would build (its views read the lake's files by pattern: the same
    record sets have files), as a run leaves a catalog when later months come."""
    settings_, lake = _restored(three)
    for m in range(3, months):
        _month(lake, m)
    _written_earlier(lake)
    return settings_, lake


def _as_the_views(warehouse: Path, contracts: dict[str, Contract] | None = None) -> list[str]:
    """The summary's lines as the warehouse's own views give them (the summary as it was),
    for `contracts` (every contract, unless given)."""
    lines = []
    with connect(warehouse) as con:
        for name in contracts or load_contracts():
            ((rows, months),) = con.execute(
                f"SELECT count(*), count(DISTINCT _period) FROM curated.{name}"
            ).fetchall()
            lines.append(f"  curated.{name}: {rows:,} rows over {months} month(s)")
        for table in ("deliveries", "quarantine", "breaches"):
            ((n,),) = con.execute(f"SELECT count(*) FROM governance.{table}").fetchall()
            lines.append(f"  governance.{table}: {n:,} rows")
        lines.append(run_summary.open_breaches(con))
    return lines


class Logged:
    """The summary's DuckDB, noting the lake files it opens (its FileSystem log)."""

    opened: list[str] = []

    def __init__(self) -> None:
        self.con = duckdb.connect()
        self.con.execute("CALL enable_logging('FileSystem')")

    def __getattr__(self, name: str):
        return getattr(self.con, name)

    def close(self) -> None:
        Logged.opened += [
            path
            for (path,) in self.con.execute(
                "SELECT json_extract_string(message, '$.path') FROM duckdb_logs "
                "WHERE type = 'FileSystem' AND message LIKE '%\"op\":\"OPEN\"%'"
            ).fetchall()
            if "/lake/" in path
        ]
        self.con.close()


def test_one_new_month_opens_as_many_lake_files_at_12_months_as_at_3(monkeypatch, three_months):
    """The summary after one new month, on 3 and on 12 months summarised by the run before:
    the same lake files opened (the new month's only), and every line as the views say.
    On the old code each count opened every month's files (three times each)."""
    monkeypatch.setattr(run_summary, "duckdb", SimpleNamespace(connect=Logged))
    opened = {}
    for months in (3, 12):
        settings, lake = _grown(three_months, months)
        assert run_summary.warehouse_counts(settings, load_contracts()) == _as_the_views(
            settings.warehouse
        )  # (the run before: what it read is kept)
        _month(lake, months)
        Register(lake).events()  # (the run has read the register already)
        Logged.opened = []
        lines = run_summary.warehouse_counts(settings, load_contracts())
        assert lines == _as_the_views(settings.warehouse)
        assert (
            f"  curated.{CONTRACT}: {3 * (months + 1):,} rows over {months + 1} month(s)" in lines
        )
        opened[months] = sorted(Path(p).relative_to(lake.root).as_posix() for p in Logged.opened)
    # The new month's files only (each opened as DuckDB reads a file: a few times).
    assert len(opened[3]) == len(opened[12]) > 0
    for months in (3, 12):
        assert all(_period(months) in p for p in opened[months]), opened[months]


def test_a_file_changed_or_gone_is_counted_as_it_is_now(three_months):
    settings, lake = _grown(three_months, 4)
    contracts = load_contracts()
    assert run_summary.warehouse_counts(settings, contracts) == _as_the_views(settings.warehouse)
    # Month 1 validated again: its breach file rewritten with three breaches, not two; month 2's
    # quarantine file gone (erased); the curated month 3 replaced by one of 5 rows.
    _month(lake, 1, breaches=3)
    lake.root.joinpath(
        f"quarantine_masked/contract={CONTRACT}/period={_period(2)}/d002.parquet"
    ).unlink()
    _month(lake, 3, rows=5)
    _written_earlier(lake)  # (the same time as before: only the size tells them apart)
    lines = run_summary.warehouse_counts(settings, contracts)
    assert lines == _as_the_views(settings.warehouse)
    assert "  governance.breaches: 9 rows" in lines
    assert f"  curated.{CONTRACT}: 14 rows over 4 month(s)" in lines


def test_a_lost_or_unreadable_cache_changes_no_figure(three_months):
    settings, _ = _restored(three_months)
    contracts = load_contracts()
    expected = _as_the_views(settings.warehouse)
    assert run_summary.warehouse_counts(settings, contracts) == expected
    cache = record_cache.cache_folder(settings.warehouse, FolderLake(settings.lake))
    kept = sorted(cache.glob("*.parquet"))
    assert [p.name for p in kept] == [
        "breaches.parquet",
        f"curated-{CONTRACT}.parquet",
        "quarantine.parquet",
    ]
    kept[0].write_bytes(b"not parquet")
    kept[1].unlink()
    assert run_summary.warehouse_counts(settings, contracts) == expected
    assert run_summary.warehouse_counts(settings, contracts) == expected


def test_files_written_a_moment_ago_are_read_again_not_kept(tmp_path):
    """A file changed within the last two seconds may change again within the same tick of
    its time (on S3, a second): it is counted, and read again next time."""
    settings, lake = _home(tmp_path, 2)
    _month(lake, 2)  # (just now)
    contracts = load_contracts()
    assert run_summary.warehouse_counts(settings, contracts) == _as_the_views(settings.warehouse)
    known, _ = record_cache._load(
        record_cache.cache_folder(settings.warehouse, FolderLake(settings.lake))
        / "breaches.parquet"
    )
    assert sorted(known) == sorted(
        f"governance/breaches/contract={CONTRACT}/period={_period(m)}/d00{m}.parquet"
        for m in range(2)
    )


@pytest.fixture(scope="module")
def one_month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`_home` of one month with the catalog of stop and search alone, made once for the
    Hypothesis examples: the folder each example puts it back in (the catalog's views name
    the lake by its path) and the pristine copy."""
    folder = tmp_path_factory.mktemp("one-month")
    _home(folder / "home", 1, {CONTRACT: load_contracts()[CONTRACT]})
    shutil.copytree(folder / "home", folder / "pristine")
    return folder / "home", folder / "pristine"


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 5),  # the month
            st.integers(1, 4),  # its curated rows
            st.integers(0, 3),  # its breaches
            st.booleans(),  # held back
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_summary_says_what_the_views_say_after_any_runs(one_month, steps):
    """Months written, rewritten and held back run after run: after each, every line is the
    warehouse views' own."""
    # The catalog of the one contract written (the other nine's lines are their empty
    # stand-ins' zeros, the same every step; the tests above count every contract): a third
    # of each step's rebuild, the most of what a step costs.
    contracts = {CONTRACT: load_contracts()[CONTRACT]}
    # Each example starts from the module's one-month home, put back where it was made,
    # and is read as a new process reads a lake (no register read kept).
    settings_, lake = _restored(one_month)
    register_module._READ.clear()
    for m, rows, breaches, held in steps:
        _month(lake, m, rows=rows, breaches=breaches, held=held)
        if held:  # a held month publishes nothing: no curated file of its own
            lake.root.joinpath(
                f"curated/contract={CONTRACT}/period={_period(m)}/data.parquet"
            ).unlink(missing_ok=True)
        _written_earlier(lake)
        # As a run does: the catalog rebuilt only when a rebuild would not make the same one
        # (a record set's first file, or its last one gone); its views read the lake's files
        # by pattern. (Rebuilt every step, it was three fifths of the test.)
        if not catalog_current(settings_.warehouse, lake, contracts):
            build_warehouse(lake, contracts, settings_.warehouse)
        assert run_summary.warehouse_counts(settings_, contracts) == _as_the_views(
            settings_.warehouse, contracts
        )


@pytest.fixture(autouse=True)
def _fresh_register():
    """Each test's lake is read as a new process reads it."""
    register_module._READ.clear()
    yield
    register_module._READ.clear()


def test_the_marts_read_the_kept_records_as_the_views_give_them(three_months):
    """The marts' connection (`records_once`, given the lake) takes the register's events
    and breach records from what is kept, not from every record file again: the same
    rows as the warehouse's views, and the same provenance for every mart."""
    from pipelines.lake.provenance import mart_source_rows
    from pipelines.oversight.mart_runner import MARTS, warehouse_connection

    settings_, lake = _grown(three_months, 5)
    _month(lake, 5, held=True)  # (a held month: its breaches critical, nothing published)
    contracts = load_contracts()
    with warehouse_connection(settings_.warehouse, contracts, records_once=True, lake=lake):
        pass  # (a run before: what it read is kept)
    with (
        warehouse_connection(settings_.warehouse, contracts) as views,
        warehouse_connection(settings_.warehouse, contracts, records_once=True, lake=lake) as kept,
    ):
        for name in ("delivery_events", "breach_records"):
            query = f"SELECT * FROM governance.{name} ORDER BY ALL"
            assert kept.execute(query).fetchall() == views.execute(query).fetchall(), name
        for mart in MARTS.values():
            sources = {c: contracts[c].version for c in mart.source_contracts(contracts)}
            assert mart_source_rows(kept, sources) == mart_source_rows(views, sources), mart.name


def test_a_copied_home_not_yet_rebuilt_is_counted_as_its_catalog_reads(tmp_path, three_months):
    """A home copied elsewhere keeps a catalog whose views read the original's lake until
    it is rebuilt: the summary says what that catalog says, not what the copy's lake holds."""
    settings_, lake = _restored(three_months)
    copy = tmp_path / "copy"
    shutil.copytree(settings_.home, copy)
    _month(lake, 3)  # (the original moves on; the copy's catalog still reads it)
    _written_earlier(lake)
    moved = Settings(copy, copy / "dropzone", copy / "lake", copy / "warehouse.duckdb", copy / "dg")
    lines = run_summary.warehouse_counts(moved, load_contracts())
    assert lines == _as_the_views(moved.warehouse)
    assert f"  curated.{CONTRACT}: 12 rows over 4 month(s)" in lines


def test_a_cache_of_other_column_types_is_read_again_whole(three_months):
    """Rows kept in other types than DuckDB reads now (another DuckDB wrote them, say) are
    not mixed with the new files' rows: every file is read again."""
    import pyarrow.parquet as pq

    settings_, lake = _restored(three_months)
    contracts = load_contracts()
    assert run_summary.warehouse_counts(settings_, contracts) == _as_the_views(settings_.warehouse)
    kept = record_cache.cache_folder(settings_.warehouse, lake) / "breaches.parquet"
    table = pq.read_table(kept)
    at = table.schema.get_field_index("failing_rows")
    table = table.set_column(at, "failing_rows", table.column(at).cast(pa.int32()))
    pq.write_table(table, kept)  # (its metadata, and so its files, as they were)
    _month(lake, 3, breaches=3)
    _written_earlier(lake)
    lines = run_summary.warehouse_counts(settings_, contracts)
    assert lines == _as_the_views(settings_.warehouse)
    assert "  governance.breaches: 9 rows" in lines
    assert pq.read_table(kept).schema.field("failing_rows").type == pa.int64()


def test_a_cache_kept_by_the_previous_version_is_made_again(three_months):
    """A home whose cache the previous version kept (version 1: the curated files' rows
    without their deliveries) is counted as its views say, and its cache made again in
    this version's form: its rows are never read as this version's."""
    import json

    import pyarrow.parquet as pq

    settings_, lake = _restored(three_months)
    contracts = load_contracts()
    assert run_summary.warehouse_counts(settings_, contracts) == _as_the_views(settings_.warehouse)
    folder = record_cache.cache_folder(settings_.warehouse, lake)
    (curated,) = folder.glob("curated-*.parquet")
    for kept in folder.glob("*.parquet"):  # each as the previous version wrote it
        table = pq.read_table(kept)
        meta = json.loads(table.schema.metadata[record_cache._META])
        if kept == curated:
            table = table.drop_columns(["_delivery_id"])
        meta["version"] = 1
        pq.write_table(table.replace_schema_metadata({record_cache._META: json.dumps(meta)}), kept)
    _month(lake, 3)
    _written_earlier(lake)
    lines = run_summary.warehouse_counts(settings_, contracts)
    assert lines == _as_the_views(settings_.warehouse)
    table = pq.read_table(curated)
    assert "_delivery_id" in table.schema.names
    assert (
        json.loads(table.schema.metadata[record_cache._META])["version"]
        == record_cache.CACHE_VERSION
    )
