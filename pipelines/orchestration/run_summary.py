"""The warehouse's totals that close `datashare run`'s summary, at a cost that does not grow
with the months published.

The summary gives each curated table's rows and months, governance's deliveries,
quarantined rows and breaches, and the breaches still open, each as the warehouse's view
gives it. Asked of the warehouse's views, each count read every file of the lake behind
them, three opens a file in DuckDB: at 94 months of one contract some 1,070 file opens and
0.13 s of CPU that a home with one month does not pay (issue 21, the history row). Now
the records are what `pipelines.warehouse.record_cache` keeps of each file (read again only
when new or changed) and the register's events as this process read them, and the counts
are made by the warehouse's own view SQL over them, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipelines.home.settings import Settings
from pipelines.lake.store import Lake, open_lake
from pipelines.warehouse.catalog import make_lake_readable
from pipelines.warehouse.record_cache import (
    breach_records,
    cache_folder,
    curated_by_period,
    delivery_events,
    quarantined_by_delivery,
    reads_lake,
)
from schemas.contract import Contract

# The records the summary's governance views are made of that are copied as they are,
# and the views it counts with, in the order the warehouse made them.
_RECORDS = ("breach_events", "clauses", "month_parts")
_VIEWS = (
    "deliveries",
    "breaches",
    "breach_deliveries",
    "breach_history",
    "breach_register",
    "quarantine",
)


def warehouse_counts(settings: Settings, contracts: dict[str, Contract]) -> list[str]:
    """The summary's lines of the warehouse's counts, each as its view gives it."""
    lake = open_lake(settings.lake)
    cache = cache_folder(settings.warehouse, lake)
    lines = []
    with _counting_connection(settings.warehouse, lake, cache) as (con, by_delivery):
        # (A view over another lake's files, as in a copied home not yet rebuilt, is counted
        # as a view: what it reads is not this lake's.)
        here = lake.url_of("")
        plain = {n: files for n, files in _plain_curated(con).items() if files.startswith(here)}
        for name in contracts:
            if name in plain:
                table = curated_by_period(con, lake, cache, name, plain[name])
                con.register("_counts", table)
                ((rows, months),) = con.execute(
                    "SELECT coalesce(sum(n), 0), count(DISTINCT _period) FROM _counts"
                ).fetchall()
                con.unregister("_counts")
            else:
                ((rows, months),) = con.execute(
                    f"SELECT count(*), count(DISTINCT _period) FROM warehouse.curated.{name}"
                ).fetchall()
            lines.append(f"  curated.{name}: {rows:,} rows over {months} month(s)")
        for table in ("deliveries", "quarantine", "breaches"):
            # governance.quarantine is made here over each file's rows by delivery (`n`).
            what = "coalesce(sum(n), 0)" if table == "quarantine" and by_delivery else "count(*)"
            ((n,),) = con.execute(f"SELECT {what} FROM governance.{table}").fetchall()
            lines.append(f"  governance.{table}: {n:,} rows")
        lines.append(open_breaches(con))
    return lines


def open_breaches(con: duckdb.DuckDBPyConnection) -> str:
    """Breaches still to act on, as governance.breach_register has them: a breach of a
    delivery replaced by a published re-send is superseded, not open."""
    row = con.execute(
        "SELECT count(*) FILTER (WHERE status IN ('open', 'notified', 'acknowledged')), "
        "count(*) FILTER (WHERE status IN ('open', 'notified', 'acknowledged') "
        "AND severity = 'critical'), count(*) FILTER (WHERE status = 'superseded') "
        "FROM governance.breach_register"
    ).fetchone()
    open_, critical, superseded = row
    return f"  open breaches:      {open_:,} ({critical:,} critical)" + (
        f"; {superseded:,} superseded by a published re-send" if superseded else ""
    )


@contextmanager
def _counting_connection(
    warehouse: Path, lake: Lake, cache: Path | None
) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool]]:
    """An in-memory DuckDB with `warehouse.duckdb` attached read-only (as `warehouse`), in
    which `governance.<view>` is the warehouse's own view, made again from the SQL the
    warehouse keeps for it, over the register's records: the delivery events as the
    register read them, the breach records and quarantined rows by delivery from the
    cache (`pipelines.warehouse.record_cache`), the rest copied from the warehouse. With it,
    whether `governance.quarantine_history` is made of the rows by delivery (a view over
    the lake's files in the warehouse) rather than copied as it is."""
    con = duckdb.connect()
    try:
        path = str(warehouse).replace("'", "''")
        con.execute(f"ATTACH '{path}' AS warehouse (READ_ONLY)")
        make_lake_readable(con, "warehouse")
        con.execute("CREATE SCHEMA governance")
        # The warehouse's governance views' SQL, read once: what is read from the lake's
        # files, and the views made again below (a `duckdb_views()` query each was 5 ms).
        made = dict(
            con.execute(
                "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'warehouse' "
                "AND schema_name = 'governance'"
            ).fetchall()
        )
        kept = {
            "delivery_events": lambda: delivery_events(lake),
            "breach_records": lambda: breach_records(con, lake, cache),
            "quarantine_history": lambda: quarantined_by_delivery(con, lake, cache).drop_columns(
                ["_file"]
            ),
        }
        copied = list(_RECORDS)
        for name, read in kept.items():
            if not reads_lake(made.get(name), lake):  # (no files when built: copied as it is)
                copied.append(name)
                continue
            con.register("_records", read())
            con.execute(f"CREATE TABLE governance.{name} AS SELECT * FROM _records")
            con.unregister("_records")
        for name in copied:
            con.execute(
                f"CREATE TABLE governance.{name} AS SELECT * FROM warehouse.governance.{name}"
            )
        for name in _VIEWS:
            con.execute(made[name])
        yield con, reads_lake(made.get("quarantine_history"), lake)
    finally:
        con.close()


def _plain_curated(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The curated views that read one pattern of the lake's files as they are (every
    row of every file: a month's rows are that file's), by name: the lake pattern each
    reads. Views of another shape (the latest snapshot, releases) are counted as views."""
    plain = {}
    for name, sql in con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'warehouse' "
        "AND schema_name = 'curated'"
    ).fetchall():
        head, _, rest = sql.partition(" FROM read_parquet('")
        glob, _, tail = rest.partition("'")
        shape_ok = head.endswith(
            "AS SELECT *, CAST(strptime(_period, '%Y-%m') AS DATE) AS _month"
        ) or head.endswith(" AS SELECT *")
        if (
            glob
            and shape_ok
            and tail.startswith(", (union_by_name = true)")
            and "WHERE" not in tail
        ):
            plain[name] = glob
    return plain
