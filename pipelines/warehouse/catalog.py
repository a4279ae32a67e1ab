"""The warehouse: `warehouse.duckdb`, a catalog of views over the lake.

It holds no data of its own, only views (with the contracts' descriptions as comments)
over the lake's Parquet files, so it can always be rebuilt from the lake. It is built as
a new file and renamed into place: an analyst with the old file open keeps reading it,
and never blocks a run.

Over a folder lake, any DuckDB client reads it as it is. Over an S3 lake the views read
`s3://` paths: open it with `connect()` below (which lets DuckDB read S3 through pyarrow),
or from a DuckDB client that has the httpfs extension and S3 credentials.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.governance.audit_log import AUDIT_LOG_SQL, EXPORT_SCHEMA
from pipelines.governance.breach_register import BREACH_EVENT_SCHEMA
from pipelines.governance.views import (
    BREACH_COMMENTS,
    DELIVERIES_SQL,
    GOVERNANCE_COLUMN_COMMENTS,
    clause_table,
    create_breach_views,
    parts_table,
    reading_once,
)
from pipelines.lake.mart_files import mart_keys, migrate_mart_files
from pipelines.lake.object_store import let_duckdb_read_s3
from pipelines.lake.provenance import MART_SOURCES_PATTERN
from pipelines.lake.register import BREACH_SCHEMA, DELIVERY_EVENT_SCHEMA
from pipelines.lake.retention import ERASURE_SCHEMA
from pipelines.lake.store import Lake
from pipelines.warehouse.reference import MAPPINGS_DIR, create_reference
from schemas.contract import Contract

SCHEMAS = ("curated", "oversight", "governance")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(path: Path | str) -> duckdb.DuckDBPyConnection:
    """Open `warehouse.duckdb` read-only, able to read the lake it catalogs, wherever it is."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        make_lake_readable(con)
    except Exception:
        con.close()
        raise
    return con


def make_lake_readable(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> None:
    """Let `con` read the lake behind the warehouse (attached as `catalog`, if attached)."""
    table = f"{catalog}.governance.catalog" if catalog else "governance.catalog"
    try:
        # fetchall: DuckDB 2.0 blocks the connection while a result is left unfinished.
        ((location,),) = con.execute(f"SELECT lake FROM {table}").fetchall()
    except duckdb.CatalogException:
        return  # a warehouse built before the catalog table: a folder lake
    if location.startswith("s3://"):
        let_duckdb_read_s3(con)


def _source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    lake: Lake,
    pattern: str,
    schema: pa.Schema,
    distinct: bool = False,
    union: bool = False,
    extra: str = "",
) -> str:
    """A view over the files matching `pattern`, or an empty typed table if there are none:
    which it made, "VIEW" or "TABLE" (as `_comment` takes it).

    `distinct`: each row once, for records that compaction can briefly show twice.
    `union`: the files' columns may differ (curated months under different contract
    versions), so DuckDB matches them by name; that means reading every file's footer
    whenever the view is bound, which is slow over S3. Governance records all have the
    schema this code gives them, so their views read the first footer only; a change to
    one of those schemas must rewrite the old files.
    `extra`: more columns, as SQL (`expr AS name, ...`), after the files' own.
    """
    more = f", {extra}" if extra else ""
    if lake.glob(pattern):
        glob = _quote(lake.url_of(pattern))
        select = ("SELECT DISTINCT *" if distinct else "SELECT *") + more
        by_name = "true" if union else "false"
        # No hive partitioning: the lake's `contract=`/`period=` folders are not columns the
        # contract lists, and must not appear as if they were.
        con.execute(
            f"CREATE VIEW {name} AS {select} FROM read_parquet({glob}, "
            f"union_by_name={by_name}, hive_partitioning=false)"
        )
        return "VIEW"
    con.register("_empty", pa.Table.from_batches([], schema))
    con.execute(f"CREATE TABLE {name} AS SELECT *{more} FROM _empty")
    con.unregister("_empty")
    return "TABLE"


def _comment(
    con: duckdb.DuckDBPyConnection,
    target: str,
    text: str,
    column: str | None = None,
    kind: str = "VIEW",
) -> None:
    """Comment on `target` (a `kind`: "VIEW" or "TABLE", as its maker says), or on its
    `column`: at once, or, inside `_comments_at_end(con)`, when it ends. The kind is the
    caller's, not asked of DuckDB: a `duckdb_views()` query per comment was 41 queries and
    a tenth of a build's CPU."""
    name = f"{target}.{column}" if column else target
    statement = f"COMMENT ON {'COLUMN' if column else kind} {name} IS {_quote(text)}"
    if id(con) in _PENDING:
        _PENDING[id(con)].append(statement)
    else:
        con.execute(statement)


# Per connection inside `_comments_at_end`, the comments it is to make when that ends.
_PENDING: dict[int, list[str]] = {}


@contextmanager
def _comments_at_end(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """`_comment`s on `con` made when the block ends, all in one `execute`: ~550 a build,
    each ~0.3 ms of CPU as a statement of its own and 15% less as one of a script (600
    comments on views, alternated ten times: 186 -> 160 ms). Nothing the block does reads
    a comment; if it fails, none is made."""
    _PENDING[id(con)] = []
    try:
        yield
        statements = _PENDING[id(con)]
        if statements:
            # A comment has no query to optimise, yet each statement ran the optimiser's
            # rules: off for these, the 600 comments above cost 124 -> 90 ms.
            con.execute("SET enable_optimizer = false")
            try:
                con.execute(";\n".join(statements))
            finally:
                con.execute("RESET enable_optimizer")
    finally:
        _PENDING.pop(id(con), None)


LINEAGE_COMMENTS = {
    "_delivery_id": "SHA-256 of the delivered file this row came from.",
    "_source_row": "Data row number of this row in the delivered file, from 1.",
    "_period": "The month (YYYY-MM, text) the delivery is for; a quarter or a year is named "
    "by its first month.",
}
# One type for months: a DATE, the month's first day, as the marts' `month` and the
# contracts' own month columns are stored. Curated rows keep the text `_period` (YYYY-MM, the
# lake's folder and the register's key), so queries written on it keep working; the views add
# `_month`, the same month as a DATE. It is the warehouse's, not the Parquet files' (the
# curated asset's column schema lists those, from LINEAGE_COMMENTS above).
MONTH_COLUMN = "_month"
MONTH_COMMENT = (
    "The month the delivery is for, as a DATE (its first day): _period as the type the "
    "oversight marts' month column has, to join or filter on."
)
MONTH_OF_PERIOD = f"CAST(strptime(_period, '%Y-%m') AS DATE) AS {MONTH_COLUMN}"


def latest_view(target: str, source: str, key: tuple[str, ...], snapshot_column: str) -> str:
    """The view of the latest snapshot of each record of `source`: per `key`, the row with
    the latest `snapshot_column` (then of the latest delivery month, then the first row of
    the file, so that the pick never depends on the order DuckDB reads the files in)."""
    order = [f"{snapshot_column} DESC NULLS LAST", "_period DESC", "_delivery_id", "_source_row"]
    if snapshot_column == "_period":
        order.remove("_period DESC")
    return f"""
        CREATE VIEW {target} AS
        SELECT * FROM {source}
        QUALIFY row_number() OVER (PARTITION BY {", ".join(key)} ORDER BY {", ".join(order)}) = 1
        """


def latest_comment(contract: Contract) -> str:
    """The `<contract>_latest` view's comment: what one row is."""
    assert contract.snapshots
    key = ", ".join(contract.snapshots.key)
    return (
        f"The latest snapshot of each record of curated.{contract.name}: one row per {key}, "
        f"the one with the latest {contract.snapshots.snapshot_column}. Count records here; "
        f"curated.{contract.name} has every snapshot delivered."
    )


def curated_comment(contract: Contract) -> str:
    """The curated view's comment. A catalog whose view has another comment is rebuilt (see
    `catalog_shows`), so a change of how the view picks its rows changes the comment too."""
    text = f"{contract.title} Contract {contract.name} v{contract.version}."
    if contract.layout:
        name = contract.layout.period_name
        text += (
            f" Each {name} from the release reaching the latest {name} (then the later "
            f"release period); every release is in {contract.name}_releases."
        )
    if contract.snapshots:
        key = ", ".join(contract.snapshots.key)
        text += (
            f" Every snapshot delivered of each record ({key}): count records in "
            f"{contract.name}_latest, the latest snapshot of each."
        )
    return text


# The catalog objects a delivery's publication can add files under.
_PUBLISHED_INTO = ("governance.delivery_events", "governance.breach_records",
                   "governance.quarantine_history")  # fmt: skip


def catalog_shows(path: Path, lake: Lake, contract: Contract) -> bool:
    """True when the catalog at `path` already shows whatever the lake holds for `contract`.

    Its views read the lake's files by pattern, so a newly published month appears without
    a rebuild. A rebuild is needed only for a stand-in empty table (there were no files
    when it was built), a column or contract version the view does not have yet, or
    another lake. Checking costs a few milliseconds; a rebuild grows with the lake.
    """
    if not path.exists():
        return False
    from pipelines.validation.row_validation import (
        curated_schema,  # pandera and polars: not at start-up
    )

    target = f"{contract.name}_releases" if contract.layout else contract.name
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            ((location,),) = con.execute("SELECT lake FROM governance.catalog").fetchall()
            views = {
                f"{schema}.{name}": comment
                for schema, name, comment in con.execute(
                    "SELECT schema_name, view_name, comment FROM duckdb_views() "
                    "WHERE schema_name IN ('curated', 'governance')"
                ).fetchall()
            }
            columns = {
                name
                for (name,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() "
                    "WHERE schema_name = 'curated' AND table_name = ?",
                    [target],
                ).fetchall()
            }
    except duckdb.Error:
        return False
    return (
        location == lake.url
        and views.get(f"curated.{contract.name}") == curated_comment(contract)
        and f"curated.{target}" in views
        and all(name in views for name in _PUBLISHED_INTO)
        # A catalog built before `_month` and the `_latest` views is rebuilt.
        and {*curated_schema(contract).names, MONTH_COLUMN} <= columns
        and (not contract.snapshots or f"curated.{contract.name}_latest" in views)
    )


def curated_pattern(contract: Contract) -> str:
    """The files the curated view of `contract` reads: every published month's."""
    return f"curated/contract={contract.name}/period=*/data.parquet"


# The governance views over the lake's records, and the files each reads.
GOVERNANCE_SOURCES = {
    "governance.delivery_events": "governance/deliveries/contract=*/*.parquet",
    "governance.breach_records": "governance/breaches/contract=*/period=*/*.parquet",
    "governance.breach_events": "governance/breach_events/contract=*/*.parquet",
    "governance.erasures": "governance/erasures/contract=*/*.parquet",
    "governance.exports": "governance/exports/contract=*/*.parquet",
    # The analysts' copy: classified fields withheld (the clear copy is owner-only).
    "governance.quarantine_history": "quarantine_masked/contract=*/period=*/*.parquet",
    "governance.mart_sources_history": MART_SOURCES_PATTERN,
}

# The code a catalog is made by: the catalog, its reference tables, the governance views,
# the lake's record schemas, the contract model and the curated schemas.
_PACKAGES = Path(__file__).resolve().parents[1]
_BUILT_BY = (
    sorted((_PACKAGES / "warehouse").glob("*.py"))
    + sorted((_PACKAGES / "governance").glob("*.py"))
    + sorted((_PACKAGES / "lake").glob("*.py"))
    + sorted((_PACKAGES.parent / "schemas").glob("*.py"))
    + [_PACKAGES / "validation" / "row_validation.py"]
)
BUILT_FROM_COMMENT = (
    "A digest of what this catalog was built from besides the lake's rows: the lake, the "
    "contracts, the marts' mappings, the code that builds it, and which of the lake's "
    "record sets had files. A run rebuilds the catalog only when this changes."
)


def built_from(
    lake: Lake, contracts: dict[str, Contract], without: frozenset[str] = frozenset()
) -> str:
    """A digest of everything a catalog of `lake` would be built from now, except the rows.

    The views read the lake's files by pattern, so a month published, a record written or
    a mart recomputed appears in the catalog as it is. What does need a new catalog is
    here: another lake, a contract, mapping or line of the code that changed, DuckDB's
    version, and a record set that had no files (so the catalog has an empty table in its
    place) and has some now. A few milliseconds: a glob per set, and the files read.
    `without`: patterns taken as having no files (the digest of a catalog built before
    they had any).
    """
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        for part in parts:
            digest.update(part if isinstance(part, bytes) else str(part).encode())
            digest.update(b"\0")

    add("lake", lake.url, "duckdb", duckdb.__version__)
    for file in _BUILT_BY:
        add(file.relative_to(_PACKAGES.parent), file.read_bytes())
    for name, contract in sorted(contracts.items()):
        # The file, and the contract as given (a caller may pass one changed in memory).
        add("contract", name, contract.path.read_bytes(), repr(contract))
    for file in sorted(MAPPINGS_DIR.glob("*.yaml")):
        add("mapping", file.name, file.read_bytes())
    patterns = {curated_pattern(c): c.name for c in contracts.values()}
    patterns.update({pattern: name for name, pattern in GOVERNANCE_SOURCES.items()})
    for pattern in sorted(patterns):
        add("files", pattern, pattern not in without and bool(lake.glob(pattern)))
    return digest.hexdigest()


def catalog_current(
    path: Path,
    lake: Lake,
    contracts: dict[str, Contract],
    marts: dict[str, tuple[str, pa.Schema]] | None = None,
) -> bool:
    """True when the catalog at `path` already is what `build_warehouse` would build now.

    It was built from the same lake, contracts, mappings and code, when the same record
    sets had files (`built_from`), and it has a view over each of `marts` (name -> the
    file's location and its schema, as just written) with that file's comments and
    columns. A run then leaves it as it is: rebuilding it (a second or more, growing with
    the lake) would make the same catalog. A catalog built before `built_from` is not.
    """
    if not path.exists():
        return False
    want = built_from(lake, contracts)
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            ((found,),) = con.execute("SELECT built_from FROM governance.catalog").fetchall()
            if found != want:
                return False
            if not marts:
                return True
            views, columns = _oversight_catalog(con)
    except duckdb.Error:
        return False
    return all(
        _shows_mart(views.get(name, []), columns.get(name, {}), where, schema)
        for name, (where, schema) in marts.items()
    )


def _oversight_catalog(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, list[tuple[str, str | None]]], dict[str, dict[str, str | None]]]:
    """The oversight views (name -> each view of that name's SQL and comment) and their
    columns (name -> column -> comment), in one query each: `duckdb_columns()` binds every
    view, reading its mart's file, however few the query asks about (asked per mart, that
    was half a second of a run's eleven marts)."""
    views: dict[str, list[tuple[str, str | None]]] = {}
    for name, sql, comment in con.execute(
        "SELECT view_name, sql, comment FROM duckdb_views() WHERE schema_name = 'oversight'"
    ).fetchall():
        views.setdefault(name, []).append((sql, comment))
    columns: dict[str, dict[str, str | None]] = {}
    for table, column, comment in con.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() "
        "WHERE schema_name = 'oversight'"
    ).fetchall():
        columns.setdefault(table, {})[column] = comment
    return views, columns


def _shows_mart(
    views: list[tuple[str, str | None]],
    columns: dict[str, str | None],
    where: str,
    schema: pa.Schema,
) -> bool:
    """Whether the oversight view of a mart (`views`: each view of its name, with its
    `columns`) reads the file at `where`, with its comments."""
    if len(views) != 1:
        return False
    ((sql, comment),) = views
    metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    wanted = set(schema.names)
    if "period" in wanted and "month" not in wanted:
        wanted.add("month")  # the view adds the month of a mart by period (`_oversight`)
    return (
        _quote(where) in sql
        and comment == metadata.get("comment")
        and set(columns) == wanted
        and all(
            columns[column] == metadata[f"comment:{column}"]
            for column in schema.names
            if f"comment:{column}" in metadata
        )
    )


def newest_release_view(target: str, releases: str, period_name: str) -> str:
    """The view of a wide layout's figures: for each period, those of the newest release
    that carries it.

    Each release re-sends earlier periods, revised. Which release is newest is read from
    the data: the one reaching the latest period, and of two reaching the same one, the one
    delivered for the later period (`_period`). A file filed under a later period than the
    figures it carries (an old release sent again) therefore never replaces the figures of
    a release that reaches further, and neither does the order in which files arrived.
    """
    return f"""
        CREATE VIEW {target} AS
        WITH reach AS (
            SELECT _period, max({period_name}) AS _reaches FROM {releases} GROUP BY _period
        )
        SELECT r.* FROM {releases} r JOIN reach USING (_period)
        QUALIFY dense_rank() OVER (
            PARTITION BY r.{period_name} ORDER BY reach._reaches DESC, r._period DESC) = 1
        """


@contextmanager
def _replaced_whole(path: Path) -> Iterator[Path]:
    """A file beside `path` to write a catalog in, moved over `path` once written: an
    analyst's connection opens the old catalog or the new one, never half of one. If the
    writing fails, the file (and its WAL) goes and `path` stays as it was."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)


def build_warehouse(lake: Lake, contracts: dict[str, Contract], path: Path) -> Path:
    """Write a fresh catalog of the lake to `path`, atomically."""
    # A lake an earlier version wrote keeps each mart as one file: moved into its folder
    # first, so that the views below read where this version writes (lake/mart_files.py).
    migrate_mart_files(lake)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _replaced_whole(path) as tmp:
        con = lake.readable_by(duckdb.connect(str(tmp)))
        try:
            con.execute("BEGIN")  # one commit for the whole catalog, not one per comment
            # Nothing the build runs is a query worth optimising (it reads no rows), and the
            # optimiser's rules ran for each of its ~650 statements.
            con.execute("SET enable_optimizer = false")
            with _comments_at_end(con):
                _make_catalog(con, lake, contracts)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return path


def _make_catalog(con: duckdb.DuckDBPyConnection, lake: Lake, contracts: dict[str, Contract]):
    """What `build_warehouse` makes in `con`: every schema, view and table, with comments."""
    # The curated schemas bring in pandera and polars: imported here, so that reading the
    # warehouse (`connect`, a run with nothing new) does not pay for them at start-up.
    from pipelines.validation.row_validation import curated_schema

    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute(
        "CREATE TABLE governance.catalog AS SELECT ? AS lake, now() AS built_at, ? AS built_from",
        [lake.url, built_from(lake, contracts)],
    )
    _comment(
        con,
        "governance.catalog",
        "Where this catalog's views read from (the lake), and when it was built.",
        kind="TABLE",
    )
    _comment(con, "governance.catalog", "The lake: a folder or s3://bucket/prefix.", "lake")
    _comment(con, "governance.catalog", "When this catalog was built.", "built_at")
    _comment(con, "governance.catalog", BUILT_FROM_COMMENT, "built_from")
    for contract in contracts.values():
        target = f"curated.{contract.name}"
        pattern = curated_pattern(contract)
        schema = curated_schema(contract)
        kind = "VIEW"
        if contract.layout:
            releases = f"{target}_releases"
            made = _source(con, releases, lake, pattern, schema, union=True, extra=MONTH_OF_PERIOD)
            _comment(
                con,
                releases,
                f"Every release of {contract.name}, as delivered: one row per figure "
                f"of each release (a {contract.layout.period_name} appears once per "
                f"release carrying it); {contract.name} keeps the newest release's.",
                kind=made,
            )
            con.execute(newest_release_view(target, releases, contract.layout.period_name))
        else:
            kind = _source(con, target, lake, pattern, schema, union=True, extra=MONTH_OF_PERIOD)
        _comment(con, target, curated_comment(contract), kind=kind)
        views = [target, f"{target}_releases"] if contract.layout else [target]
        if contract.snapshots:
            latest = f"{target}_latest"
            snap = contract.snapshots
            con.execute(latest_view(latest, target, snap.key, snap.snapshot_column))
            _comment(con, latest, latest_comment(contract))
            views.append(latest)
        for view in views:
            _comment_curated_columns(con, view, contract)
    _oversight(con, lake)
    # The mappings, targets and agreed values the marts' SQL files read, so that
    # `duckdb warehouse.duckdb < pipelines/oversight/marts/<mart>.sql` runs as it is.
    create_reference(con, contracts)
    _governance(con, lake, contracts)


def show_marts(lake: Lake, contracts: dict[str, Contract], path: Path) -> Path:
    """Make the catalog at `path` what `build_warehouse` would build now, after the marts
    were (re)computed: by a rebuild, or, when only the marts' part can differ, by a copy
    of it with that part made again. Either way the same catalog, atomically replaced.

    Computing the marts writes their files and their provenance, nothing else: so a
    catalog built from everything else as it is now (`built_from`, the provenance's
    record set aside) needs only its oversight views, and, if this was the provenance's
    first computation, its `governance.mart_sources` views, made again. That is a tenth
    of a rebuild (a copy of the file, eleven views with their comments): the first run of
    a new home (its catalog built just before the marts, to compute them from) and of a
    backfill paid for two whole builds. Anything else changed (the code, a contract, a
    record set that had no files), a catalog left half written (its WAL file), or none
    at all: rebuilt (tests/test_warehouse_docs.py compares both ways' catalogs).
    """
    found = _stored_built_from(path)
    now = built_from(lake, contracts)
    provenance = frozenset({GOVERNANCE_SOURCES["governance.mart_sources_history"]})
    first_provenance = found != now and found == built_from(lake, contracts, provenance)
    if found is None or (found != now and not first_provenance):
        return build_warehouse(lake, contracts, path)
    migrate_mart_files(lake)  # as a build does first (none to move once built by this one)
    with _replaced_whole(path) as tmp:
        shutil.copyfile(path, tmp)
        con = lake.readable_by(duckdb.connect(str(tmp)))
        try:
            con.execute("BEGIN")
            for (name,) in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE schema_name = 'oversight' "
                "AND database_name = current_database()"
            ).fetchall():
                con.execute(f"DROP VIEW oversight.{name}")
            with _comments_at_end(con):
                _oversight(con, lake)
                if first_provenance:  # an empty table until now: the views over its files
                    con.execute("DROP VIEW governance.mart_sources")
                    con.execute("DROP TABLE governance.mart_sources_history")
                    _mart_sources(con, lake)
            con.execute("UPDATE governance.catalog SET built_at = now(), built_from = ?", [now])
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return path


def _stored_built_from(path: Path) -> str | None:
    """The `built_from` digest of the catalog at `path`; None if there is none to amend
    (no file, one left with a WAL file, one built before the digest, or unreadable)."""
    if not path.exists() or Path(f"{path}.wal").exists():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            ((found,),) = con.execute("SELECT built_from FROM governance.catalog").fetchall()
    except (duckdb.Error, ValueError):
        return None
    return found


def _comment_curated_columns(con: duckdb.DuckDBPyConnection, view: str, contract: Contract):
    """Each column of a curated view: the contract's description, or the lineage's."""
    for col in contract.columns:
        _comment(con, view, col.description, col.name)
    if contract.layout:
        layout = contract.layout
        _comment(con, view, layout.period_description, layout.period_name)
        _comment(con, view, layout.value_description, layout.value_name)
    for col, text in {**LINEAGE_COMMENTS, MONTH_COLUMN: MONTH_COMMENT}.items():
        _comment(con, view, text, col)


def _oversight(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """A view per oversight mart (`oversight/<mart>/data.parquet`), with its column comments.

    A mart's Parquet file carries its table and column descriptions as key-value metadata
    (`comment` and `comment:<column>`), written beside the code that defines the measure.
    A mart by text `period` (YYYY-MM) and no `month` also gets `month`, the same month as a
    DATE, as every other mart and curated view (`_month`) has it.
    """
    for mart, key in mart_keys(lake).items():
        name = f"oversight.{mart}"
        schema = lake.parquet_file(key).schema_arrow
        month = "period" in schema.names and "month" not in schema.names
        extra = ", CAST(strptime(period, '%Y-%m') AS DATE) AS month" if month else ""
        con.execute(
            f"CREATE VIEW {name} AS SELECT *{extra} FROM read_parquet({_quote(lake.url_of(key))})"
        )
        if month:
            _comment(
                con,
                name,
                "The month of period, as a DATE (its first day), as the other marts' month.",
                "month",
            )
        metadata = schema.metadata or {}
        for key, value in metadata.items():
            key, text = key.decode(), value.decode()
            if key == "comment":
                _comment(con, name, text)
            elif key.startswith("comment:"):
                _comment(con, name, text, key.removeprefix("comment:"))


def _governance(con: duckdb.DuckDBPyConnection, lake: Lake, contracts: dict[str, Contract]) -> None:
    from pipelines.validation.row_validation import QUARANTINE_SCHEMA

    kind = _source(
        con,
        "governance.delivery_events",
        lake,
        GOVERNANCE_SOURCES["governance.delivery_events"],
        DELIVERY_EVENT_SCHEMA,
        distinct=True,
    )
    _comment(
        con, "governance.delivery_events", "Every event in every delivery's history.", kind=kind
    )
    con.execute(reading_once(DELIVERIES_SQL))
    _comment(
        con,
        "governance.deliveries",
        "One row per delivery (its current status), plus one per duplicate sighting.",
    )
    kind = _source(
        con,
        "governance.breach_records",
        lake,
        GOVERNANCE_SOURCES["governance.breach_records"],
        BREACH_SCHEMA,
    )
    _comment(
        con, "governance.breach_records", "The breach files as validation wrote them.", kind=kind
    )
    con.register("_clauses", clause_table(contracts))
    con.execute("CREATE TABLE governance.clauses AS SELECT * FROM _clauses")
    con.unregister("_clauses")
    con.register("_parts", parts_table(contracts))
    con.execute("CREATE TABLE governance.month_parts AS SELECT * FROM _parts")
    con.unregister("_parts")
    _comment(
        con,
        "governance.month_parts",
        "Contracts whose months come in parts (deliverySchedule.filesPerPeriod: parts): a "
        "part is replaced only by a later file of the same name.",
        kind="TABLE",
    )
    _comment(
        con,
        "governance.clauses",
        "How a rule finds the clause of the agreement page (datashare contracts show) it "
        "breaks: the first row by rank whose pattern matches (exact, prefix or any).",
        kind="TABLE",
    )
    kind = _source(
        con,
        "governance.breach_events",
        lake,
        GOVERNANCE_SOURCES["governance.breach_events"],
        BREACH_EVENT_SCHEMA,
    )
    _comment(con, "governance.breach_events", "Each step of each breach's lifecycle.", kind=kind)
    create_breach_views(con, read_once=True)
    for name, text in BREACH_COMMENTS.items():
        _comment(con, name, text)
    for name, schema, text in [
        ("erasures", ERASURE_SCHEMA,
         "Each file erased at the end of its retention period, under which clause."),
        ("exports", EXPORT_SCHEMA,
         "Each export out of the pipeline (notices to the force), by whom and why."),
    ]:  # fmt: skip
        name = f"governance.{name}"
        kind = _source(con, name, lake, GOVERNANCE_SOURCES[name], schema)
        _comment(con, name, text, kind=kind)
    con.execute(reading_once(AUDIT_LOG_SQL))
    _comment(
        con,
        "governance.audit_log",
        "Every collection, publication, breach-status change, erasure and export: "
        "when, by which run or person, and why.",
    )
    kind = _source(
        con,
        "governance.quarantine_history",
        lake,
        GOVERNANCE_SOURCES["governance.quarantine_history"],
        QUARANTINE_SCHEMA,
    )
    _comment(
        con,
        "governance.quarantine_history",
        "Every row ever held back, including those of deliveries since superseded; "
        "classified fields read [withheld].",
        kind=kind,
    )
    # What an analyst means by "the quarantine": rows of the deliveries that stand now.
    con.execute(
        """
        CREATE VIEW governance.quarantine AS
        SELECT q.* FROM governance.quarantine_history q
        WHERE q._delivery_id IN (
            SELECT delivery_id FROM governance.deliveries
            WHERE status IN ('validated', 'published', 'held'))
        """
    )
    _comment(
        con,
        "governance.quarantine",
        "Rows of the deliveries that stand now (published, held back, or awaiting "
        "publication) kept out of the curated tables, with every rule each one broke. "
        "quarantine_history also has the rows of deliveries since superseded.",
    )
    _mart_sources(con, lake)
    # The governance objects' columns in one query: `duckdb_columns()` costs the same however
    # few it is asked about (one query per object was 15 of them, 2 ms each). Every column
    # comment of theirs is set here, once (GOVERNANCE_COLUMN_COMMENTS has the deliveries' and
    # breaches' own): a statement costs ~0.2 ms whatever it does.
    columns: dict[str, list[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'governance' "
        "ORDER BY table_name, column_index"
    ).fetchall():
        columns.setdefault(f"governance.{table}", []).append(column)
    for name, comments in GOVERNANCE_COLUMN_COMMENTS.items():
        for column in columns.get(name, []):
            if column in comments:
                _comment(con, name, comments[column], column)


def _mart_sources(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """The provenance of the marts (`pipelines/lake/provenance.py`): every computation, and the
    latest of each mart."""
    from pipelines.lake import provenance as p

    history = "governance.mart_sources_history"
    kind = _source(con, history, lake, GOVERNANCE_SOURCES[history], p.MART_SOURCES_SCHEMA)
    _comment(con, history, p.MART_SOURCES_HISTORY_COMMENT, kind=kind)
    con.execute(p.MART_SOURCES_VIEW_SQL)
    _comment(con, "governance.mart_sources", p.MART_SOURCES_COMMENT)
    for view in (history, "governance.mart_sources"):
        for column, text in p.MART_SOURCES_COLUMN_COMMENTS.items():
            _comment(con, view, text, column)


def has_breach_views(warehouse: Path) -> bool:
    """Whether the warehouse exists with the breach views the review page and the desk read
    (one built by an older version lacks `governance.breach_history`)."""
    if not warehouse.exists():
        return False
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (found,) = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'governance' "
            "AND view_name = 'breach_history'"
        ).fetchone()
    return bool(found)
