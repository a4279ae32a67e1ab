"""The warehouse's breach views read each of the lake's record sets once per query (issue 21).

`governance.breach_register` is made of views that each read the delivery events and breach
records: inlined by DuckDB, one query of it read the lake's files nine times (each file an
HTTP request or more on S3, and nine reads of a folder a run writes to need not agree). The
warehouse's views are `views.reading_once` of the same SQL: they must give exactly the rows
the views give over tables (`views.in_memory`, what `datashare breaches` reads), on a register
with re-sends, supersessions, lead's steps, held, rejected and late months and a month in
parts, while reading each file set once; and so must `governance.audit_log`, which reads
the register's history.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.governance.audit_log import AUDIT_LOG_SQL, record_export
from pipelines.governance.views import clause_table, in_memory, parts_table
from pipelines.lake.register import DeliveryEvent, Register
from pipelines.lake.store import Lake, open_lake
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import load_contracts
from tests.breach_homes import breach, deliver, late, step
from tests.s3_server import LAKE_BUCKET

S, C = "stop_and_search", "street_crime"
T0 = datetime(2025, 9, 25, 9, tzinfo=UTC)
# Each view, and the record sets (views over the lake's files) a query of it reads.
READS = {
    "deliveries": {"delivery_events"},
    "breaches": {"breach_records"},
    "breach_deliveries": {"breach_records", "delivery_events"},
    "breach_history": {"breach_records", "delivery_events", "breach_events"},
    "breach_register": {"breach_records", "delivery_events", "breach_events"},
    "audit_log": {"breach_records", "delivery_events", "breach_events", "exports"},
}


STEPS = 3  # lead's steps `_write_register` writes


def _write_register(lake: Lake) -> None:
    """A register of every kind of breach, written into `lake` as the pipeline writes it."""
    first = deliver(lake, S, "2025-08", "2025-08.csv", 4_000, at=T0)
    old = [
        breach(lake, S, "2025-08", first, f"rule_{n}", "major", "broken", 3, 4_000,
               raised_at=T0 + timedelta(minutes=1))
        for n in range(2)
    ]  # fmt: skip
    step(lake, old[0], S, "notified", T0 + timedelta(days=1))
    step(lake, old[1], S, "waived", T0 + timedelta(days=1), "agreed")
    resend = deliver(lake, S, "2025-08", "resent.csv", 4_010, at=T0 + timedelta(days=2))
    Register(lake).record(
        DeliveryEvent(contract=S, period="2025-08", delivery_id=first, event="superseded",
                      event_at=T0 + timedelta(days=2, minutes=3), reason="Replaced.")
    )  # fmt: skip
    again = breach(lake, S, "2025-08", resend, "rule_0", "major", "broken", 1, 4_010,
                   raised_at=T0 + timedelta(days=2, minutes=1))  # fmt: skip
    step(lake, again, S, "acknowledged", T0 + timedelta(days=3))
    held = deliver(lake, S, "2025-09", "2025-09.csv", 10, "held", at=T0 + timedelta(days=30))
    breach(lake, S, "2025-09", held, "file.manifest", "critical", "wrong count",
           action="delivery held", raised_at=T0 + timedelta(days=30, minutes=1))  # fmt: skip
    rejected = deliver(lake, S, "2025-10", "2025-10.csv", 0, "rejected", at=T0 + timedelta(60))
    breach(lake, S, "2025-10", rejected, "file.format", "critical", "not CSV",
           action="delivery rejected", raised_at=T0 + timedelta(days=60, minutes=1))  # fmt: skip
    deliver(lake, S, "2025-10", "2025-10-again.csv", 3_900, at=T0 + timedelta(62))
    late(lake, S, "2025-11")
    record_export(lake, S, "2025-08", "notice-2025-08.pdf (2 breaches)", "lead", "monthly")
    # A month in parts: one part rejected, then re-sent under its name; the other part is
    # not a re-send of it.
    part = deliver(lake, C, "2025-08", "north.csv", 0, "rejected", at=T0)
    breach(lake, C, "2025-08", part, "file.format", "critical", "not CSV",
           action="delivery rejected", raised_at=T0 + timedelta(minutes=1))  # fmt: skip
    deliver(lake, C, "2025-08", "south.csv", 900, at=T0 + timedelta(days=1))
    deliver(lake, C, "2025-08", "again/north.csv", 800, at=T0 + timedelta(days=2))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """The warehouse of a folder lake with `_write_register`'s register."""
    home = tmp_path_factory.mktemp("home")
    lake = open_lake(home / "lake")
    _write_register(lake)
    return build_warehouse(lake, load_contracts(), home / "warehouse.duckdb")


def _files(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many files the view of each record set of `READS` reads now."""
    return {
        name: con.execute(
            "SELECT count(DISTINCT filename) FROM read_parquet(?, filename=true)",
            [_glob(con, name)],
        ).fetchone()[0]
        for name in set().union(*READS.values())
    }


def _glob(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The files `governance.<table>` reads, as its view names them."""
    (sql,) = con.execute(
        "SELECT sql FROM duckdb_views() WHERE schema_name = 'governance' AND view_name = ?",
        [table],
    ).fetchone()
    return re.search(r"read_parquet\('([^']+)'", sql).group(1)


def _scans(con: duckdb.DuckDBPyConnection, view: str) -> list[int]:
    """Files read by each scan of the lake's files in a query of `view`, sorted."""
    plan = con.execute(f"EXPLAIN ANALYZE SELECT * FROM governance.{view}").fetchall()[0][1]
    read = sorted(int(n) for n in re.findall(r"Total Files Read: *(\d+)", plan))
    assert plan.count("READ_PARQUET") == len(read)
    return read


def _over_tables(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The views over tables of the warehouse's record sets (`in_memory`, and the audit
    log's SQL)."""
    contracts = load_contracts()
    tables = [
        con.sql(f"SELECT * FROM governance.{name}").to_arrow_table()
        for name in ("breach_records", "breach_events", "delivery_events")
    ]
    assert tables[1].num_rows == STEPS
    memory = in_memory(*tables, clause_table(contracts), parts_table(contracts))
    for name in ("erasures", "exports"):  # what the audit log reads besides
        memory.register("_source", con.sql(f"SELECT * FROM governance.{name}").to_arrow_table())
        memory.execute(f"CREATE TABLE governance.{name} AS SELECT * FROM _source")
    memory.execute(AUDIT_LOG_SQL)
    return memory


def _rows(con: duckdb.DuckDBPyConnection, view: str) -> tuple[list[tuple], list[tuple]]:
    """`view`'s rows (ordered) and its columns with their types."""
    rows = con.execute(f"SELECT * FROM governance.{view} ORDER BY ALL").fetchall()
    return rows, con.execute(COLUMNS, [view]).fetchall()


COLUMNS = (
    "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'governance' "
    "AND table_name = ? ORDER BY column_index"
)


@pytest.mark.parametrize("view", list(READS))
def test_a_query_of_a_breach_view_reads_each_file_set_once(warehouse, view):
    with connect(warehouse) as con:
        files = _files(con)
        assert _scans(con, view) == sorted(files[name] for name in READS[view])


@pytest.mark.parametrize("view", list(READS))
def test_the_warehouse_views_give_the_rows_the_views_give_over_tables(warehouse, view):
    with connect(warehouse) as con, _over_tables(con) as memory:
        got, columns = _rows(con, view)
        assert (got, columns) == _rows(memory, view)
    if view == "breach_register":
        # The register this home was made to show: three breaches superseded by a re-send
        # (one notified first; a rejected month; a rejected part re-sent under its name),
        # a lead's waiver and acknowledgement, a held month's and a late month's open.
        status = [name for name, _ in columns].index("status")
        assert sorted(r[status] for r in got) == sorted(
            ["superseded"] * 3 + ["waived", "acknowledged", "open", "open"]
        )


def test_on_an_s3_lake_too(s3, tmp_path):
    # Each object an HTTP request: the reads the rewrite saves are most of a query's time.
    _, prefix = s3
    lake = open_lake(f"s3://{LAKE_BUCKET}/{prefix}")
    _write_register(lake)
    path = build_warehouse(lake, load_contracts(), tmp_path / "warehouse.duckdb")
    with connect(path) as con, _over_tables(con) as memory:
        files = _files(con)
        for view in READS:
            assert _scans(con, view) == sorted(files[name] for name in READS[view]), view
            assert _rows(con, view) == _rows(memory, view), view
