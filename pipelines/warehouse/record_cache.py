"""What the run's closing summary and the marts' provenance need of the lake's record
files, kept from run to run in a cache beside the warehouse (issue 21, the history row).

The summary's totals and the marts' provenance read the register's records through the
warehouse's views, and each such read opened every breach file, masked quarantine file,
curated month and event file of the lake (three opens a file in DuckDB: a file per month of
history, each time). What they need of each file never changes while the file does not (a
curated month, a masked quarantine file, a breach file are written whole and replaced
whole), so it is kept in `<warehouse folder>/.cache/lake-records/`, under each file's key,
size and modification time: a breach file's rows, a quarantine file's rows by delivery, a
curated month's rows by `_period`. A reader lists the files (one listing, no file opened)
and reads only those not in the cache or changed since; the delivery events are the
register's (`Register.events`), which a run has read already. A cache lost, unreadable or
of another version is made again: it is only ever a shortcut, and changes no figure.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.lake.register import BREACH_SCHEMA, DELIVERY_EVENT_SCHEMA, Register
from pipelines.lake.store import FolderLake, Lake
from pipelines.warehouse.catalog import GOVERNANCE_SOURCES, MONTH_OF_PERIOD

# Bumped when what is kept per file changes: a cache of another version is made again.
# 2: the curated files' rows keep `_delivery_id` (the marts' months, 5d52848).
CACHE_VERSION = 2
# A file changed less than this before it was read may change again within the same
# tick of its modification time (on S3, a second): it is read, and not kept.
SETTLED_NS = 2_000_000_000


def cache_folder(warehouse: Path, lake: Lake) -> Path | None:
    """Where the records of `lake` (behind `warehouse`) are kept; None for a lake that is
    not a folder on this machine: a lake on S3 keeps delivery data off the machine that
    runs (nothing of it in the home), so its records are read as they are each time."""
    if not isinstance(lake, FolderLake):
        return None
    return Path(warehouse).parent / ".cache" / "lake-records"


def over_files(
    con: duckdb.DuckDBPyConnection, name: str, lake: Lake, catalog: str = "warehouse"
) -> bool:
    """Whether the attached warehouse's `governance.<name>` is a view over `lake`'s files. A
    record set with no files when it was built is an empty table, and a copied home's
    catalog not yet rebuilt reads another lake: a reader copies those as they are, to say
    what the warehouse says."""
    rows = con.execute(
        "SELECT sql FROM duckdb_views() WHERE database_name = ? AND schema_name = 'governance' "
        "AND view_name = ?",
        [catalog, name],
    ).fetchall()
    return reads_lake(rows[0][0] if rows else None, lake)


def reads_lake(sql: str | None, lake: Lake) -> bool:
    """Whether a view's SQL (`sql`, None for no view) reads `lake`'s files (`over_files`,
    for a caller that has the views' SQL already)."""
    return sql is not None and f"read_parquet('{lake.url_of('')}" in sql


def delivery_events(lake: Lake) -> pa.Table:
    """`governance.delivery_events` (every event once) as the register has read it."""
    return pa.Table.from_pylist(Register(lake).events(), DELIVERY_EVENT_SCHEMA)


def breach_records(con: duckdb.DuckDBPyConnection, lake: Lake, cache: Path | None) -> pa.Table:
    """`governance.breach_records`: every breach file's rows (`con` reads the lake)."""
    pattern = GOVERNANCE_SOURCES["governance.breach_records"]
    empty = BREACH_SCHEMA.append(pa.field("_file", pa.string()))
    return _kept(con, lake, cache, "breaches", pattern, _BREACH_QUERY, empty).drop_columns(
        ["_file"]
    )


def quarantined_by_delivery(
    con: duckdb.DuckDBPyConnection, lake: Lake, cache: Path | None
) -> pa.Table:
    """`governance.quarantine_history`'s rows counted by delivery (`_delivery_id`, `n`)."""
    pattern = GOVERNANCE_SOURCES["governance.quarantine_history"]
    return _kept(con, lake, cache, "quarantine", pattern, _QUARANTINE_QUERY, _QUARANTINED)


def curated_by_delivery(
    con: duckdb.DuckDBPyConnection, lake: Lake, cache: Path | None, name: str, files: str
) -> pa.Table:
    """The rows of the curated files matching `files` (the path a plain curated view reads)
    counted by file, `_period` and `_delivery_id` (`_file`, `_period`, `_delivery_id`, `n`):
    what the marts' incremental plan compares with what a mart was computed from."""
    return _kept(con, lake, cache, f"curated-{name}", files, _CURATED_QUERY, _DELIVERIES)


def curated_by_period(
    con: duckdb.DuckDBPyConnection, lake: Lake, cache: Path | None, name: str, files: str
) -> pa.Table:
    """The rows of the curated files matching `files` (the path a plain curated view reads)
    counted by `_period` and file (`_file`, `_period`, `n`)."""
    by_delivery = curated_by_delivery(con, lake, cache, name, files)
    con.register("_by_delivery", by_delivery)
    try:
        return con.sql(
            "SELECT _file, _period, sum(n)::BIGINT AS n FROM _by_delivery GROUP BY ALL"
        ).to_arrow_table()
    finally:
        con.unregister("_by_delivery")


def plain_curated_files(sql: str | None, lake: Lake) -> str | None:
    """The files a warehouse's view `curated.<name>` (its SQL, `sql`) reads, when it is a
    plain view of this lake's curated files (every row of every file matching one path, and
    `_month`): the path, as `curated_by_delivery` takes it; None for a view of another shape
    (releases, the latest snapshot), no view, or a view over another lake's files (a copied
    home)."""
    match = _PLAIN_VIEW.fullmatch(sql.strip()) if sql else None
    if match is None:
        return None
    files = match.group("files")
    return files if files.startswith(lake.url_of("")) else None


def kept_records(
    con: duckdb.DuckDBPyConnection, lake: Lake, warehouse: Path, name: str
) -> pa.Table:
    """`governance.<name>` (`delivery_events` or `breach_records`) of the lake behind
    `warehouse`, from what is kept (`con` reads the lake)."""
    if name == "delivery_events":
        return delivery_events(lake)
    if name == "breach_records":
        return breach_records(con, lake, cache_folder(warehouse, lake))
    raise ValueError(f"no kept records for governance.{name}")


# Per kind of file, what is kept of each: DuckDB reading a list of them as the warehouse's
# view reads them, `_file` naming each row's file.
_BREACH_QUERY = (
    "SELECT * FROM read_parquet(?, union_by_name = false, hive_partitioning = false, "
    "filename = '_file')"
)
_QUARANTINE_QUERY = (
    "SELECT _file, _delivery_id, count(*) AS n FROM read_parquet(?, union_by_name = false, "
    "hive_partitioning = false, filename = '_file') GROUP BY ALL"
)
_DELIVERIES = pa.schema(
    [
        ("_file", pa.string()),
        ("_period", pa.string()),
        ("_delivery_id", pa.string()),
        ("n", pa.int64()),
    ]
)
_QUARANTINED = pa.schema([("_file", pa.string()), ("_delivery_id", pa.string()), ("n", pa.int64())])
_CURATED_QUERY = (
    "SELECT _file, _period, _delivery_id, count(*) AS n FROM read_parquet(?, "
    "union_by_name = true, hive_partitioning = false, filename = '_file') GROUP BY ALL"
)
# A plain curated view, as the catalog makes one (`catalog._source` with `MONTH_OF_PERIOD`).
_PLAIN_VIEW = re.compile(
    r"CREATE VIEW curated\.\w+ AS SELECT \*, "
    + re.escape(MONTH_OF_PERIOD)
    + r" FROM read_parquet\('(?P<files>[^']*)', \(union_by_name = true\), "
    r"\(hive_partitioning = false\)\);"
)


def _kept(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    cache: Path | None,
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
    known, kept = _load(cache / f"{kind}.parquet") if cache else ({}, None)
    if kept is not None and not set(empty.names) <= set(kept.schema.names):
        known, kept = {}, None  # (kept by a version that kept less of each file): read all
    fresh = sorted(k for k, stamp in files.items() if known.get(k) != stamp)
    unchanged = sorted(k for k, stamp in files.items() if known.get(k) == stamp)
    parts = []
    if kept is not None and len(unchanged) == len(known):
        parts.append(kept)  # (every file it holds still there as it was: all of its rows)
    elif kept is not None and unchanged:
        parts.append(_rows_of_files(con, kept, unchanged))
    if fresh:
        parts.append(_read(con, lake, query, fresh))
        if parts[0].schema != parts[-1].schema:  # (kept by another DuckDB, say): read all
            fresh, parts = sorted(files), [_read(con, lake, query, sorted(files))]
    if not parts:
        return pa.Table.from_batches([], empty)
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if cache and (fresh or len(unchanged) != len(known)):
        now = time.time_ns()
        settled = {k: stamp for k, stamp in files.items() if stamp[1] < now - SETTLED_NS}
        rows = table if len(settled) == len(files) else _rows_of_files(con, table, sorted(settled))
        _save(cache / f"{kind}.parquet", settled, rows)
    return table


def _read(con: duckdb.DuckDBPyConnection, lake: Lake, query: str, keys: list[str]) -> pa.Table:
    """`query` over the files `keys`, each row's `_file` its key."""
    read = con.sql(query, params=[[lake.url_of(k) for k in keys]]).to_arrow_table()
    prefix = lake.url_of("")
    names = [f.removeprefix(prefix) for f in read.column("_file").to_pylist()]
    return read.set_column(read.schema.get_field_index("_file"), "_file", pa.array(names))


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
    nothing for a cache missing, unreadable, or of another version (of this module's or
    DuckDB's, which read the rows it holds)."""
    try:
        table = pq.ParquetFile(path).read()
        meta = json.loads(table.schema.metadata[_META])
        if meta["version"] != CACHE_VERSION or meta.get("duckdb") != duckdb.__version__:
            return {}, None
        files = {k: (int(s), int(t)) for k, (s, t) in meta["files"].items()}
        return files, table.replace_schema_metadata(None)
    except Exception:  # (a cache is only ever a shortcut: read the files instead)
        return {}, None


def _save(path: Path, files: dict[str, tuple[int, int]], rows: pa.Table) -> None:
    """Keep `rows` (those of `files`) at `path`, whole or not at all: written aside, then
    moved in, so two runs at once leave one of their caches, each right."""
    meta = json.dumps({"version": CACHE_VERSION, "duckdb": duckdb.__version__, "files": files})
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}")
        pq.write_table(rows.replace_schema_metadata({_META: meta}), aside)
        os.replace(aside, path)


_META = b"datashare.lake_records_cache"
