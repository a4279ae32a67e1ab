"""The warehouse's totals that close `datashare run`'s summary, at a cost that does not grow
with the months published.

The summary gives each curated table's rows and months, governance's deliveries,
quarantined rows and breaches, and the breaches still open, each as the warehouse's view
gives it. Asked of the warehouse's views, each count read every file of the lake behind
them, three opens a file in DuckDB: at 94 months of one contract some 1,070 file opens and
0.1 s of CPU that a home with one month does not pay (issue 21, the history row).

What it needs of each file never changes while the file does not (a curated month, a
masked quarantine file, a breach file are written whole and replaced whole), so it is
kept from run to run in a cache in the home (`<home>/.cache/run-summary/`), under each
file's key, size and modification time: a curated month's rows by `_period`, a quarantine
file's rows by delivery, a breach file's rows. A run lists the files (one listing each,
no file opened) and reads only those not in the cache or changed since. The delivery
events are the register's, as this process already read them. The counts are then made
by the warehouse's own view SQL over those tables, as before: a cache lost or unreadable
is made again, and changes no figure.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.home.settings import Settings
from pipelines.lake.register import BREACH_SCHEMA, DELIVERY_EVENT_SCHEMA, Register
from pipelines.lake.store import Lake, open_lake
from pipelines.warehouse.catalog import GOVERNANCE_SOURCES, make_lake_readable
from schemas.contract import Contract

# Bumped when what is kept per file changes: a cache of another version is made again.
CACHE_VERSION = 1
# A file changed less than this before it was read may change again within the same
# tick of its modification time (on S3, a second): it is read, and not kept.
SETTLED_NS = 2_000_000_000

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

# Per kind of file: the files, and what is kept of each (DuckDB reading a list of them as
# the warehouse's view reads them, `filename` naming each row's file).
_BREACH_QUERY = (
    "SELECT * FROM read_parquet(?, union_by_name = false, hive_partitioning = false, "
    "filename = '_file')"
)
_QUARANTINE_QUERY = (
    "SELECT _file, _delivery_id, count(*) AS n FROM read_parquet(?, union_by_name = false, "
    "hive_partitioning = false, filename = '_file') GROUP BY ALL"
)
_COUNTS = pa.schema([("_file", pa.string()), ("_period", pa.string()), ("n", pa.int64())])
_QUARANTINED = pa.schema([("_file", pa.string()), ("_delivery_id", pa.string()), ("n", pa.int64())])
_CURATED_QUERY = (
    "SELECT _file, _period, count(*) AS n FROM read_parquet(?, union_by_name = true, "
    "hive_partitioning = false, filename = '_file') GROUP BY ALL"
)


def warehouse_counts(settings: Settings, contracts: dict[str, Contract]) -> list[str]:
    """The summary's lines of the warehouse's counts, each as its view gives it."""
    lake = open_lake(settings.lake)
    cache = settings.home / ".cache" / "run-summary"
    lines = []
    with _counting_connection(settings.warehouse, lake, cache) as con:
        plain = _plain_curated(con)
        for name in contracts:
            if name in plain:
                table = _kept(
                    con, lake, cache, f"curated-{name}", plain[name], _CURATED_QUERY, _COUNTS
                )
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
            what = "coalesce(sum(n), 0)" if table == "quarantine" else "count(*)"
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
    warehouse: Path, lake: Lake, cache: Path
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with `warehouse.duckdb` attached read-only (as `warehouse`), in
    which `governance.<view>` is the warehouse's own view, made again from the SQL the
    warehouse keeps for it, over the register's records: the delivery events as the
    register read them, the breach records and quarantined rows by delivery from the
    cache (`_kept`), the rest copied from the warehouse."""
    con = duckdb.connect()
    try:
        path = str(warehouse).replace("'", "''")
        con.execute(f"ATTACH '{path}' AS warehouse (READ_ONLY)")
        make_lake_readable(con, "warehouse")
        con.execute("CREATE SCHEMA governance")
        events = pa.Table.from_pylist(Register(lake).events(), DELIVERY_EVENT_SCHEMA)
        breaches = _kept(
            con, lake, cache, "breaches", GOVERNANCE_SOURCES["governance.breach_records"],
            _BREACH_QUERY, BREACH_SCHEMA.append(pa.field("_file", pa.string())),
        ).drop_columns(["_file"])  # fmt: skip
        quarantine = _kept(
            con, lake, cache, "quarantine", GOVERNANCE_SOURCES["governance.quarantine_history"],
            _QUARANTINE_QUERY, _QUARANTINED,
        ).drop_columns(["_file"])  # fmt: skip
        for name, table in (
            ("delivery_events", events),
            ("breach_records", breaches),
            ("quarantine_history", quarantine),
        ):
            con.register("_records", table)
            con.execute(f"CREATE TABLE governance.{name} AS SELECT * FROM _records")
            con.unregister("_records")
        for name in _RECORDS:
            con.execute(
                f"CREATE TABLE governance.{name} AS SELECT * FROM warehouse.governance.{name}"
            )
        made = dict(
            con.execute(
                "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'warehouse' "
                "AND schema_name = 'governance'"
            ).fetchall()
        )
        for name in _VIEWS:
            con.execute(made[name])
        yield con
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


def _kept(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    cache: Path,
    kind: str,
    pattern: str,
    query: str,
    empty: pa.Schema,
) -> pa.Table:
    """`query` (over a list of files, naming each row's file in `_file`) of every file of
    the lake matching `pattern` (a key pattern, or the path a view reads): the rows kept
    for the files unchanged since they were read, the others read now (and kept). With no
    file, an empty table of `empty` (as the catalog has one then)."""
    prefix = lake.url_of("")
    files = _listing(lake, pattern.removeprefix(prefix))
    known, kept = _load(cache / f"{kind}.parquet")
    fresh = sorted(k for k, stamp in files.items() if known.get(k) != stamp)
    unchanged = sorted(k for k, stamp in files.items() if known.get(k) == stamp)
    parts = []
    if kept is not None and unchanged:
        parts.append(_rows_of_files(con, kept, unchanged))
    if fresh:
        read = con.sql(query, params=[[lake.url_of(k) for k in fresh]]).to_arrow_table()
        keys = [f.removeprefix(prefix) for f in read.column("_file").to_pylist()]
        at = read.schema.get_field_index("_file")
        parts.append(read.set_column(at, "_file", pa.array(keys, pa.string())))
    if not parts:
        return pa.Table.from_batches([], empty)
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if fresh or len(unchanged) != len(known):
        now = time.time_ns()
        settled = {k: stamp for k, stamp in files.items() if stamp[1] < now - SETTLED_NS}
        _save(cache / f"{kind}.parquet", settled, _rows_of_files(con, table, sorted(settled)))
    return table


def _rows_of_files(con: duckdb.DuckDBPyConnection, table: pa.Table, files: list[str]) -> pa.Table:
    """`table`'s rows of `files` (by `_file`), in DuckDB (pyarrow's filter would import
    pyarrow.compute, which an idle run otherwise does not)."""
    con.register("_rows", table)
    try:
        return con.sql(
            "SELECT * FROM _rows WHERE _file IN (SELECT unnest(?::VARCHAR[]))", params=[files]
        ).to_arrow_table()
    finally:
        con.unregister("_rows")


def _listing(lake: Lake, pattern: str) -> dict[str, tuple[int, int]]:
    """(size, modification time in ns) of each file matching `pattern` (`*` within one
    segment, as `Lake.glob`), by key: one listing, no file opened."""
    parts = pattern.split("/")
    fixed = 0
    while fixed < len(parts) - 1 and not set("*?[") & set(parts[fixed]):
        fixed += 1
    prefix = "/".join(parts[:fixed])
    selector = pafs.FileSelector(
        lake.location(prefix) if prefix else lake.base, recursive=True, allow_not_found=True
    )
    found = {}
    for info in lake.filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        key = info.path[len(lake.base) + 1 :]
        names = key.split("/")
        if (
            len(names) == len(parts)
            and not any(n.startswith(".") for n in names)
            and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts, strict=True))
        ):
            found[key] = (int(info.size), int(info.mtime_ns or 0))
    return found


def _load(path: Path) -> tuple[dict[str, tuple[int, int]], pa.Table | None]:
    """The files a cache holds (key: size and time, as listed when read) and its rows;
    nothing for a cache missing, unreadable or of another version."""
    try:
        table = pq.ParquetFile(path).read()
        meta = json.loads(table.schema.metadata[_META])
        if meta["version"] != CACHE_VERSION:
            return {}, None
        files = {k: (int(s), int(t)) for k, (s, t) in meta["files"].items()}
        return files, table.replace_schema_metadata(None)
    except Exception:  # (a cache is only ever a shortcut: read the files instead)
        return {}, None


def _save(path: Path, files: dict[str, tuple[int, int]], rows: pa.Table) -> None:
    """Keep `rows` (those of `files`) at `path`, whole or not at all: written aside, then
    moved in, so two runs at once leave one of their caches, each right."""
    meta = json.dumps({"version": CACHE_VERSION, "files": files})
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}")
        pq.write_table(rows.replace_schema_metadata({_META: meta}), aside)
        os.replace(aside, path)


_META = b"datashare.run_summary_cache"
