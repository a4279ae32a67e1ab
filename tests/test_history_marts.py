"""One new month's marts cost the same whatever the history (issue 21, history row).

The marts a run recomputes for its new month read the curated files of the months their
windows reach (a year of stop and search), and look once over the whole history to see
which months changed; they used to open every month's file some 44 times (each query over
the curated view, and each view made of it, bound and scanned every file), so the step
grew with every month kept. Counted by DuckDB's own log of the files it opens, on the real
June 2022 searches.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.oversight.mart_runner import MARTS, warehouse_connection, write_mart, write_marts
from tests import test_marts_incremental as marts_incremental
from tests.test_marts_incremental import (
    CONTRACTS,
    INCREMENTAL,
    assert_same_as_full,
    home,
    month_of,
    publish,
)

# The real June 2022 searches as the contract's checks leave them (a module fixture).
real_rows = marts_incremental.real_rows


def curated_opens(con: duckdb.DuckDBPyConnection) -> int:
    """How many times `con`'s DuckDB has opened a curated file since logging began."""
    ((n,),) = con.execute(
        "SELECT count(*) FROM duckdb_logs WHERE type = 'FileSystem' "
        "AND message LIKE '%curated/contract=%' AND message LIKE '%\"op\":\"OPEN\"%'"
    ).fetchall()
    return n


# The months a run finds were written long before it (the cache keeps a file from two
# seconds after it was written: `record_cache.SETTLED_NS`).
AN_HOUR_AGO = time.time() - 3600


def new_month_opens(folder: Path, pool: pa.Table, months: int) -> dict[str, tuple[int, int]]:
    """Every mart written for one new month on top of `months` months of stop and search
    (the marts written before it, as a run leaves them): the curated files opened doing
    so, and those one look over the history (which deliveries each month holds) opens; by
    a connection that keeps what it reads of the lake's files (`kept`, as a run's step
    opens it) and by one that does not (`read`, as over an S3 lake), each from the same
    marts' files."""
    lake, warehouse = home(folder, pool)
    for i in range(months):
        publish(lake, pool, month_of(i), i * 50, 40, f"h{i}", False)
    for path in lake.root.rglob("*.parquet"):
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    write_marts(warehouse, lake, None, CONTRACTS)
    publish(lake, pool, month_of(months), 0, 40, "new", False)
    marts_before = folder / "marts-before"
    shutil.copytree(lake.root / "oversight", marts_before)
    found = {}
    for how, kept in (("read", None), ("kept", lake)):
        shutil.rmtree(lake.root / "oversight")
        shutil.copytree(marts_before, lake.root / "oversight")
        with warehouse_connection(warehouse, CONTRACTS, records_once=True, lake=kept) as con:
            con.execute("CALL enable_logging('FileSystem')")
            for name in MARTS:
                write_mart(name, con, lake, CONTRACTS)
            marts = curated_opens(con)
            con.execute(
                "SELECT _period, _delivery_id, count(*) FROM curated.stop_and_search GROUP BY ALL"
            ).fetchall()
            look = curated_opens(con) - marts
        found[how] = (marts, look)
    # The same figures and provenance as computing every month (those read without the
    # cache: test_marts_incremental's).
    assert_same_as_full(lake, warehouse, INCREMENTAL)
    return found


def test_a_new_month_opens_no_more_history_than_one_look(real_rows, tmp_path):
    """On 25 months rather than 13, the marts' step for a new month opens the 12 months'
    more files no more often than one look over them does: the months outside the new
    month's windows are not read again by each mart and query (on the old code, some 44
    opens of each). Where what each month's file holds is kept (a folder lake), each of
    those files is opened once, to make the step's view of the history (on e3afe3c's
    code, which looked over the history and bound the data quality counts over every
    file, DuckDB logged 36 opens for the 12 months more)."""
    short = new_month_opens(tmp_path / "short", real_rows, 13)
    long = new_month_opens(tmp_path / "long", real_rows, 25)
    for how in ("read", "kept"):
        (short_marts, short_look), (long_marts, long_look) = short[how], long[how]
        assert long_marts - short_marts <= long_look - short_look, (how, short, long)
    assert long["kept"][0] - short["kept"][0] <= 25 - 13, (short, long)
