"""Oversight marts: the performance framework's measures, computed from the curated tables.

Each mart is two files an analyst owns, in `pipelines/oversight/marts/` (the way dbt keeps
models): `<mart>.sql`, a query that runs as it is in DuckDB against the warehouse (it reads
the `curated.*` views and the reference schema `oversight_ref`: the mappings, targets and
agreed values, `pipelines/warehouse/reference.py`), and `<mart>.yaml`, its definition
(numerator, denominator, grain, source fields, caveats), column comments, suppression and
agreed categories (`pipelines/oversight/definition.py` reads it).

This module runs them: `compute_mart` runs a mart's SQL, with the runner's part added
(`finish_sql`: small counts withheld, columns cast, rows ordered), in DuckDB against a
read-only view of `warehouse.duckdb`; `write_mart` writes the result to
`lake/oversight/<mart>/data.parquet` with the definition and the column comments as Parquet
key-value metadata (`comment`, `comment:<column>`), which the warehouse turns into the
comments of view `oversight.<mart>`. A mart whose YAML declares `incremental` is
recomputed only for the months whose curated rows changed since its file was written
(and the 12-month windows that hold them), when that gives what a full recompute would:
the plan is `incremental_marts.py`'s. The marts, the mappings and a mart's whole query are
`mart_queries.py`'s (importable from here too).

Rules every mart follows:
- A curated table with no rows (a contract with no deliveries yet) gives an empty mart with
  all its columns, never an error.
- Records whose ethnicity is blank ("Not recorded"), declined ("Not stated") or a value the
  mapping does not know ("Not mapped") are counted and shown as groups of their own, never
  dropped. The mappings are data: `pipelines/oversight/mappings/*.yaml`.
- A category read straight from a delivered column (a borough, a crime category, a power, a
  tactic) is one of the values the contract agrees for it, or "Not an agreed value": values
  the agreement keeps with a breach are counted in that one group, never as categories of
  their own (`pipelines/validation/agreed_values.py`; each mart lists them in `agreed`).
- Disclosure control: in a mart meant for publication, a count from 1 up to one below the
  mart's threshold is withheld: the count and every figure derived from it are NULL (not
  zero) and the boolean column `<count>_suppressed` is true. Zero is shown as zero.
- Months are London months (Europe/London), first day of the month.

No Dagster here: the assets in `assets/oversight.py` only call `write_mart`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lake.mart_files import mart_key
from pipelines.lake.provenance import (
    new_computation,
    record_mart_sources,
    sources_key,
)
from pipelines.lake.store import Lake
from pipelines.oversight.definition import Mart
from pipelines.oversight.incremental_marts import (
    COMPUTED_FROM,
    incremental_table,
    own_connection,
    read_changed_sources,
    release_connection,
)
from pipelines.oversight.mart_queries import (
    MAPPINGS_DIR,
    MARTS,
    PACK_ORDER,
    Mappings,
    current_contracts,
    finish_sql,
    load_mappings,
    mart_sql,
    marts_reading,
    sql_string,
)
from pipelines.warehouse.catalog import make_lake_readable
from pipelines.warehouse.record_cache import cache_folder, kept_records, reads_lake
from pipelines.warehouse.reference import create_reference
from schemas.contract import Contract

# What callers import from here: the runner's own, and the marts, their mappings and their
# queries (`mart_queries.py`'s), where callers have always found them.
__all__ = [
    "MAPPINGS_DIR",
    "MARTS",
    "PACK_ORDER",
    "Mappings",
    "Mart",
    "WrittenMart",
    "compute_mart",
    "current_contracts",
    "finish_sql",
    "headline_figures",
    "latest_figures",
    "load_mappings",
    "mart_metadata",
    "mart_notes",
    "mart_sql",
    "marts_reading",
    "plain_value",
    "warehouse_connection",
    "write_mart",
    "write_marts",
]

# --- running ---------------------------------------------------------------------------


def _warehouse_objects(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str | None]]:
    """The attached warehouse's curated and governance tables and views: schema -> name ->
    the view's SQL (None for a table). One query: `information_schema.tables` per schema
    and `duckdb_views()` per record set read once were four, 12 ms of CPU; this is 4."""
    found: dict[str, dict[str, str | None]] = {"curated": {}, "governance": {}}
    for schema, name, sql in con.execute(
        "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = "
        "'warehouse' AND schema_name IN ('curated', 'governance') UNION ALL "
        "SELECT schema_name, table_name, NULL FROM duckdb_tables() WHERE database_name = "
        "'warehouse' AND schema_name IN ('curated', 'governance')"
    ).fetchall():
        found[schema][name] = sql
    return found


# DuckDB's own memory while it computes the marts. Left at its default (80% of the machine),
# the 2M-row month's stop-and-search marts took 400-650 MB on top of the run's ~530 MB, and
# the run peaked at 1.2 GB (issue 21's target: < 1 GB). Capped, the queries stay in memory
# up to this and then spill to a folder of their own: the run peaked at 0.8-0.95 GB, and the
# largest mart (stop_search_outcomes) took about a second longer under 450 MB than free.
# (preserve_insertion_order = false saved nothing here, and could reorder ties.)
MART_MEMORY_LIMIT = "450MB"


# The register's records each mart's provenance reads (`record_mart_sources`: one query per
# mart and contract, 13 for a month of stop and search). Over views, each query read every
# record file of the lake again, a cost that grows with the history; read once per
# connection instead, they cost a third less at 37 months, and the same records are read
# for every mart computed over it.
RECORDS_READ_ONCE = ("delivery_events", "breach_records")

# Per connection of this module's, the deliveries each contract's curated rows come from, as
# the marts' provenance records them (`record_mart_sources`): the three marts of a month of
# stop and search read them once, not three times.
_SOURCES: dict[int, dict[tuple, list[dict]]] = {}


@contextmanager
def warehouse_connection(
    warehouse: Path | str | duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract] | None = None,
    records_once: bool = False,
    lake: Lake | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection in which `curated.<table>` reads the warehouse, read-only.

    `warehouse.duckdb` is attached read-only to an in-memory database whose `curated`
    schema has a view per curated table. A table the warehouse lacks (a contract added
    since it was built) is an empty table of the contract's curated schema, so a mart over
    it is empty rather than an error. `governance.<name>` is the warehouse's, through the
    connection's search path (a `cursor()` of it has the default one). An open connection
    is used as it is.
    `records_once`: the register's records the marts' provenance reads
    (`RECORDS_READ_ONCE`) are read from the lake once, when the connection opens, for a
    connection that writes several marts; given the `lake` behind the warehouse, they are
    what `pipelines.warehouse.record_cache` keeps (the register's events as this process
    read them, each breach file as read once and kept while unchanged), not every record
    file of the lake read again (issue 21, history row: ~500 file opens at 94 months).
    """
    if isinstance(warehouse, duckdb.DuckDBPyConnection):
        # One of this function's own has the reference schema already: not asked again for
        # each mart it computes (23 `duckdb_schemas()` queries, 1 ms each, in a run's step).
        if (
            id(warehouse) not in _SOURCES
            and not warehouse.execute(
                "SELECT 1 FROM duckdb_schemas() WHERE schema_name = 'oversight_ref' "
                "AND database_name = current_database()"
            ).fetchall()
        ):
            create_reference(warehouse, contracts or current_contracts(), comments=False)
        yield warehouse
        return
    from pipelines.validation.row_validation import curated_schema  # pandera: not at start-up

    contracts = contracts or current_contracts()
    con = duckdb.connect()
    own_connection(con, lake, cache_folder(Path(warehouse), lake) if lake is not None else None)
    _SOURCES[id(con)] = {}
    # A spill folder of this connection's own: two runs' DuckDBs would share file names.
    spill = tempfile.mkdtemp(prefix="datashare-marts-")
    try:
        con.execute(f"SET temp_directory = {sql_string(spill)}")
        con.execute(f"SET memory_limit = '{MART_MEMORY_LIMIT}'")
        con.execute(f"ATTACH {sql_string(str(warehouse))} AS warehouse (READ_ONLY)")
        make_lake_readable(con, "warehouse")
        objects = _warehouse_objects(con)
        present, governance = set(objects["curated"]), set(objects["governance"])
        # Making the schemas, views and reference tables reads no rows, and the optimiser's
        # rules ran for each of those ~40 statements: off while they are made, on again
        # before anything is read.
        con.execute("SET enable_optimizer = false")
        con.execute("CREATE SCHEMA curated")
        con.execute("CREATE SCHEMA governance")
        # The reference schema's views are made over empty tables of the curated schemas
        # standing in for the curated views they read, which are put in after: making a
        # view binds it, and `key_field_counts` bound over the curated views opened every
        # month's file once per key field (issue 21, history row). A view is bound again
        # whenever it is read, over what its names are then. Each stand-in is a view over an
        # empty Arrow table, not a table copied from one: half the CPU (10 of them, 31 -> 15
        # ms), and nothing of it is left once the real view replaces it.
        standing_in = _stand_ins(contracts, present)
        for name, schema in standing_in.items():
            con.register(f"_stand_in_{name}", pa.Table.from_batches([], schema))
            con.execute(f"CREATE VIEW curated.{name} AS SELECT * FROM _stand_in_{name}")
        for name in sorted(present - set(standing_in)):
            con.execute(f"CREATE VIEW curated.{name} AS SELECT * FROM warehouse.curated.{name}")
        for contract in contracts.values():
            tables = [contract.name] + ([f"{contract.name}_releases"] if contract.layout else [])
            for name in tables:
                if name not in present:
                    con.register("_empty", pa.Table.from_batches([], curated_schema(contract)))
                    con.execute(f"CREATE TABLE curated.{name} AS SELECT * FROM _empty")
                    con.unregister("_empty")
        # The mappings, targets and agreed values the marts' SQL reads, from the current
        # files (a warehouse built earlier has its own copy, or none; this one counts).
        create_reference(con, contracts, comments=False)
        for name in sorted(standing_in):
            con.execute(f"DROP VIEW curated.{name}")
            con.unregister(f"_stand_in_{name}")
            con.execute(f"CREATE VIEW curated.{name} AS SELECT * FROM warehouse.curated.{name}")
        con.execute("RESET enable_optimizer")
        for name in sorted(governance):
            if not (records_once and name in RECORDS_READ_ONCE):
                continue
            if lake is not None and reads_lake(objects["governance"][name], lake):
                con.register("_records", kept_records(con, lake, Path(warehouse), name))
                con.execute(f"CREATE TABLE governance.{name} AS SELECT * FROM _records")
                con.unregister("_records")
            else:
                con.execute(
                    f"CREATE TABLE governance.{name} AS SELECT * FROM warehouse.governance.{name}"
                )
        # The warehouse's other governance views are read where they are: `governance.<name>`
        # is this database's (the records read once) if it has one, else the warehouse's. A
        # view made here over each (16) bound it, and so the warehouse's views under it and
        # the lake's files' footers, whether a mart read it or not: a fifth of the
        # connection's CPU. A view of the warehouse reads the warehouse's own, as before.
        if governance:
            con.execute("SET search_path = 'memory.main,memory.governance,warehouse.governance'")
        yield con
    finally:
        release_connection(con)
        _SOURCES.pop(id(con), None)
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _stand_ins(contracts: dict[str, Contract], present: set[str]) -> dict[str, pa.Schema]:
    """The curated views of `present` that the reference schema's views read (a contract's
    table, or its releases), each with its contract's curated schema: the stand-ins
    `warehouse_connection` makes them over."""
    from pipelines.validation.row_validation import curated_schema  # pandera: not at start-up

    found = {}
    for contract in contracts.values():
        for name in [contract.name] + ([f"{contract.name}_releases"] if contract.layout else []):
            if name in present:
                found[name] = curated_schema(contract)
    return found


def compute_mart(
    name: str,
    warehouse: Path | str | duckdb.DuckDBPyConnection,
    lake: Lake | None = None,
    contracts: dict[str, Contract] | None = None,
) -> pa.Table:
    """Compute one mart from the curated tables of `warehouse` (a path or a connection).

    The result has exactly the mart's output columns, typed, in order; it is empty (with
    those columns) when the curated tables it reads are. `lake` is accepted for symmetry
    with `write_mart` and is not read: the warehouse's views already point at the lake.
    """
    del lake
    mart = MARTS[name]
    contracts = contracts or current_contracts()
    sql = mart_sql(mart, contracts)
    with warehouse_connection(warehouse, contracts) as con:
        return con.sql(sql).to_arrow_table()


def mart_metadata(mart: Mart) -> dict[bytes, bytes]:
    """Parquet key-value metadata: the table comment, column comments, the definition."""
    metadata = {b"comment": mart.comment.encode()}
    for col in mart.output_columns:
        metadata[f"comment:{col.name}".encode()] = mart.column_comment(col).encode()
    definition = {
        "name": mart.name,
        "title": mart.title,
        "definition": mart.definition,
        "grain": mart.grain,
        "numerator": mart.numerator,
        "denominator": mart.denominator,
        "source_fields": list(mart.source_fields),
        "caveats": list(mart.caveats),
        "publication": mart.publication,
        "suppression_threshold": mart.threshold,
    }
    metadata[b"datashare:mart"] = json.dumps(definition).encode()
    return metadata


@dataclass(frozen=True)
class WrittenMart:
    mart: Mart
    path: str  # where it is in the lake, as people name it (a folder path or s3:// URL)
    table: pa.Table


def write_mart(
    name: str,
    warehouse: Path | str | duckdb.DuckDBPyConnection,
    lake: Lake,
    contracts: dict[str, Contract] | None = None,
) -> WrittenMart:
    """Compute a mart and write it to `lake/oversight/<name>/data.parquet`, atomically.

    A mart declared `incremental` is recomputed only for the months whose curated rows
    changed since its file was written, when that is safe
    (`incremental_marts.incremental_table`); the file then holds exactly what a full
    recompute would.
    """
    mart = MARTS[name]
    contracts = contracts or current_contracts()
    with warehouse_connection(warehouse, contracts) as con:
        table, computed_from, kept = incremental_table(mart, con, lake, contracts)
        if table is None:
            table = compute_mart(name, con, lake, contracts)
        # Provenance (issue 23): which deliveries' curated rows this computation read. Its
        # file's key is chosen now, so that the mart's record can name it: the next
        # computation takes the rows of the periods it did not change from there.
        computation = new_computation()
        metadata = mart_metadata(mart)
        if computed_from is not None:
            computed_from["sources_key"] = sources_key(name, computation)
            metadata[COMPUTED_FROM] = json.dumps(computed_from, sort_keys=True).encode()
        table = table.replace_schema_metadata(metadata)
        key = mart_key(name)
        lake.write_table(key, table)
        sources = {
            c: contracts[c].version for c in mart.source_contracts(contracts) if c in contracts
        }
        cache = _SOURCES.get(id(con))
        if kept is not None and cache is not None:
            read_changed_sources(con, contracts, sources, kept.changed, cache)
        record_mart_sources(
            lake,
            con,
            name,
            sources,
            cache=cache,
            computation=computation,
            previous=kept,
        )
    # The table as computed, without what the runner keeps for itself in the file.
    table = table.replace_schema_metadata(mart_metadata(mart))
    return WrittenMart(mart, lake.url_of(key), table)


def write_marts(
    warehouse: Path | str,
    lake: Lake,
    names: list[str] | None = None,
    contracts: dict[str, Contract] | None = None,
) -> list[WrittenMart]:
    """Compute and write several marts (default: all) over one warehouse connection."""
    contracts = contracts or current_contracts()
    with warehouse_connection(warehouse, contracts, records_once=True, lake=lake) as con:
        return [write_mart(name, con, lake, contracts) for name in (names or list(MARTS))]


@contextmanager
def _as_mart(
    table: pa.Table, con: duckdb.DuckDBPyConnection | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection in which `mart` reads `table`: `con` for a while when the caller has one
    open (the runner's: a DuckDB of its own cost 17 ms of CPU to open, two per mart a run
    writes), else an in-memory one of its own."""
    own = con is None
    con = duckdb.connect() if con is None else con
    try:
        con.register("mart", table)
        yield con
    finally:
        con.unregister("mart")
        if own:
            con.close()


def latest_figures(
    mart: Mart, table: pa.Table, limit: int = 40, con: duckdb.DuckDBPyConnection | None = None
) -> list[dict]:
    """The mart's latest figures (its `latest` query), as dicts. `con`: a connection to
    read them in (see `_as_mart`)."""
    with _as_mart(table, con) as reading:
        query = f"SELECT * FROM ({mart.latest}) LIMIT {limit}"
        return reading.sql(query).to_arrow_table().to_pylist()


def headline_figures(
    mart: Mart, table: pa.Table, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, object]:
    """One row of headline numbers for the mart (empty when it has no rows). `con`: a
    connection to read them in (see `_as_mart`)."""
    if mart.headline is None or table.num_rows == 0:
        return {}
    with _as_mart(table, con) as reading:
        rows = reading.sql(mart.headline).to_arrow_table().to_pylist()
    return {k: plain_value(v) for k, v in (rows[0] if rows else {}).items() if v is not None}


def plain_value(value: object) -> object:
    """A DuckDB HUGEINT sum arrives as a Decimal: give it back as an int (or a float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def mart_notes(
    mart: Mart,
    warehouse: Path | str | duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract] | None = None,
) -> dict[str, object]:
    """The figures the mart's caveats refer to (its `notes` queries)."""
    if not mart.notes:
        return {}
    with warehouse_connection(warehouse, contracts) as con:
        return {key: con.execute(sql).fetchall()[0][0] for key, sql in mart.notes.items()}
