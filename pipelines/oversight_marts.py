"""Oversight marts: the performance framework's measures, computed from the curated tables.

Each mart is defined once, here, as data: its name and title, the definition of the measure
(numerator, denominator, the source fields it reads and its caveats), its columns with
their comments, its SQL over the warehouse's `curated.*` views, and whether it is meant for
publication (and so has small counts suppressed). `compute_mart` runs the SQL in DuckDB
against a read-only view of `warehouse.duckdb`; `write_mart` writes the result to
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

from pipelines.agreed_values import NOT_AGREED, AgreedCategory
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
    NOT_MAPPED,
    NOT_RECORDED,
    NOT_STATED,
    SPECIAL_GROUPS,
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


def _values(rows: list[tuple], names: list[str], types: list[str]) -> str:
    """A literal table (subquery) with typed columns; typed and empty when `rows` is."""
    if not rows:
        cols = ", ".join(f"NULL::{t} AS {n}" for n, t in zip(names, types, strict=True))
        return f"(SELECT {cols} WHERE false)"
    body = ", ".join("(" + ", ".join(_lit(v) for v in row) + ")" for row in rows)
    cols = ", ".join(f"{n}::{t} AS {n}" for n, t in zip(names, types, strict=True))
    return f"(SELECT {cols} FROM (VALUES {body}) AS v({', '.join(names)}))"


def ethnic_group_sql(expr: str, mapping: dict[str, str]) -> str:
    """Map a delivered ethnicity to its group: blank is Not recorded, unknown Not mapped.

    Values are compared without surrounding spaces (published strings sometimes carry a
    trailing space; it is the same category).
    """
    whens = " ".join(f"WHEN {_lit(k.strip())} THEN {_lit(v)}" for k, v in mapping.items())
    return (
        f"(CASE WHEN {expr} IS NULL OR trim({expr}) = '' THEN {_lit(NOT_RECORDED)} "
        f"ELSE CASE trim({expr}) {whens} ELSE {_lit(NOT_MAPPED)} END END)"
    )


def group_order_sql(expr: str, groups: tuple[str, ...]) -> str:
    """Sort key: the 5 groups in the mappings' order, then Not stated/recorded/mapped."""
    order = [*groups, *SPECIAL_GROUPS]
    whens = " ".join(f"WHEN {_lit(g)} THEN {i}" for i, g in enumerate(order))
    return f"(CASE {expr} {whens} ELSE {len(order)} END)"


def _london_month(expr: str) -> str:
    """The first day of the London month of a UTC timestamp."""
    return f"date_trunc('month', timezone('{LONDON}', {expr}))::DATE"


def _population_sql(m: Mappings, by_age: bool = False) -> str:
    """Census 2021 London residents per 5-group ethnic group (and age band)."""
    group = ethnic_group_sql("ethnic_group", m.ethnicity["census_2021_population.ethnic_group"])
    age = ", age_band" if by_age else ""
    return (
        f"SELECT {group} AS ethnic_group{age}, sum(observation) AS population "
        f"FROM curated.census_2021_population WHERE {group} IN {_in(m.groups)} GROUP BY ALL"
    )


def _windows(
    keys: list[str], measures: list[str], source: str = "monthly", name: str = "windowed"
) -> str:
    """CTEs turning `source` (month, keys, additive measures) into `name`.

    `name` has every row of `source` (time_window 'month') and, for every month with data,
    the sums over the 12 months ending with it (time_window '12 months'), with
    `window_start` and `months_with_data` (months in the window that have any data).
    """
    k = ", ".join(keys)
    gk = ", ".join(f"g.{c}" for c in keys)
    ms = ", ".join(measures)
    sums = ", ".join(f"sum(g.{c}) AS {c}" for c in measures)
    start = "(m.month - INTERVAL 11 MONTH)::DATE"
    return f"""
    {name}_data_months AS (SELECT DISTINCT month FROM {source}),
    {name}_months AS (
        SELECT m.month, count(*) AS months_with_data
        FROM {name}_data_months m
        JOIN {name}_data_months d ON d.month BETWEEN {start} AND m.month
        GROUP BY m.month
    ),
    {name} AS (
        SELECT 'month' AS time_window, month, month AS window_start, 1 AS months_with_data,
               {k}, {ms}
        FROM {source}
        UNION ALL
        SELECT '12 months' AS time_window, m.month, {start} AS window_start,
               m.months_with_data, {gk}, {sums}
        FROM {name}_months m
        JOIN {source} g ON g.month BETWEEN {start} AND m.month
        GROUP BY m.month, m.months_with_data, {gk}
    )"""


_WINDOW_COLUMNS = (
    MartColumn(
        "time_window",
        "VARCHAR",
        "'month' for the calendar month; '12 months' for the 12 months ending with `month`.",
    ),
    MartColumn(
        "month",
        "DATE",
        "The month (first day, London time); for a 12-month window, its last month.",
    ),
    MartColumn("window_start", "DATE", "The first month of the window (first day)."),
    MartColumn(
        "months_with_data",
        "INTEGER",
        "How many months in the window have any data delivered: a 12-month window with fewer "
        "covers only those months, so its counts and rates are not yet annual.",
    ),
)
_LATEST_12 = (
    "SELECT * FROM mart WHERE time_window = '12 months' AND month = (SELECT max(month) FROM mart)"
)


# --- 2. stop and search outcomes ----------------------------------------------------------


SEARCH_LEGISLATION = AgreedCategory(
    "legislation", "stop_and_search", ("legislation",), "power (legislation)"
)
SEARCH_OBJECT = AgreedCategory(
    "object_of_search", "stop_and_search", ("object_of_search",), "object of search"
)


def _stop_search_outcomes_sql(m: Mappings, contracts: dict[str, Contract]) -> str:
    officer = ethnic_group_sql(
        "officer_defined_ethnicity", m.ethnicity["stop_and_search.officer_defined_ethnicity"]
    )
    self_ = ethnic_group_sql(
        "self_defined_ethnicity", m.ethnicity["stop_and_search.self_defined_ethnicity"]
    )
    dims = "legislation, object_of_search"
    return f"""
    WITH searches AS (
        SELECT {_london_month("date")} AS month, {officer} AS officer_group,
               {self_} AS self_group,
               {SEARCH_LEGISLATION.sql("legislation", contracts, NOT_RECORDED)} AS legislation,
               {SEARCH_OBJECT.sql("object_of_search", contracts, NOT_RECORDED)}
                   AS object_of_search,
               outcome NOT IN {_in(m.no_further_action)} AS action_taken
        FROM curated.stop_and_search
    ),
    stacked AS (
        SELECT month, 'officer-defined' AS basis, officer_group AS ethnic_group, {dims},
               action_taken FROM searches
        UNION ALL
        SELECT month, 'self-defined', self_group, {dims}, action_taken FROM searches
    ),
    monthly AS (
        SELECT month, basis,
               CASE WHEN grouping(ethnic_group) = 1 THEN 'All' ELSE ethnic_group END
                   AS ethnic_group,
               CASE WHEN grouping(legislation) = 1 THEN 'All' ELSE legislation END
                   AS legislation,
               CASE WHEN grouping(object_of_search) = 1 THEN 'All' ELSE object_of_search END
                   AS object_of_search,
               count(*) AS searches,
               count(*) FILTER (WHERE action_taken) AS action_taken
        FROM stacked
        GROUP BY GROUPING SETS (
            (month, basis), (month, basis, ethnic_group), (month, basis, legislation),
            (month, basis, object_of_search),
            (month, basis, ethnic_group, legislation, object_of_search))
    ),
    {
        _windows(
            ["basis", "ethnic_group", "legislation", "object_of_search"],
            ["searches", "action_taken"],
        )
    }
    SELECT *, action_taken / searches AS action_taken_share,
           (ethnic_group <> 'All')::INT + (legislation <> 'All')::INT
               + (object_of_search <> 'All')::INT AS _depth,
           {group_order_sql("ethnic_group", ("All", *m.groups))} AS _order
    FROM windowed
    """


STOP_SEARCH_OUTCOMES = Mart(
    name="stop_search_outcomes",
    title="Stop and search outcomes",
    definition=(
        "The share of searches that ended in an outcome other than no further action "
        "(arrest, summons, caution, penalty notice, community resolution, cannabis or khat "
        "warning), by ethnic group (officer- and self-defined), legislation and object of "
        "search, for each month and the 12 months ending with it. 'All' rows give each "
        "breakdown on its own and the total."
    ),
    grain="one row per time window, month, basis, ethnic group (or All), legislation (or "
    "All) and object of search (or All), where there was at least one search",
    numerator="searches whose outcome is not 'A no further action disposal' "
    "(oversight_mappings/outcomes.yaml).",
    denominator="all searches in the same cell.",
    source_fields=(
        "stop_and_search.date",
        "stop_and_search.outcome",
        "stop_and_search.legislation",
        "stop_and_search.object_of_search",
        "stop_and_search.officer_defined_ethnicity",
        "stop_and_search.self_defined_ethnicity",
    ),
    caveats=(
        "The Met does not record whether the outcome was linked to the object of search, so "
        "an arrest for something else counts as an outcome.",
        "An outcome other than no further action is not a 'find': a community resolution or "
        "warning can follow a small find, and an arrest may lead to no charge.",
        "Legislation and object rows are repeated under each basis (they do not depend on "
        "it). Blank legislation or object is Not recorded.",
        f"A power or object the agreement does not list (a misspelt Act, another case) is "
        f"counted under {NOT_AGREED}, one group, not as a power of its own.",
        "Cells of the full breakdown are small; many are withheld in the published figures.",
    ),
    sources=("stop_and_search",),
    columns=(
        *_WINDOW_COLUMNS,
        MartColumn("basis", "VARCHAR", "'officer-defined' or 'self-defined' ethnicity."),
        MartColumn(
            "ethnic_group",
            "VARCHAR",
            "Census 2021 group, Not stated, Not recorded, Not mapped, or All (every group).",
        ),
        MartColumn(
            "legislation",
            "VARCHAR",
            "The power used (stop_and_search.legislation): one of the agreed powers, "
            f"{NOT_AGREED} (any other value, kept with a breach), or All.",
        ),
        MartColumn(
            "object_of_search",
            "VARCHAR",
            "What was searched for (stop_and_search.object_of_search): an agreed value, "
            f"{NOT_AGREED}, Not recorded (blank), or All.",
        ),
        MartColumn("searches", "BIGINT", "Searches in the cell."),
        MartColumn(
            "action_taken",
            "BIGINT",
            "Searches in the cell whose outcome was other than no further action.",
        ),
        MartColumn("action_taken_share", "DOUBLE", "action_taken over searches, from 0 to 1."),
    ),
    sql=_stop_search_outcomes_sql,
    order_by=(
        "time_window",
        "month",
        "basis",
        "_depth",
        "_order",
        "ethnic_group",
        "legislation",
        "object_of_search",
    ),  # fmt: skip
    publication=True,
    threshold=10,
    disclosure="Same threshold as the disproportionality figures.",
    agreed=(SEARCH_LEGISLATION, SEARCH_OBJECT),
    suppressions=(
        Suppression("searches", ("searches", "action_taken", "action_taken_share")),
        Suppression("action_taken", ("action_taken", "action_taken_share")),
    ),
    latest=(
        "SELECT * FROM mart WHERE time_window = '12 months' AND basis = 'self-defined' "
        "AND legislation = 'All' AND object_of_search = 'All' "
        "AND month = (SELECT max(month) FROM mart)"
    ),
    headline="""
        SELECT max(month) AS latest_month,
               max(action_taken_share) FILTER (WHERE ethnic_group = 'All')
                   AS action_taken_share_12m,
               max(searches) FILTER (WHERE ethnic_group = 'All') AS searches_12m
        FROM mart WHERE time_window = '12 months' AND basis = 'self-defined'
          AND legislation = 'All' AND object_of_search = 'All'
          AND month = (SELECT max(month) FROM mart)
    """,
)


# --- 3. crime trends ------------------------------------------------------------------


CRIME_BOROUGH = AgreedCategory("borough", "borough_crime", ("borough",), "borough")
CRIME_MAJOR = AgreedCategory(
    "major_category", "borough_crime", ("major_category",), "major category"
)


def _crime_trends_sql(_: Mappings, contracts: dict[str, Contract]) -> str:
    return f"""
    WITH cells AS (
        SELECT {CRIME_BOROUGH.sql("borough", contracts)} AS borough,
               {CRIME_MAJOR.sql("major_category", contracts)} AS major_category,
               month, sum("count") AS crimes, count(*) AS source_rows,
               count(*) FILTER (WHERE "count" IS NULL) AS blank_cells
        FROM curated.borough_crime GROUP BY ALL
    ),
    releases AS (
        SELECT month, max(_period) AS release FROM curated.borough_crime GROUP BY month
    ),
    months AS (
        SELECT unnest(generate_series(min(month), max(month), INTERVAL 1 MONTH))::DATE AS month
        FROM cells HAVING count(*) > 0
    ),
    grid AS (
        SELECT p.borough, p.major_category, mo.month, r.release,
               CASE WHEN r.release IS NOT NULL THEN coalesce(c.crimes, 0) END AS crimes,
               coalesce(c.source_rows, 0) AS source_rows,
               coalesce(c.blank_cells, 0) AS blank_cells
        FROM (SELECT DISTINCT borough, major_category FROM cells) p
        CROSS JOIN months mo
        LEFT JOIN releases r ON r.month = mo.month
        LEFT JOIN cells c ON c.borough = p.borough AND c.major_category = p.major_category
                         AND c.month = mo.month
    ),
    rolled AS (
        SELECT *,
               sum(crimes) OVER last12 AS _last, count(release) OVER last12 AS _last_n,
               sum(crimes) OVER prev12 AS _prev, count(release) OVER prev12 AS _prev_n
        FROM grid
        WINDOW last12 AS (PARTITION BY borough, major_category ORDER BY month
                          ROWS BETWEEN 11 PRECEDING AND CURRENT ROW),
               prev12 AS (PARTITION BY borough, major_category ORDER BY month
                          ROWS BETWEEN 23 PRECEDING AND 12 PRECEDING)
    )
    SELECT borough, major_category, month, release, crimes, source_rows, blank_cells,
           CASE WHEN _last_n = 12 THEN _last END AS last_12_months,
           CASE WHEN _prev_n = 12 THEN _prev END AS previous_12_months,
           last_12_months - previous_12_months AS change,
           CASE WHEN previous_12_months > 0
                THEN (last_12_months - previous_12_months) * 100.0 / previous_12_months
           END AS change_percent
    FROM rolled
    """


CRIME_TRENDS = Mart(
    name="crime_trends",
    title="Recorded crime trends",
    definition=(
        "Recorded crime by borough and major category, month by month, with the 12 months "
        "ending with each month set against the 12 months before them. Each month's figures "
        "come from the latest release that carries it (each release re-sends 24 months and "
        "revises them)."
    ),
    grain="one row per borough, major category and month",
    numerator="crimes recorded in the borough, major category and month (the minor "
    "categories added together); for the comparison, the sums over the 12 months ending "
    "with the month and over the 12 months before.",
    denominator="none for the counts; change_percent divides the change by the previous 12 months.",
    source_fields=(
        "borough_crime.borough",
        "borough_crime.major_category",
        "borough_crime.month",
        "borough_crime.count",
        "borough_crime._period (the release)",
    ),
    caveats=(
        "Recorded crime depends on reporting and recording practice as well as on crime.",
        "A borough and category missing from a release had no crime in its 24 months, so "
        "it counts as 0; a month no release covers is NULL, and so is any 12-month sum "
        "that includes it.",
        "A blank cell in the release is unknown, not 0: it is left out of the sums and "
        "counted in blank_cells.",
        "'London Heathrow and London City Airports' is reported as a borough.",
        "Releases revise earlier months: the same month can change from one release to the next.",
        f"A borough or major category the agreement does not list (another case, a trailing "
        f"space, a misspelling) is counted under {NOT_AGREED}: the crimes are in every total, "
        "under one group rather than a category of their own.",
    ),
    sources=("borough_crime",),
    columns=(
        MartColumn(
            "borough",
            "VARCHAR",
            f"London borough (or the airports) as the agreement lists it, or {NOT_AGREED}.",
        ),
        MartColumn(
            "major_category",
            "VARCHAR",
            "Home Office major crime category, one of the 11 the agreement lists, or "
            f"{NOT_AGREED} (any other value, e.g. another case or a trailing space: the "
            "agreement keeps those rows with a breach).",
        ),
        MartColumn("month", "DATE", "The month the crimes were recorded in (first day)."),
        MartColumn(
            "release",
            "VARCHAR",
            "The release (delivery period, YYYY-MM) the month's figures are taken from: the "
            "newest that carries the month. NULL when no release covers the month.",
        ),
        MartColumn(
            "crimes",
            "BIGINT",
            "Crimes recorded in the month (0 when the borough and category is absent from "
            "the release; NULL when no release covers the month).",
        ),
        MartColumn(
            "source_rows",
            "BIGINT",
            "Curated rows (minor-category cells of the release) added up into crimes.",
        ),
        MartColumn(
            "blank_cells",
            "BIGINT",
            "Minor-category cells left blank (unknown) in the release for this month.",
        ),
        MartColumn(
            "last_12_months",
            "BIGINT",
            "Crimes in the 12 months ending with this month; NULL unless all 12 are covered.",
        ),
        MartColumn(
            "previous_12_months",
            "BIGINT",
            "Crimes in the 12 months before those; NULL unless all 12 are covered.",
        ),
        MartColumn("change", "BIGINT", "last_12_months minus previous_12_months."),
        MartColumn(
            "change_percent",
            "DOUBLE",
            "change as a percentage of previous_12_months (NULL when that is 0).",
        ),
    ),
    sql=_crime_trends_sql,
    order_by=("borough", "major_category", "month"),
    publication=True,
    threshold=None,
    disclosure="Recorded crime by borough is already published by the MPS with no cell "
    "suppressed (contract borough_crime).",
    agreed=(CRIME_BOROUGH, CRIME_MAJOR),
    latest="SELECT * FROM mart WHERE month = (SELECT max(month) FROM mart)",
    headline="""
        SELECT max(month) AS latest_month, sum(last_12_months) AS london_last_12_months,
               sum(previous_12_months) AS london_previous_12_months,
               (sum(last_12_months) - sum(previous_12_months)) * 100.0
                   / nullif(sum(previous_12_months), 0) AS london_change_percent
        FROM mart WHERE month = (SELECT max(month) FROM mart)
    """,
)


# --- 4. crime outcome rates -----------------------------------------------------------


STREET_CRIME_TYPE = AgreedCategory("crime_type", "street_crime", ("crime_type",), "crime type")


def _crime_outcomes_sql(m: Mappings, contracts: dict[str, Contract]) -> str:
    rows = [
        (outcome, group, rank)
        for rank, (group, outcomes) in enumerate(m.outcome_groups.items())
        for outcome in outcomes
    ]
    groups = _values(
        rows, ["outcome_type", "outcome_group", "precedence"], ["VARCHAR", "VARCHAR", "INTEGER"]
    )
    order = [*m.outcome_groups, NOT_MAPPED, "No outcome recorded"]
    return f"""
    WITH outcome_groups AS {groups},
    street AS (
        SELECT crime_id, month, {STREET_CRIME_TYPE.sql("crime_type", contracts)} AS crime_type,
               reported_by, last_outcome_category
        FROM curated.street_crime WHERE crime_id IS NOT NULL AND crime_id <> ''
    ),
    crimes AS (
        SELECT crime_id,
               min(month) AS month,
               first(crime_type ORDER BY month, crime_type) AS crime_type,
               first(reported_by ORDER BY month, reported_by) AS force,
               first(last_outcome_category ORDER BY month DESC, last_outcome_category)
                   FILTER (WHERE coalesce(last_outcome_category, '') <> '')
                   AS street_outcome
        FROM street GROUP BY crime_id
    ),
    outcomes AS (
        SELECT DISTINCT o.crime_id, o.month, o.outcome_type,
               coalesce(g.outcome_group, '{NOT_MAPPED}') AS outcome_group,
               coalesce(g.precedence, 999) AS precedence
        FROM curated.crime_outcomes o LEFT JOIN outcome_groups g USING (outcome_type)
    ),
    latest AS (
        SELECT crime_id,
               first(outcome_group ORDER BY month DESC, precedence, outcome_type)
                   AS outcome_group
        FROM outcomes GROUP BY crime_id
    ),
    judged AS (
        SELECT c.month, c.force, c.crime_type,
               CASE WHEN l.crime_id IS NOT NULL THEN l.outcome_group
                    WHEN c.street_outcome IS NOT NULL
                        THEN coalesce(g.outcome_group, '{NOT_MAPPED}')
                    ELSE 'No outcome recorded' END AS outcome_group,
               l.crime_id IS NOT NULL AS from_outcomes
        FROM crimes c
        LEFT JOIN latest l ON l.crime_id = c.crime_id
        LEFT JOIN outcome_groups g ON g.outcome_type = c.street_outcome
    )
    SELECT month, force, crime_type, outcome_group,
           count(*) AS crimes,
           count(*) FILTER (WHERE from_outcomes) AS crimes_from_outcomes_file,
           sum(count(*)) OVER (PARTITION BY month, force, crime_type) AS crimes_of_type,
           count(*) / sum(count(*)) OVER (PARTITION BY month, force, crime_type)
               AS outcome_rate,
           {group_order_sql("outcome_group", tuple(order))} AS _order
    FROM judged GROUP BY month, force, crime_type, outcome_group
    """


CRIME_OUTCOME_RATES = Mart(
    name="crime_outcome_rates",
    title="Crime outcome rates",
    definition=(
        "What has happened to the crimes recorded each month, by crime type: each crime "
        "(one Crime ID) is counted once, under the group of its latest known outcome, and "
        "the rate is its share of the crimes of that type and month."
    ),
    grain="one row per month the crime was recorded in, force, crime type and outcome group",
    numerator="crimes (distinct Crime IDs) whose latest known outcome is in the group: the "
    "outcome recorded in the latest outcome month in crime_outcomes (several outcomes in "
    "that month: the first group in oversight_mappings/outcomes.yaml wins), else the last "
    "outcome category of the street crime record, else 'No outcome recorded'.",
    denominator="crimes (distinct Crime IDs) of the type recorded in the month.",
    source_fields=(
        "street_crime.crime_id",
        "street_crime.month",
        "street_crime.crime_type",
        "street_crime.reported_by",
        "street_crime.last_outcome_category",
        "crime_outcomes.crime_id",
        "crime_outcomes.month",
        "crime_outcomes.outcome_type",
    ),
    caveats=(
        "Crime IDs repeat: a crime can be on several street rows (two LSOAs, separate "
        "outcome rows, exact duplicates) and have several outcomes; each ID is counted "
        "once, with the crime type and force of its earliest row (alphabetical on a tie).",
        "Anti-social behaviour has no Crime ID and is not a crime: it is left out.",
        "Outcomes take time: recent months have many crimes still under investigation, so "
        "their rates rise as later outcome months are delivered.",
        "Outcomes for crimes recorded in months not delivered (crime_outcomes rows whose ID "
        "is in no street crime delivery) cannot be placed and are not counted; their number "
        "is in the asset's metadata (unmatched_outcome_crime_ids).",
    ),
    sources=("street_crime", "crime_outcomes"),
    columns=(
        MartColumn("month", "DATE", "The month the crime was recorded in (first day)."),
        MartColumn("force", "VARCHAR", "The force that provided the crime record."),
        MartColumn(
            "crime_type",
            "VARCHAR",
            f"The data.police.uk crime category the agreement lists, or {NOT_AGREED}.",
        ),
        MartColumn(
            "outcome_group",
            "VARCHAR",
            "Group of the crime's latest known outcome (oversight_mappings/outcomes.yaml), "
            "Not mapped for an outcome the grouping lacks, or No outcome recorded.",
        ),
        MartColumn("crimes", "BIGINT", "Crimes (distinct Crime IDs) in the outcome group."),
        MartColumn(
            "crimes_from_outcomes_file",
            "BIGINT",
            "Of those, crimes whose outcome came from crime_outcomes (the rest from the "
            "street crime record's last outcome category).",
        ),
        MartColumn(
            "crimes_of_type", "BIGINT", "Crimes (distinct Crime IDs) of the type and month."
        ),
        MartColumn("outcome_rate", "DOUBLE", "crimes over crimes_of_type, from 0 to 1."),
    ),
    sql=_crime_outcomes_sql,
    order_by=("month", "force", "crime_type", "_order", "outcome_group"),
    publication=True,
    threshold=None,
    disclosure="Both sources are published record by record on data.police.uk; counting "
    "them reveals nothing more.",
    agreed=(STREET_CRIME_TYPE,),
    latest="SELECT * FROM mart WHERE month = (SELECT max(month) FROM mart)",
    headline="""
        SELECT max(month) AS latest_month, sum(crimes) AS crimes_latest_month,
               sum(crimes) FILTER (WHERE outcome_group = 'Charge or summons') * 1.0
                   / nullif(sum(crimes), 0) AS charge_or_summons_rate_latest_month
        FROM mart WHERE month = (SELECT max(month) FROM mart)
    """,
    notes={
        "unmatched_outcome_crime_ids": """
            SELECT count(DISTINCT crime_id) FROM curated.crime_outcomes
            WHERE crime_id NOT IN (
                SELECT crime_id FROM curated.street_crime WHERE crime_id IS NOT NULL)""",
        "street_rows_per_crime_id": """
            SELECT count(*) * 1.0 / nullif(count(DISTINCT crime_id), 0)
            FROM curated.street_crime WHERE coalesce(crime_id, '') <> ''""",
    },
)


# --- 5. use of force by subject -----------------------------------------------------------


def _use_of_force_subjects_sql(m: Mappings, _: dict[str, Contract]) -> str:
    group = ethnic_group_sql("subject_ethnicity", m.ethnicity["use_of_force.subject_ethnicity"])
    ages = [
        (band, census, m.census_band_labels.get(census, census))
        for band, census in m.age_to_census.items()
    ]
    age_map = _values(
        ages, ["subject_age", "census_age_band", "label"], ["VARCHAR", "VARCHAR", "VARCHAR"]
    )
    labels = sorted({label for _, _, label in ages})
    shown = [(g, label, "census band") for g in m.groups for label in labels]
    shown += [(g, "All ages", "all ages") for g in m.groups]
    return f"""
    WITH records AS (
        SELECT date_trunc('month', incident_date)::DATE AS month, {group} AS ethnic_group,
               coalesce(nullif(trim(subject_age), ''), '{NOT_RECORDED}') AS subject_age
        FROM curated.use_of_force
    ),
    age_map AS {age_map},
    counts AS (
        SELECT month, ethnic_group, subject_age AS age_band, 'recorded band' AS age_band_level,
               NULL::VARCHAR AS census_age_band, count(*) AS records
        FROM records GROUP BY ALL
        UNION ALL
        SELECT r.month, r.ethnic_group, a.label, 'census band', a.census_age_band, count(*)
        FROM records r JOIN age_map a USING (subject_age) GROUP BY ALL
        UNION ALL
        SELECT month, ethnic_group, 'All ages', 'all ages', NULL, count(*)
        FROM records GROUP BY ALL
    ),
    shown AS (
        SELECT s.ethnic_group, s.age_band, s.age_band_level, a.census_age_band
        FROM {_values(shown, ["ethnic_group", "age_band", "age_band_level"], ["VARCHAR"] * 3)} s
        LEFT JOIN (SELECT DISTINCT label, census_age_band FROM age_map) a
          ON a.label = s.age_band
        UNION
        SELECT DISTINCT ethnic_group, age_band, age_band_level, census_age_band FROM counts
    ),
    monthly AS (
        SELECT mo.month, s.ethnic_group, s.age_band, s.age_band_level, s.census_age_band,
               coalesce(c.records, 0) AS records
        FROM (SELECT DISTINCT month FROM records) mo CROSS JOIN shown s
        LEFT JOIN counts c ON c.month = mo.month AND c.ethnic_group = s.ethnic_group
                          AND c.age_band = s.age_band AND c.age_band_level = s.age_band_level
    ),
    {_windows(["ethnic_group", "age_band", "age_band_level", "census_age_band"], ["records"])},
    population_all AS ({_population_sql(m)}),
    population_age AS ({_population_sql(m, by_age=True)}),
    with_population AS (
        SELECT w.*,
               CASE w.age_band_level WHEN 'all ages' THEN pa.population
                                     WHEN 'census band' THEN pb.population END AS population
        FROM windowed w
        LEFT JOIN population_all pa ON pa.ethnic_group = w.ethnic_group
        LEFT JOIN population_age pb ON pb.ethnic_group = w.ethnic_group
                                   AND pb.age_band = w.census_age_band
    ),
    rated AS (
        SELECT *, CASE WHEN population > 0 THEN records * 1000.0 / population END
                      AS rate_per_1000
        FROM with_population
    )
    SELECT *,
           max(rate_per_1000) FILTER (WHERE ethnic_group = 'White') OVER cell
               AS white_rate_per_1000,
           CASE WHEN white_rate_per_1000 > 0 THEN rate_per_1000 / white_rate_per_1000 END
               AS ratio_to_white,
           max(records) FILTER (WHERE ethnic_group = 'White') OVER cell AS _white_records,
           {group_order_sql("ethnic_group", m.groups)} AS _order,
           CASE age_band_level WHEN 'all ages' THEN 0 WHEN 'census band' THEN 1 ELSE 2 END
               AS _level
    FROM rated
    WINDOW cell AS (PARTITION BY time_window, month, age_band, age_band_level)
    """


USE_OF_FORCE_SUBJECTS = Mart(
    name="use_of_force_subjects",
    title="Use of force by subject ethnic group and age",
    definition=(
        "Use of force records by the subject's perceived ethnic group and age band, for "
        "each month and the 12 months ending with it, with a rate per 1,000 London residents "
        "of the group (Census 2021) where a matching population exists: for all ages, and "
        "for the only use of force age band that matches a Census band (50 and over)."
    ),
    grain="one row per time window, month, ethnic group and age band (recorded band, "
    "Census-comparable band, or all ages)",
    numerator="use of force records (one per officer per subject) in the window.",
    denominator="London usual residents of the group (and Census age band), Census 2021; "
    "the ratio divides by the White rate of the same window and age band.",
    source_fields=(
        "use_of_force.incident_date",
        "use_of_force.subject_ethnicity",
        "use_of_force.subject_age",
        "census_2021_population.ethnic_group",
        "census_2021_population.age_band",
        "census_2021_population.observation",
    ),
    caveats=(
        "A record is one officer's use of force on one subject: two officers restraining "
        "the same person make two records, so counts are not people or incidents.",
        "Ethnicity and age are as the officer perceived them. The Home Office 'Chinese' "
        "category is counted as Asian, as in Census 2021.",
        "The use of force age bands (0-10, 11-17, 18-34, 35-49, 50-64, 65 and over) do not "
        "match the Census bands (24 and under, 25 to 49, 50 and over) except 50 and over, "
        "so only that band and all ages have a rate; the other bands are counts.",
        "Rows of the three age_band_level values overlap (all ages includes every band): "
        "add up rows of one level only.",
        "Not recorded and Not mapped subjects are shown with no rate.",
    ),
    sources=("use_of_force", "census_2021_population"),
    columns=(
        *_WINDOW_COLUMNS,
        MartColumn(
            "ethnic_group",
            "VARCHAR",
            "Subject's perceived ethnicity in the Census 2021 groups, Not recorded or Not mapped.",
        ),
        MartColumn(
            "age_band",
            "VARCHAR",
            "The subject's perceived age band as recorded (or Not recorded), a band matching "
            "a Census band (50 and over), or All ages.",
        ),
        MartColumn(
            "age_band_level",
            "VARCHAR",
            "'recorded band', 'census band' or 'all ages': the levels overlap, add up rows "
            "of one level only.",
        ),
        MartColumn(
            "census_age_band",
            "VARCHAR",
            "The Census 2021 age band whose population is the denominator (census band rows).",
        ),
        MartColumn("records", "BIGINT", "Use of force records (officer-subject pairs)."),
        MartColumn(
            "population",
            "BIGINT",
            "London usual residents of the group (and Census age band), Census 2021; NULL "
            "where no matching population exists.",
        ),
        MartColumn("rate_per_1000", "DOUBLE", "records per 1,000 residents of the group."),
        MartColumn(
            "white_rate_per_1000",
            "DOUBLE",
            "The White group's rate in the same window and age band, the reference.",
        ),
        MartColumn(
            "ratio_to_white",
            "DOUBLE",
            "rate_per_1000 over white_rate_per_1000 (NULL when either is missing or withheld).",
        ),
    ),
    sql=_use_of_force_subjects_sql,
    order_by=("time_window", "month", "_level", "age_band", "_order", "ethnic_group"),
    publication=True,
    threshold=10,
    disclosure="Use of force records are special-category data about individuals; counts "
    "under 10 could identify people.",
    suppressions=(
        Suppression("records", ("records", "rate_per_1000", "ratio_to_white")),
        Suppression("_white_records", ("white_rate_per_1000", "ratio_to_white"), flag=False),
    ),
    latest=_LATEST_12 + " AND age_band_level <> 'recorded band'",
    headline="""
        SELECT max(month) AS latest_month,
               max(ratio_to_white) FILTER (WHERE ethnic_group = 'Black')
                   AS black_white_ratio_all_ages_12m
        FROM mart WHERE time_window = '12 months' AND age_band_level = 'all ages'
          AND month = (SELECT max(month) FROM mart)
    """,
)


# --- 6. use of force by tactic ----------------------------------------------------------


# The twenty tactic columns share one list of agreed tactics.
FORCE_TACTIC = AgreedCategory(
    "tactic", "use_of_force", tuple(f"tactic_{i}" for i in range(1, 21)), "tactic"
)


def _use_of_force_tactics_sql(m: Mappings, contracts: dict[str, Contract]) -> str:
    group = ethnic_group_sql("subject_ethnicity", m.ethnicity["use_of_force.subject_ethnicity"])
    tactics = [
        c.name
        for c in contracts["use_of_force"].columns
        if c.name.startswith("tactic_") and c.name.removeprefix("tactic_").isdigit()
    ]
    return f"""
    WITH records AS (
        SELECT _delivery_id, _source_row, date_trunc('month', incident_date)::DATE AS month,
               {group} AS ethnic_group, {", ".join(tactics)}
        FROM curated.use_of_force
    ),
    used AS (
        SELECT DISTINCT _delivery_id, _source_row, month, ethnic_group,
               {FORCE_TACTIC.sql("tactic", contracts)} AS tactic
        FROM (UNPIVOT records ON {", ".join(tactics)} INTO NAME slot VALUE tactic)
        WHERE trim(tactic) <> ''
    ),
    with_tactic AS (
        SELECT month,
               CASE WHEN grouping(ethnic_group) = 1 THEN 'All' ELSE ethnic_group END
                   AS ethnic_group,
               tactic, count(*) AS records_with_tactic
        FROM used GROUP BY GROUPING SETS ((month, tactic), (month, ethnic_group, tactic))
    ),
    totals AS (
        SELECT month,
               CASE WHEN grouping(ethnic_group) = 1 THEN 'All' ELSE ethnic_group END
                   AS ethnic_group,
               count(*) AS records
        FROM records GROUP BY GROUPING SETS ((month), (month, ethnic_group))
    ),
    {_windows(["ethnic_group", "tactic"], ["records_with_tactic"], "with_tactic", "tactic_w")},
    {_windows(["ethnic_group"], ["records"], "totals", "total_w")}
    SELECT t.*, a.records, t.records_with_tactic / a.records AS share_of_records,
           {group_order_sql("t.ethnic_group", ("All", *m.groups))} AS _order
    FROM tactic_w t
    JOIN total_w a ON a.time_window = t.time_window AND a.month = t.month
                  AND a.ethnic_group = t.ethnic_group
    """


USE_OF_FORCE_TACTICS = Mart(
    name="use_of_force_tactics",
    title="Use of force by tactic",
    definition=(
        "How often each tactic was used: the number of use of force records that list the "
        "tactic, and their share of all records, overall ('All') and by the subject's "
        "perceived ethnic group, for each month and the 12 months ending with it."
    ),
    grain="one row per time window, month, ethnic group (or All) and tactic used at least once",
    numerator="records (one per officer per subject) listing the tactic in any of Tactic 1 to "
    "20, counted once per record however often it is listed.",
    denominator="all records of the ethnic group (or all records) in the window.",
    source_fields=(
        "use_of_force.incident_date",
        "use_of_force.tactic_1 ... tactic_20",
        "use_of_force.subject_ethnicity",
    ),
    caveats=(
        "A record lists several tactics, so shares add up to more than 1.",
        "Tactics are listed in the order recorded, not necessarily the order used; a "
        "drawn or aimed Taser or firearm is a use of force even when not fired.",
        "A record is one officer and one subject, not an incident or a person.",
        f"A tactic the agreement does not list is counted under {NOT_AGREED}: a record "
        "listing one or more such values counts once there.",
    ),
    sources=("use_of_force",),
    columns=(
        *_WINDOW_COLUMNS,
        MartColumn(
            "ethnic_group",
            "VARCHAR",
            "Subject's perceived ethnicity (Census 2021 groups, Not recorded, Not mapped) or All.",
        ),
        MartColumn(
            "tactic",
            "VARCHAR",
            "The tactic, as the use of force form names it (one the agreement lists), or "
            f"{NOT_AGREED}: records listing any other value, counted once however many.",
        ),
        MartColumn("records_with_tactic", "BIGINT", "Records listing the tactic."),
        MartColumn("records", "BIGINT", "All records of the ethnic group in the window."),
        MartColumn("share_of_records", "DOUBLE", "records_with_tactic over records, from 0 to 1."),
    ),
    sql=_use_of_force_tactics_sql,
    order_by=("time_window", "month", "_order", "ethnic_group", "tactic"),
    publication=True,
    threshold=10,
    disclosure="As use_of_force_subjects.",
    agreed=(FORCE_TACTIC,),
    suppressions=(
        Suppression("records_with_tactic", ("records_with_tactic", "share_of_records")),
        Suppression("records", ("records", "share_of_records")),
    ),
    latest=_LATEST_12 + " AND ethnic_group = 'All'",
    headline="""
        SELECT max(month) AS latest_month, max(records) AS records_12m,
               max(share_of_records) FILTER (WHERE tactic LIKE 'CED (Taser)%Fired')
                   AS taser_fired_share_12m
        FROM mart WHERE time_window = '12 months' AND ethnic_group = 'All'
          AND month = (SELECT max(month) FROM mart)
    """,
)


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


MARTS: dict[str, Mart] = {
    m.name: m
    for m in (
        STOP_SEARCH_OUTCOMES,
        CRIME_TRENDS,
        CRIME_OUTCOME_RATES,
        USE_OF_FORCE_SUBJECTS,
        USE_OF_FORCE_TACTICS,
        DATA_QUALITY,
    )
}
# The marts kept as files (`pipelines/oversight/marts/<mart>.sql` and `.yaml`) join those
# still defined here, in the pack's order; a mart an analyst adds as files comes after.
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
MARTS = {**MARTS, **load_marts(MARTS_DIR)}
MARTS = {
    name: MARTS[name]
    for name in sorted(MARTS, key=lambda n: (PACK_ORDER.index(n) if n in PACK_ORDER else 99, n))
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
