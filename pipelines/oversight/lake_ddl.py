"""The statements that declare the lake's tables in another engine: Spark, Trino or Athena.

A platform team that reads the lake with its own engine needs each curated table and each
oversight mart declared over the lake's files, with their types and the contracts' column
comments. This module writes those statements from the same sources the warehouse uses:
the contracts (`curated_schema`, the Arrow schema every curated partition is written
with) and the marts' YAML (the columns the runner casts each mart to).

What the engines see, and how it differs from `warehouse.duckdb`:
- A curated table is the folder `curated/contract=<c>/`, Hive-partitioned by `period=<p>`.
  The engines read the partition folder as a column, `period` (text `YYYY-MM`), always
  equal to the file's own `_period`: it is declared, as the partition column must be, and
  its comment says so. Filter on `period` to read only the months you need.
- The warehouse's `_month` (the month as a DATE) is computed by its views, not stored:
  the engines have `period` and `_period` instead (`to_date(period, 'yyyy-MM')` in Spark).
- A wide-layout contract's table is `<c>_releases` (every release as delivered), as in the
  warehouse; the newest-release view and the `_latest` snapshot views are the warehouse's
  SQL and are not declared here.
- An oversight mart is a folder holding one file, `oversight/<mart>/data.parquet`, and
  every engine declares it as a table over the folder, not partitioned. A lake an earlier
  version wrote (one file per mart, `oversight/<mart>.parquet`) is moved to folders by this
  version's first run or warehouse build (`pipelines/lake/mart_files.py`); until then the
  script's header says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lake.mart_files import AREA, mart_folder, previous_mart_key
from pipelines.lake.store import Lake
from pipelines.oversight.definition import Mart
from schemas.contract import Contract

ENGINES = ("spark", "trino", "athena")
PARTITION = "period"
PARTITION_COMMENT = (
    "The lake's partition folder (period=YYYY-MM): the same month as _period, as text. "
    "Filter on it to read only those months' files."
)


@dataclass(frozen=True)
class LakeColumn:
    name: str
    type: pa.DataType
    comment: str


@dataclass(frozen=True)
class LakeTable:
    """A table as the lake holds it: a folder of Parquet, Hive-partitioned or not."""

    schema: str  # `curated` or `oversight`, as in the warehouse
    name: str
    key: str  # the folder it is in, under the lake root
    columns: tuple[LakeColumn, ...]  # as in the files, partition column excluded
    comment: str
    partitioned: bool  # by `period` (the folder `period=YYYY-MM`)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def curated_tables(contracts: dict[str, Contract]) -> list[LakeTable]:
    """One table per contract over `curated/contract=<c>/`, typed as the pipeline writes it."""
    # The curated schemas bring in pandera and polars: imported here, as the warehouse does.
    from pipelines.validation.row_validation import curated_schema
    from pipelines.warehouse.catalog import LINEAGE_COMMENTS, curated_comment

    tables = []
    for contract in contracts.values():
        comments = {c.name: c.description for c in contract.columns} | LINEAGE_COMMENTS
        if contract.layout:
            layout = contract.layout
            comments[layout.period_name] = layout.period_description
            comments[layout.value_name] = layout.value_description
        schema = curated_schema(contract)
        columns = tuple(LakeColumn(f.name, f.type, comments.get(f.name, "")) for f in schema)
        name = f"{contract.name}_releases" if contract.layout else contract.name
        comment = curated_comment(contract)
        if contract.layout:
            comment = (
                f"{contract.title} Contract {contract.name} v{contract.version}. Every "
                f"release as delivered: a {contract.layout.period_name} appears once per "
                "release carrying it."
            )
        tables.append(
            LakeTable("curated", name, f"curated/contract={contract.name}", columns, comment, True)
        )
    return tables


def mart_tables(marts: Iterable[Mart]) -> list[LakeTable]:
    """One table per oversight mart over its folder, `oversight/<mart>/`.

    The types are DuckDB's (the runner casts each column to the type its YAML names) as
    DuckDB writes them to Parquet, so they are asked of DuckDB rather than mapped by hand.
    """
    tables = []
    for mart in marts:
        cols = mart.output_columns
        select = ", ".join(f'CAST(NULL AS {c.type}) AS "{c.name}"' for c in cols)
        arrow = duckdb.sql(f"SELECT {select} LIMIT 0").to_arrow_table().schema
        columns = tuple(
            LakeColumn(c.name, arrow.field(c.name).type, mart.column_comment(c)) for c in cols
        )
        folder = mart_folder(mart.name)
        tables.append(LakeTable(AREA, mart.name, folder, columns, mart.comment, False))
    return tables


def lake_tables(contracts: dict[str, Contract], marts: Iterable[Mart]) -> list[LakeTable]:
    """Every curated table and every oversight mart the lake holds."""
    return curated_tables(contracts) + mart_tables(marts)


# --- types ------------------------------------------------------------------------------


def engine_type(engine: str, t: pa.DataType) -> str:
    """The engine's name for the Parquet column type the pipeline writes as Arrow type `t`."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return {"spark": "STRING", "trino": "VARCHAR", "athena": "STRING"}[engine]
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_signed_integer(t):
        ints = {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}
        name = ints[t.bit_width]
        return "INTEGER" if engine == "trino" and name == "INT" else name
    if pa.types.is_float32(t):
        return "REAL" if engine == "trino" else "FLOAT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_date32(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        # Parquet says whether a timestamp is an instant (adjusted to UTC) or a wall-clock
        # time; Spark has a type for each, Trino's Hive connector and Athena one TIMESTAMP.
        if engine == "spark":
            return "TIMESTAMP" if t.tz else "TIMESTAMP_NTZ"
        return "TIMESTAMP"
    raise ValueError(f"no {engine} type for the Parquet column type {t}")


# --- statements -------------------------------------------------------------------------


def _literal(engine: str, text: str) -> str:
    """A string literal: Trino doubles a quote; Spark and Athena's Hive DDL escape it."""
    if engine == "trino":
        return "'" + text.replace("'", "''") + "'"
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(engine: str, name: str) -> str:
    return f'"{name}"' if engine == "trino" else f"`{name}`"


def location(engine: str, lake_url: str, key: str) -> str:
    """Where `key` is, as the engine names it: Spark reads S3 through Hadoop's S3A."""
    if lake_url.startswith("s3://"):
        url = f"{lake_url.rstrip('/')}/{key}"
        return "s3a://" + url.removeprefix("s3://") if engine == "spark" else url
    # Not percent-encoded: Hadoop's Path encodes what it is given, and `=` must stay `=`.
    return f"file://{Path(lake_url).resolve()}/{key}"


def _columns(engine: str, table: LakeTable, partition_type: bool) -> list[str]:
    lines = [
        f"{_ident(engine, c.name)} {engine_type(engine, c.type)} COMMENT "
        f"{_literal(engine, c.comment)}"
        for c in table.columns
    ]
    if table.partitioned and partition_type:
        text = _literal(engine, PARTITION_COMMENT)
        kind = "VARCHAR" if engine == "trino" else "STRING"
        lines.append(f"{_ident(engine, PARTITION)} {kind} COMMENT {text}")
    return lines


def spark_statements(table: LakeTable, lake_url: str, has_months: bool = True) -> list[str]:
    """CREATE TABLE ... USING PARQUET (a data source table), then its partitions found.

    Spark fails to find the partitions of a folder that does not exist yet (a contract
    with no month published): then the statement is left as a comment to run later."""
    cols = ",\n  ".join(_columns("spark", table, partition_type=True))
    parts = f"\nPARTITIONED BY ({_ident('spark', PARTITION)})" if table.partitioned else ""
    where = _literal("spark", location("spark", lake_url, table.key))
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table.qualified} (\n  {cols}\n)\nUSING PARQUET{parts}"
        f"\nLOCATION {where}\nCOMMENT {_literal('spark', table.comment)}"
    ]
    if table.partitioned:
        # The months already in the lake; run it again after a month is published.
        repair = f"MSCK REPAIR TABLE {table.qualified}"
        statements.append(repair if has_months else f"-- no month yet: later, {repair}")
    return statements


def trino_statements(table: LakeTable, lake_url: str, has_months: bool = True) -> list[str]:
    """CREATE TABLE in a Hive connector catalog over the folder, then its partitions synced
    (a mart's folder has none: its one file is the table)."""
    cols = ",\n  ".join(_columns("trino", table, partition_type=True))
    where = _literal("trino", location("trino", lake_url, table.key))
    parts = f", partitioned_by = ARRAY['{PARTITION}']" if table.partitioned else ""
    create = (
        f"CREATE TABLE IF NOT EXISTS {table.qualified} (\n  {cols}\n)\n"
        f"COMMENT {_literal('trino', table.comment)}\n"
        f"WITH (external_location = {where}, format = 'PARQUET'{parts})"
    )
    if not table.partitioned:
        return [create]
    # The months already in the lake; run it again after a month is published.
    sync = f"CALL system.sync_partition_metadata('{table.schema}', '{table.name}', 'FULL')"
    return [create, sync if has_months else f"-- no month yet: later, {sync}"]


def athena_statements(table: LakeTable, lake_url: str, has_months: bool = True) -> list[str]:
    """CREATE EXTERNAL TABLE with partition projection: a month published later is read
    without any statement, as its folder follows the template. A mart, not partitioned, is
    its folder's one file."""
    cols = ",\n  ".join(_columns("athena", table, partition_type=False))
    root = location("athena", lake_url, table.key)
    if not table.partitioned:
        return [
            f"CREATE EXTERNAL TABLE IF NOT EXISTS {table.qualified} (\n  {cols}\n)\n"
            f"COMMENT {_literal('athena', table.comment)}\n"
            f"STORED AS PARQUET\nLOCATION {_literal('athena', root + '/')}"
        ]
    part = f"{_ident('athena', PARTITION)} STRING COMMENT {_literal('athena', PARTITION_COMMENT)}"
    props = {
        "projection.enabled": "true",
        f"projection.{PARTITION}.type": "date",
        f"projection.{PARTITION}.format": "yyyy-MM",
        f"projection.{PARTITION}.range": "2000-01,NOW",
        f"projection.{PARTITION}.interval": "1",
        f"projection.{PARTITION}.interval.unit": "MONTHS",
        "storage.location.template": f"{root}/{PARTITION}=${{{PARTITION}}}/",
    }
    listed = ",\n  ".join(f"'{k}' = {_literal('athena', v)}" for k, v in props.items())
    return [
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {table.qualified} (\n  {cols}\n)\n"
        f"COMMENT {_literal('athena', table.comment)}\n"
        f"PARTITIONED BY ({part})\nSTORED AS PARQUET\nLOCATION {_literal('athena', root + '/')}\n"
        f"TBLPROPERTIES (\n  {listed}\n)"
    ]


STATEMENTS = {"spark": spark_statements, "trino": trino_statements, "athena": athena_statements}


def ddl_statements(
    engine: str, lake_url: str, tables: list[LakeTable], empty: frozenset[str] = frozenset()
) -> list[str]:
    """Every statement `engine` runs to read the lake at `lake_url`, in order.

    `empty`: the tables (qualified names) with no month in the lake yet, whose partitions
    Spark cannot look for until the first month is published.
    """
    if engine not in STATEMENTS:
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    if engine == "athena" and not lake_url.startswith("s3://"):
        raise ValueError(f"Athena reads S3 only; the lake is {lake_url}")
    schemas = dict.fromkeys(t.schema for t in tables)
    statements = [f"CREATE SCHEMA IF NOT EXISTS {s}" for s in schemas]
    for table in tables:
        statements += STATEMENTS[engine](table, lake_url, table.qualified not in empty)
    return statements


def empty_tables(lake: Lake, tables: list[LakeTable]) -> frozenset[str]:
    """The partitioned tables with no month published in `lake` yet."""
    return frozenset(
        t.qualified
        for t in tables
        if t.partitioned and not lake.glob(f"{t.key}/period=*/*.parquet")
    )


def unmoved_marts(lake: Lake, tables: list[LakeTable]) -> list[str]:
    """The marts `lake` still keeps as an earlier version did, one file each, not yet moved
    into the folders the statements name."""
    return [
        t.qualified
        for t in tables
        if t.schema == AREA and not t.partitioned and lake.exists(previous_mart_key(t.name))
    ]


def ddl_script(
    engine: str,
    lake_url: str,
    tables: list[LakeTable],
    empty: frozenset[str] = frozenset(),
    unmoved: Iterable[str] = (),
) -> str:
    """The statements as one script, `;`-terminated, with a header saying what they do.

    `unmoved`: the marts still in an earlier version's layout (`unmoved_marts`), named in
    the header with what moves them."""
    statements = ddl_statements(engine, lake_url, tables, empty)
    header = [
        f"-- The lake at {lake_url}, declared for {engine} by `datashare lake ddl`.",
        "-- Curated tables are partitioned by `period` (the folder period=YYYY-MM, equal to",
        "-- _period); the warehouse's _month is not stored: use period or _period.",
        "-- Each oversight mart is the one file in its folder (oversight/<mart>/data.parquet).",
    ]
    unmoved = list(unmoved)
    if unmoved:
        header += [
            "-- Not in their folders yet (the lake was written by an earlier version, one file",
            "-- per mart): run `datashare warehouse rebuild` once, which moves them, before",
            "-- these statements: " + ", ".join(unmoved) + ".",
        ]
    ended = [s if s.startswith("--") else f"{s};" for s in statements]
    return "\n".join(header) + "\n\n" + "".join(f"{s}\n\n" for s in ended)
