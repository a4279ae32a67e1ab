"""The reference data the marts' SQL reads: schema `oversight_ref` in the warehouse.

The mappings (`pipelines/oversight/mappings/*.yaml`), the response-time targets and each
contract's agreed values become tables here, and a few macros read them, so a mart's SQL
file names them (`oversight_ref.ethnic_group('stop_and_search.officer_defined_ethnicity',
officer_defined_ethnicity)`) instead of having them pasted in. The warehouse build creates
them (so `duckdb warehouse.duckdb < marts/<mart>.sql` runs as it is), and the runner creates
them again from the current files in its own connection (so a mapping changed since the
warehouse was built counts at once).

Tables:
- `ethnicity_map(mapping, delivered_value, ethnic_group)`: `mapping` is
  "<contract>.<column>"; `delivered_value` without surrounding spaces.
- `ethnic_groups(ethnic_group, position, census_group)`: the Census 2021 groups in the
  mappings' order, then Not stated, Not recorded, Not mapped; `census_group` is true for
  the five groups the population has.
- `use_of_force_age_bands(subject_age, census_age_band, label)`.
- `crime_outcome_groups(outcome_type, outcome_group, precedence)`.
- `search_no_further_action(outcome)`.
- `response_targets(grade, target_minutes)`.
- `agreed_values(contract_name, column_name, agreed_value, position)` and
  `agreed_columns(contract_name, column_name)`: the values each contract agrees for a column
  (a column listed in `agreed_columns` with no values agrees none).
Views: `population(ethnic_group, population)` and `population_by_age(ethnic_group,
age_band, population)`: Census 2021 London residents per group, from
`curated.census_2021_population`; `key_field_counts`: per contract, period and key field,
the curated rows and how many miss it (each table read once for its key fields, made from
the contracts).
Macros: `ethnic_group(mapping, value)`, `group_order(ethnic_group)`,
`agreed_value(contract_name, column_name, value)`, `london_month(timestamp)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from pipelines.validation.agreed_values import NOT_AGREED, AgreedCategory
from schemas.contract import Contract

MAPPINGS_DIR = Path(__file__).resolve().parents[1] / "oversight" / "mappings"
NOT_RECORDED, NOT_STATED, NOT_MAPPED = "Not recorded", "Not stated", "Not mapped"
SPECIAL_GROUPS = (NOT_STATED, NOT_RECORDED, NOT_MAPPED)
# Response-time targets by grade, in minutes (the MPS's published targets).
RESPONSE_TARGETS = {"I": 15, "S": 60}
SCHEMA = "oversight_ref"


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


def _lit(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def key_field_counts_sql(contracts: dict[str, Contract], present: set[str]) -> str:
    """The view `key_field_counts`: per contract, delivery period and key field, the curated
    rows and how many of them miss the field (NULL or a value the agreement counts as
    missing). Made from the contracts (a row per key field), so the data quality mart's
    SQL is one plain query over it; tables not in `present` are left out.

    Each table is read once for all its key fields (a count per field, in one pass), not
    once per field: stop and search's three key fields read a 2M-row month three times
    (152 -> 113 ms of CPU)."""
    by_table: dict[str, list[KeyField]] = {}
    for f in key_fields(contracts):
        if f.table in present:
            by_table.setdefault(f.table, []).append(f)
    counted, parts = [], []
    for i, (table, fields) in enumerate(by_table.items()):
        missing = []
        for j, f in enumerate(fields):
            col = f'"{f.field}"'
            listed = ", ".join(_lit(v) for v in f.missing_values)
            blank = f" OR {col}::VARCHAR IN ({listed})" if f.missing_values else ""
            missing.append(f"count(*) FILTER (WHERE {col} IS NULL{blank}) AS missing_{j}")
            parts.append(
                f"SELECT {_lit(f.contract)} AS contract, _period AS period,"
                f" {_lit(f.field)} AS field, {_lit(f.role)} AS field_role, curated_rows,"
                f" missing_{j} AS missing_rows,"
                f" {_lit(f.max_missing_percent)}::DOUBLE AS agreed_max_missing_percent"
                f" FROM counted_{i}"
            )
        counted.append(
            f"counted_{i} AS MATERIALIZED (SELECT _period, count(*) AS curated_rows, "
            f"{', '.join(missing)} FROM curated.{table} GROUP BY _period)"
        )
    if not parts:
        parts = [
            "SELECT NULL::VARCHAR AS contract, NULL::VARCHAR AS period, NULL::VARCHAR AS field,"
            " NULL::VARCHAR AS field_role, 0 AS curated_rows, 0 AS missing_rows,"
            " NULL::DOUBLE AS agreed_max_missing_percent WHERE false"
        ]
    union = "\nUNION ALL ".join(parts)
    with_ = f"WITH {', '.join(counted)}\n" if counted else ""
    return f"CREATE OR REPLACE VIEW {SCHEMA}.key_field_counts AS\n{with_}{union}"


# libyaml's loader when PyYAML has it: the same safe loading, about ten times faster than
# the pure-Python one (the three mapping files cost 0.04 s of CPU each time they were read).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_mapping(directory: Path, name: str) -> dict:
    """A mapping file (`pipelines/oversight/mappings/<name>`), loaded safely."""
    return yaml.load((directory / name).read_text(encoding="utf-8"), Loader=SAFE_LOADER)


def reference_tables(
    contracts: dict[str, Contract], directory: Path = MAPPINGS_DIR
) -> dict[str, pa.Table]:
    """The reference tables, by name, from the mapping files and the contracts."""
    ethnicity = read_mapping(directory, "ethnicity.yaml")
    ages = read_mapping(directory, "age_bands.yaml")
    outcomes = read_mapping(directory, "outcomes.yaml")
    groups = [str(g) for g in ethnicity.pop("groups")]
    for key, values in ethnicity.items():
        unknown = {str(g) for g in values.values()} - set(groups) - {NOT_STATED}
        if unknown:
            raise ValueError(f"ethnicity mapping {key} maps to unknown groups {sorted(unknown)}")
    mapped: list[dict] = []
    for mapping, values in ethnicity.items():
        seen: set[str] = set()
        for delivered, group in values.items():
            key = str(delivered).strip()
            if key in seen:  # the first listed wins, as a CASE's first WHEN would
                continue
            seen.add(key)
            mapped.append({"mapping": mapping, "delivered_value": key, "ethnic_group": str(group)})
    order = [*groups, *SPECIAL_GROUPS]
    labels = ages["census_band_labels"]
    agreed: list[dict] = []
    agreed_columns: list[dict] = []
    for contract in contracts.values():
        for column in contract.columns:
            values = AgreedCategory(column.name, contract.name, (column.name,), "").values(
                contracts
            )
            if values is None:
                continue
            agreed_columns.append({"contract_name": contract.name, "column_name": column.name})
            agreed += [
                {
                    "contract_name": contract.name,
                    "column_name": column.name,
                    "agreed_value": v,
                    "position": i,
                }
                for i, v in enumerate(values)
            ]

    def table(rows: list[dict], schema: dict[str, pa.DataType]) -> pa.Table:
        return pa.Table.from_pylist(rows, schema=pa.schema(list(schema.items())))

    text, integer = pa.string(), pa.int32()
    return {
        "ethnicity_map": table(
            mapped, {"mapping": text, "delivered_value": text, "ethnic_group": text}
        ),
        "ethnic_groups": table(
            [
                {"ethnic_group": g, "position": i, "census_group": g in groups}
                for i, g in enumerate(order)
            ],
            {"ethnic_group": text, "position": integer, "census_group": pa.bool_()},
        ),
        "use_of_force_age_bands": table(
            [
                {
                    "subject_age": str(band),
                    "census_age_band": str(census),
                    "label": str(labels.get(census, census)),
                }
                for band, census in ages["use_of_force.subject_age"].items()
            ],
            {"subject_age": text, "census_age_band": text, "label": text},
        ),
        "crime_outcome_groups": table(
            [
                {"outcome_type": str(o), "outcome_group": str(g), "precedence": rank}
                for rank, (g, listed) in enumerate(outcomes["crime_outcome_groups"].items())
                for o in listed
            ],
            {"outcome_type": text, "outcome_group": text, "precedence": integer},
        ),
        "search_no_further_action": table(
            [{"outcome": str(o)} for o in outcomes["stop_and_search.no_further_action"]],
            {"outcome": text},
        ),
        "response_targets": table(
            [{"grade": g, "target_minutes": m} for g, m in RESPONSE_TARGETS.items()],
            {"grade": text, "target_minutes": integer},
        ),
        "agreed_values": table(
            agreed,
            {
                "contract_name": text,
                "column_name": text,
                "agreed_value": text,
                "position": integer,
            },
        ),
        "agreed_columns": table(agreed_columns, {"contract_name": text, "column_name": text}),
    }


COMMENTS = {
    "ethnicity_map": "How each delivered ethnicity maps to a Census 2021 group "
    "(pipelines/oversight/mappings/ethnicity.yaml): one row per mapping "
    "('<contract>.<column>') and delivered value (without surrounding spaces).",
    "ethnic_groups": "The ethnic groups the marts show, in their order: the Census 2021 "
    "groups, then Not stated, Not recorded and Not mapped.",
    "use_of_force_age_bands": "Use of force subject age bands that share a whole Census 2021 "
    "age band, and the label the marts give it (oversight_mappings/age_bands.yaml).",
    "crime_outcome_groups": "Crime outcome categories in six groups; precedence orders the "
    "groups when a crime has several outcomes (oversight_mappings/outcomes.yaml).",
    "search_no_further_action": "Stop and search outcomes that are no further action "
    "(oversight_mappings/outcomes.yaml).",
    "response_targets": "Emergency response targets by grade, in minutes (the MPS's "
    "published targets: I 15, S 60).",
    "agreed_values": "The values each contract agrees for a categorical column (its "
    "invalidValues rules), in the agreement's order.",
    "agreed_columns": "The contract columns that have agreed values (a column not listed "
    "here takes every value).",
    "population": "London usual residents per Census 2021 group (the five groups), from "
    "curated.census_2021_population.",
    "population_by_age": "London usual residents per Census 2021 group and age band.",
    "key_field_counts": "For every contract, delivery period and key field (primary key, a "
    "column with an agreed completeness threshold, a wide layout's value column): the curated "
    "rows and how many miss the field. Made from the contracts when the warehouse is built.",
}

COLUMN_COMMENTS = {
    "mapping": "Which delivered column the row maps: '<contract>.<column>'.",
    "delivered_value": "A delivered value, without surrounding spaces.",
    "ethnic_group": "A Census 2021 group (White, Asian, Black, Mixed, Other), or Not stated, "
    "Not recorded or Not mapped.",
    "position": "Order in which the marts show it (0 first).",
    "census_group": "True for the five Census 2021 groups the population has.",
    "subject_age": "A use of force subject age band, as delivered.",
    "census_age_band": "The Census 2021 age band (census_2021_population.age_band) it lies in.",
    "label": "How the marts label the combined band.",
    "outcome_type": "A crime outcome category, as data.police.uk publishes it.",
    "outcome_group": "The group the marts count it in.",
    "precedence": "The group's rank: a crime with several outcomes counts under the lowest.",
    "outcome": "A stop and search outcome that is no further action.",
    "grade": "Call grade: I (immediate) or S (significant).",
    "target_minutes": "Minutes from the call to the first arrival the target allows.",
    "contract_name": "The contract.",
    "column_name": "The contract's column.",
    "agreed_value": "A value the contract agrees for the column.",
    "age_band": "Census 2021 age band.",
    "population": "London usual residents on Census day 2021.",
    "contract": "The contract.",
    "period": "The delivery period, YYYY-MM.",
    "field": "The key field (a column of the contract).",
    "field_role": "Why it is key: primary key, completeness agreed, or value.",
    "curated_rows": "Curated rows of the period.",
    "missing_rows": "Rows with the field NULL or a value the agreement counts as missing.",
    "agreed_max_missing_percent": "The agreed maximum share missing, in percent (NULL: none).",
}

_MACROS = f"""
CREATE OR REPLACE MACRO {SCHEMA}.london_month(ts) AS
    date_trunc('month', timezone('Europe/London', ts))::DATE;
CREATE OR REPLACE MACRO {SCHEMA}.ethnic_group(of_mapping, delivered) AS
    CASE WHEN delivered IS NULL OR trim(delivered) = '' THEN '{NOT_RECORDED}'
         ELSE coalesce((SELECT ref_map.ethnic_group FROM {SCHEMA}.ethnicity_map ref_map
                        WHERE ref_map.mapping = of_mapping
                          AND ref_map.delivered_value = trim(delivered)),
                       '{NOT_MAPPED}') END;
CREATE OR REPLACE MACRO {SCHEMA}.group_order(group_name) AS
    coalesce((SELECT ref_groups.position FROM {SCHEMA}.ethnic_groups ref_groups
              WHERE ref_groups.ethnic_group = group_name),
             (SELECT count(*) FROM {SCHEMA}.ethnic_groups));
CREATE OR REPLACE MACRO {SCHEMA}.agreed_value(of_contract, of_column, delivered) AS
    CASE WHEN NOT EXISTS (SELECT 1 FROM {SCHEMA}.agreed_columns ref_columns
                          WHERE ref_columns.contract_name = of_contract
                            AND ref_columns.column_name = of_column)
         THEN delivered
         WHEN delivered IN (SELECT ref_values.agreed_value FROM {SCHEMA}.agreed_values ref_values
                            WHERE ref_values.contract_name = of_contract
                              AND ref_values.column_name = of_column)
         THEN delivered
         WHEN delivered IS NOT NULL THEN '{NOT_AGREED}'
         ELSE delivered END;
"""

_POPULATION = f"""
CREATE OR REPLACE VIEW {SCHEMA}.population AS
    SELECT ethnic_group, sum(observation) AS population
    FROM (SELECT {SCHEMA}.ethnic_group('census_2021_population.ethnic_group',
                                       census.ethnic_group) AS ethnic_group, observation
          FROM curated.census_2021_population census)
    WHERE ethnic_group IN (SELECT ethnic_group FROM {SCHEMA}.ethnic_groups WHERE census_group)
    GROUP BY ALL;
CREATE OR REPLACE VIEW {SCHEMA}.population_by_age AS
    SELECT ethnic_group, age_band, sum(observation) AS population
    FROM (SELECT {SCHEMA}.ethnic_group('census_2021_population.ethnic_group',
                                       census.ethnic_group) AS ethnic_group, age_band,
                 observation
          FROM curated.census_2021_population census)
    WHERE ethnic_group IN (SELECT ethnic_group FROM {SCHEMA}.ethnic_groups WHERE census_group)
    GROUP BY ALL;
"""


def create_reference(
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    directory: Path = MAPPINGS_DIR,
    comments: bool = True,
) -> None:
    """(Re)create schema `oversight_ref` in `con`'s default database: the tables, views
    and macros above. `curated.census_2021_population` must be readable in `con`."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for name, table in reference_tables(contracts, directory).items():
        con.register("_ref", table)
        con.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{name} AS SELECT * FROM _ref")
        con.unregister("_ref")
    con.execute(_MACROS)
    curated = {
        r[0]
        for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'curated' "
            "AND database_name = current_database() UNION ALL SELECT table_name "
            "FROM duckdb_tables() WHERE schema_name = 'curated' "
            "AND database_name = current_database()"
        ).fetchall()
    }
    con.execute(key_field_counts_sql(contracts, curated))
    if "census_2021_population" in curated:
        con.execute(_POPULATION)
    else:  # a warehouse without the census contract: no residents to divide by
        for name, age in (("population", ""), ("population_by_age", " NULL::VARCHAR AS age_band,")):
            con.execute(
                f"CREATE OR REPLACE VIEW {SCHEMA}.{name} AS SELECT NULL::VARCHAR AS ethnic_group,"
                f"{age} NULL::HUGEINT AS population WHERE false"
            )
    if comments:
        # Every object's columns in one query: `duckdb_columns()` costs the same however few
        # it is asked about (a query per object was eleven, 2 ms each, in every build).
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = ? "
            "AND database_name = current_database() ORDER BY table_name, column_index",
            [SCHEMA],
        ).fetchall():
            columns.setdefault(table, []).append(column)
        for name, text in COMMENTS.items():
            kind = (
                "VIEW" if name.startswith("population") or name == "key_field_counts" else "TABLE"
            )
            escaped = text.replace("'", "''")
            con.execute(f"COMMENT ON {kind} {SCHEMA}.{name} IS '{escaped}'")
            for column in columns.get(name, []):
                escaped = COLUMN_COMMENTS[column].replace("'", "''")
                con.execute(f"COMMENT ON COLUMN {SCHEMA}.{name}.{column} IS '{escaped}'")
