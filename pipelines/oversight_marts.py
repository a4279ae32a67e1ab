"""Oversight marts: the performance framework's measures, computed from the curated tables.

Each mart is two files an analyst owns, in `pipelines/oversight/marts/` (the way dbt keeps
models): `<mart>.sql`, a query that runs as it is in DuckDB against the warehouse (it reads
the `curated.*` views and the reference schema `oversight_ref`: the mappings, targets and
agreed values, `pipelines/oversight/reference.py`), and `<mart>.yaml`, its definition
(numerator, denominator, grain, source fields, caveats), column comments, suppression and
agreed categories (`pipelines/oversight/definition.py` reads it). Data quality alone is
defined here: its SQL is one query per key field of every contract, made from them.

This module runs them: `compute_mart` runs a mart's SQL, with the runner's part added
(`finish_sql`: small counts withheld, columns cast, rows ordered), in DuckDB against a
read-only view of `warehouse.duckdb`; `write_mart` writes the result to
`lake/oversight/<mart>.parquet` with the definition and the column comments as Parquet
key-value metadata (`comment`, `comment:<column>`), which the warehouse turns into the
comments of view `oversight.<mart>`.

Rules every mart follows:
- A curated table with no rows (a contract with no deliveries yet) gives an empty mart with
  all its columns, never an error.
- Records whose ethnicity is blank ("Not recorded"), declined ("Not stated") or a value the
  mapping does not know ("Not mapped") are counted and shown as groups of their own, never
  dropped. The mappings are data: `pipelines/oversight_mappings/*.yaml`.
- A category read straight from a delivered column (a borough, a crime category, a power, a
  tactic) is one of the values the contract agrees for it, or "Not an agreed value": values
  the agreement keeps with a breach are counted in that one group, never as categories of
  their own (`pipelines/agreed_values.py`; each mart lists them in `agreed`).
- Disclosure control: in a mart meant for publication, a count from 1 up to one below the
  mart's threshold is withheld: the count and every figure derived from it are NULL (not
  zero) and the boolean column `<count>_suppressed` is true. Zero is shown as zero.
- Months are London months (Europe/London), first day of the month.

No Dagster here: the assets in `assets/oversight.py` only call `write_mart`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from pipelines.lake import Lake
from pipelines.oversight.definition import (
    MARTS_DIR,
    Mart,
    MartColumn,
    Suppression,
    load_marts,
)
from pipelines.oversight.reference import (
    MAPPINGS_DIR,
    NOT_STATED,
    create_reference,
)
from pipelines.provenance import record_mart_sources
from pipelines.warehouse import make_lake_readable
from schemas.contract import Contract, contracts_dir, load_contracts

LONDON = "Europe/London"


# --- definitions ------------------------------------------------------------------------


# --- mappings (data, not code) ----------------------------------------------------------


@dataclass(frozen=True)
class Mappings:
    groups: tuple[str, ...]
    ethnicity: dict[str, dict[str, str]]  # "<contract>.<column>" -> value -> group
    age_to_census: dict[str, str]
    census_band_labels: dict[str, str]
    outcome_groups: dict[str, tuple[str, ...]]  # group -> outcome types, in precedence order
    no_further_action: tuple[str, ...]


@cache
def load_mappings(directory: Path = MAPPINGS_DIR) -> Mappings:
    ethnicity = yaml.safe_load((directory / "ethnicity.yaml").read_text(encoding="utf-8"))
    ages = yaml.safe_load((directory / "age_bands.yaml").read_text(encoding="utf-8"))
    outcomes = yaml.safe_load((directory / "outcomes.yaml").read_text(encoding="utf-8"))
    groups = tuple(ethnicity.pop("groups"))
    for key, mapping in ethnicity.items():
        unknown = set(mapping.values()) - set(groups) - {NOT_STATED}
        if unknown:
            raise ValueError(f"ethnicity mapping {key} maps to unknown groups {sorted(unknown)}")
    return Mappings(
        groups=groups,
        ethnicity={k: {str(a): str(b) for a, b in v.items()} for k, v in ethnicity.items()},
        age_to_census=dict(ages["use_of_force.subject_age"]),
        census_band_labels=dict(ages["census_band_labels"]),
        outcome_groups={g: tuple(v) for g, v in outcomes["crime_outcome_groups"].items()},
        no_further_action=tuple(outcomes["stop_and_search.no_further_action"]),
    )


# --- SQL helpers --------------------------------------------------------------------------


def _lit(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _in(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")" if values else "(NULL)"


# --- 11. data quality ---------------------------------------------------------------------


@dataclass(frozen=True)
class KeyField:
    contract: str
    table: str
    field: str
    role: str
    missing_values: tuple[str, ...]
    max_missing_percent: float | None


def key_fields(contracts: dict[str, Contract]) -> list[KeyField]:
    """Each contract's key fields: its primary key, the columns with an agreed completeness
    threshold, and (for a wide layout) the value column."""
    out: list[KeyField] = []
    for c in contracts.values():
        table = f"{c.name}_releases" if c.layout else c.name
        rules = {r.column: r for r in c.completeness_rules}
        for col in c.columns:
            rule = rules.get(col.name)
            if not (col.primary_key_position or rule):
                continue
            role = "primary key" if col.primary_key_position else "completeness agreed"
            missing = tuple(v for v in (rule.missing_values if rule else ("",)) if v is not None)
            out.append(
                KeyField(c.name, table, col.name, role, missing, rule.max_percent if rule else None)
            )
        if c.layout:
            out.append(KeyField(c.name, table, c.layout.value_name, "value", (), None))
    return out


def _data_quality_sql(_: Mappings, contracts: dict[str, Contract]) -> str:
    parts = []
    for f in key_fields(contracts):
        col = f'"{f.field}"'
        blank = f" OR {col}::VARCHAR IN {_in(f.missing_values)}" if f.missing_values else ""
        parts.append(
            f"SELECT {_lit(f.contract)} AS contract, _period AS period, {_lit(f.field)} AS field,"
            f" {_lit(f.role)} AS field_role, count(*) AS curated_rows,"
            f" count(*) FILTER (WHERE {col} IS NULL{blank}) AS missing_rows,"
            f" {_lit(f.max_missing_percent)}::DOUBLE AS agreed_max_missing_percent"
            f" FROM curated.{f.table} GROUP BY _period"
        )
    if not parts:
        parts = [
            "SELECT NULL::VARCHAR AS contract, NULL::VARCHAR AS period, NULL::VARCHAR AS field,"
            " NULL::VARCHAR AS field_role, 0 AS curated_rows, 0 AS missing_rows,"
            " NULL::DOUBLE AS agreed_max_missing_percent WHERE false"
        ]
    union = "\nUNION ALL ".join(parts)
    return f"""
    WITH fields AS ({union})
    SELECT *,
           (curated_rows - missing_rows) * 100.0 / curated_rows AS completeness_percent,
           CASE WHEN agreed_max_missing_percent IS NOT NULL
                THEN missing_rows * 100.0 / curated_rows <= agreed_max_missing_percent
           END AS within_agreement
    FROM fields
    """


DATA_QUALITY = Mart(
    name="data_quality",
    title="Data quality: completeness of key fields",
    definition=(
        "For every contract and delivery period, how complete each key field is in the "
        "curated rows: the primary key columns, the columns whose completeness the "
        "agreement sets a threshold for, and a wide layout's value column."
    ),
    grain="one row per contract, period and key field",
    numerator="curated rows of the period whose field is not missing (NULL, blank, or a "
    "value the agreement counts as missing such as 'Not stated').",
    denominator="curated rows of the period (for a wide layout, every cell of the release).",
    source_fields=("every contract's key fields", "<contract>._period"),
    caveats=(
        "Completeness of the rows that were published: rows held back in quarantine are "
        "not counted here (see governance.quarantine).",
        "Rows whose required fields were missing were quarantined, so required fields are "
        "complete by construction; the measure is most telling for optional fields.",
    ),
    sources=("*",),
    columns=(
        MartColumn("contract", "VARCHAR", "The data contract."),
        MartColumn("period", "VARCHAR", "The delivery period (YYYY-MM)."),
        MartColumn("field", "VARCHAR", "The curated column."),
        MartColumn(
            "field_role",
            "VARCHAR",
            "Why it is a key field: primary key, completeness agreed, or value.",
        ),
        MartColumn("curated_rows", "BIGINT", "Curated rows of the period."),
        MartColumn("missing_rows", "BIGINT", "Of those, rows missing the field."),
        MartColumn(
            "agreed_max_missing_percent",
            "DOUBLE",
            "The most the agreement allows missing, in percent (NULL when it sets none).",
        ),
        MartColumn(
            "completeness_percent", "DOUBLE", "Rows with the field, in percent of curated_rows."
        ),
        MartColumn(
            "within_agreement",
            "BOOLEAN",
            "Whether the share missing is within the agreed maximum (NULL when none is set).",
        ),
    ),
    sql=_data_quality_sql,
    order_by=("contract", "field", "period"),
    publication=False,
    threshold=None,
    disclosure="Counts of rows, not of people.",
    latest=(
        "SELECT * FROM mart m WHERE period = "
        "(SELECT max(period) FROM mart x WHERE x.contract = m.contract)"
    ),
    headline="""
        SELECT count(*) FILTER (WHERE within_agreement = false) AS fields_below_agreement,
               count(DISTINCT contract) AS contracts_with_data,
               min(completeness_percent) AS lowest_completeness_percent
        FROM mart m WHERE period = (
            SELECT max(period) FROM mart x WHERE x.contract = m.contract)
    """,
)


# Every mart but data quality is kept as files (`pipelines/oversight/marts/<mart>.sql` and
# `.yaml`); data quality's SQL is one query per key field of every contract, so it is made
# here from the contracts. In the pack's order; a mart an analyst adds comes after.
PACK_ORDER = (
    "stop_search_disproportionality",
    "stop_search_outcomes",
    "crime_trends",
    "crime_outcome_rates",
    "use_of_force_subjects",
    "use_of_force_tactics",
    "complaints_timeliness",
    "emergency_response",
    "trust_and_confidence",
    "workforce_representation",
    "data_quality",
)
_ALL_MARTS = {DATA_QUALITY.name: DATA_QUALITY, **load_marts(MARTS_DIR)}
MARTS: dict[str, Mart] = {
    name: _ALL_MARTS[name]
    for name in sorted(
        _ALL_MARTS, key=lambda n: (PACK_ORDER.index(n) if n in PACK_ORDER else 99, n)
    )
}


# --- running ---------------------------------------------------------------------------


_LOADED: dict[tuple, dict[str, Contract]] = {}


def marts_reading(contracts: set[str], all_contracts: dict[str, Contract]) -> list[str]:
    """The marts that read any of `contracts`: what a run that changed them recomputes."""
    return [
        name
        for name, mart in MARTS.items()
        if contracts & set(mart.source_contracts(all_contracts))
    ]


def current_contracts() -> dict[str, Contract]:
    """The contracts in the contracts folder, read again only when a file there changed."""
    directory = contracts_dir()
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.yaml")))
    key = (str(directory), stamp)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_contracts(directory)
    return _LOADED[key]


def mart_sql(mart: Mart, contracts: dict[str, Contract] | None = None) -> str:
    """The mart's whole query: its SQL, suppression, the declared columns, the order."""
    contracts = contracts or current_contracts()
    return finish_sql(mart, mart.sql(load_mappings(), contracts))


def finish_sql(mart: Mart, body: str) -> str:
    """What the runner adds to a mart's own SQL (`body`): small counts withheld (NULL, with
    their `_suppressed` flags), the declared columns cast to their types, the order."""
    active = mart._active_suppressions()
    threshold = mart.threshold or 0

    def withheld_sql(s: Suppression) -> str:
        return f"coalesce({s.count} BETWEEN 1 AND {threshold - 1}, false)"

    select = []
    flags = {s.count: s for s in active if s.flag}
    for col in mart.columns:
        conditions = [withheld_sql(s) for s in active if col.name in s.withheld]
        expr = col.name
        if conditions:
            expr = f"CASE WHEN {' OR '.join(conditions)} THEN NULL ELSE {col.name} END"
        select.append(f"CAST({expr} AS {col.type}) AS {col.name}")
        if col.name in flags:
            select.append(f"{withheld_sql(flags[col.name])} AS {flags[col.name].flag_name}")
    order = ", ".join(f"{o} NULLS LAST" for o in mart.order_by)
    columns = ",\n       ".join(select)
    return f"WITH mart AS (\n{body}\n)\nSELECT {columns}\nFROM mart\nORDER BY {order}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table_names(con: duckdb.DuckDBPyConnection, catalog: str, schema: str) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_catalog = ? AND table_schema = ?",
        [catalog, schema],
    ).fetchall()
    return {r[0] for r in rows}


@contextmanager
def warehouse_connection(
    warehouse: Path | str | duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection in which `curated.<table>` reads the warehouse, read-only.

    `warehouse.duckdb` is attached read-only to an in-memory database whose `curated`
    schema has a view per curated table. A table the warehouse lacks (a contract added
    since it was built) is an empty table of the contract's curated schema, so a mart over
    it is empty rather than an error. An open connection is used as it is.
    """
    if isinstance(warehouse, duckdb.DuckDBPyConnection):
        if not warehouse.execute(
            "SELECT 1 FROM duckdb_schemas() WHERE schema_name = 'oversight_ref' "
            "AND database_name = current_database()"
        ).fetchall():
            create_reference(warehouse, contracts or current_contracts(), comments=False)
        yield warehouse
        return
    from pipelines.row_validation import curated_schema  # pandera: not at start-up

    contracts = contracts or current_contracts()
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {_quote(str(warehouse))} AS warehouse (READ_ONLY)")
        make_lake_readable(con, "warehouse")
        present = _table_names(con, "warehouse", "curated")
        governance = _table_names(con, "warehouse", "governance")
        con.execute("CREATE SCHEMA curated")
        con.execute("CREATE SCHEMA governance")
        for name in sorted(present):
            con.execute(f"CREATE VIEW curated.{name} AS SELECT * FROM warehouse.curated.{name}")
        for name in sorted(governance):
            con.execute(
                f"CREATE VIEW governance.{name} AS SELECT * FROM warehouse.governance.{name}"
            )
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
        yield con
    finally:
        con.close()


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


def mart_key(name: str) -> str:
    return f"oversight/{name}.parquet"


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
    """Compute a mart and write it to `lake/oversight/<name>.parquet`, atomically."""
    mart = MARTS[name]
    table = compute_mart(name, warehouse, lake, contracts)
    table = table.replace_schema_metadata(mart_metadata(mart))
    key = mart_key(name)
    lake.write_table(key, table)
    # Provenance (issue 23): which deliveries' curated rows this computation read.
    contracts = contracts or current_contracts()
    sources = {c: contracts[c].version for c in mart.source_contracts(contracts) if c in contracts}
    with warehouse_connection(warehouse, contracts) as con:
        record_mart_sources(lake, con, name, sources)
    return WrittenMart(mart, lake.url_of(key), table)


def write_marts(
    warehouse: Path | str,
    lake: Lake,
    names: list[str] | None = None,
    contracts: dict[str, Contract] | None = None,
) -> list[WrittenMart]:
    """Compute and write several marts (default: all) over one warehouse connection."""
    contracts = contracts or current_contracts()
    with warehouse_connection(warehouse, contracts) as con:
        return [write_mart(name, con, lake, contracts) for name in (names or list(MARTS))]


def latest_figures(mart: Mart, table: pa.Table, limit: int = 40) -> list[dict]:
    """The mart's latest figures (its `latest` query), as dicts."""
    con = duckdb.connect()
    try:
        con.register("mart", table)
        return con.sql(f"SELECT * FROM ({mart.latest}) LIMIT {limit}").to_arrow_table().to_pylist()
    finally:
        con.close()


def headline_figures(mart: Mart, table: pa.Table) -> dict[str, object]:
    """One row of headline numbers for the mart (empty when it has no rows)."""
    if mart.headline is None or table.num_rows == 0:
        return {}
    con = duckdb.connect()
    try:
        con.register("mart", table)
        rows = con.sql(mart.headline).to_arrow_table().to_pylist()
    finally:
        con.close()
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
