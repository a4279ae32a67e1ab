"""The reference data the marts' SQL reads: schema `oversight_ref` in the warehouse.

The mappings (`pipelines/oversight_mappings/*.yaml`), the response-time targets and each
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
`curated.census_2021_population`.
Macros: `ethnic_group(mapping, value)`, `group_order(ethnic_group)`,
`agreed_value(contract_name, column_name, value)`, `london_month(timestamp)`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from pipelines.agreed_values import NOT_AGREED, AgreedCategory
from schemas.contract import Contract

MAPPINGS_DIR = Path(__file__).resolve().parent.parent / "oversight_mappings"
NOT_RECORDED, NOT_STATED, NOT_MAPPED = "Not recorded", "Not stated", "Not mapped"
SPECIAL_GROUPS = (NOT_STATED, NOT_RECORDED, NOT_MAPPED)
# Response-time targets by grade, in minutes (the MPS's published targets).
RESPONSE_TARGETS = {"I": 15, "S": 60}
SCHEMA = "oversight_ref"


def _read(directory: Path, name: str) -> dict:
    return yaml.safe_load((directory / name).read_text(encoding="utf-8"))


def reference_tables(
    contracts: dict[str, Contract], directory: Path = MAPPINGS_DIR
) -> dict[str, pa.Table]:
    """The reference tables, by name, from the mapping files and the contracts."""
    ethnicity = _read(directory, "ethnicity.yaml")
    ages = _read(directory, "age_bands.yaml")
    outcomes = _read(directory, "outcomes.yaml")
    groups = [str(g) for g in ethnicity.pop("groups")]
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
    "(pipelines/oversight_mappings/ethnicity.yaml): one row per mapping "
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
    census = con.execute(
        "SELECT 1 FROM duckdb_views() WHERE schema_name = 'curated' "
        "AND view_name = 'census_2021_population' AND database_name = current_database() "
        "UNION ALL SELECT 1 FROM duckdb_tables() WHERE schema_name = 'curated' "
        "AND table_name = 'census_2021_population' AND database_name = current_database()"
    ).fetchall()
    if census:
        con.execute(_POPULATION)
    else:  # a warehouse without the census contract: no residents to divide by
        for name, age in (("population", ""), ("population_by_age", " NULL::VARCHAR AS age_band,")):
            con.execute(
                f"CREATE OR REPLACE VIEW {SCHEMA}.{name} AS SELECT NULL::VARCHAR AS ethnic_group,"
                f"{age} NULL::HUGEINT AS population WHERE false"
            )
    if comments:
        for name, text in COMMENTS.items():
            kind = "VIEW" if name.startswith("population") else "TABLE"
            escaped = text.replace("'", "''")
            con.execute(f"COMMENT ON {kind} {SCHEMA}.{name} IS '{escaped}'")
            columns = con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? "
                "AND table_name = ? AND database_name = current_database()",
                [SCHEMA, name],
            ).fetchall()
            for (column,) in columns:
                escaped = COLUMN_COMMENTS[column].replace("'", "''")
                con.execute(f"COMMENT ON COLUMN {SCHEMA}.{name}.{column} IS '{escaped}'")
