"""The stop-and-search marts map each distinct delivered value once (issue 21): they count
the searches by London month and delivered values first, then read the mappings. For any
rows (the real June 2022 file's values, the same in odd case and spacing, blanks, NULLs,
values no mapping or agreement knows, timestamps either side of a London month's edge, no
timestamp), every count is what mapping each search on its own gives. And the check that
every row lies in its period's month, counted once per distinct timestamp and period, counts
what checking each row does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.oversight import incremental_marts
from pipelines.oversight.definition import marts_dir
from pipelines.oversight.mart_runner import MARTS, load_mappings, warehouse_connection
from pipelines.validation.row_validation import curated_schema
from pipelines.warehouse.catalog import MONTH_OF_PERIOD
from pipelines.warehouse.reference import MAPPINGS_DIR, SAFE_LOADER
from schemas.contract import load_contracts
from tests.conftest import REAL_STOP_AND_SEARCH

CONTRACTS = load_contracts()
COLUMNS = (
    "officer_defined_ethnicity",
    "self_defined_ethnicity",
    "legislation",
    "object_of_search",
    "outcome",
)


def _real_values() -> dict[str, list[str]]:
    """Each column's distinct values in the real June 2022 file."""
    names = {c: c.replace("_", " ").capitalize().replace("Officer defined", "Officer-defined")
             for c in COLUMNS}  # fmt: skip
    names["self_defined_ethnicity"] = "Self-defined ethnicity"
    out = {}
    for column, header in names.items():
        rows = duckdb.sql(
            f"SELECT DISTINCT \"{header}\" FROM read_csv('{REAL_STOP_AND_SEARCH}', "
            f'all_varchar = true) WHERE "{header}" IS NOT NULL ORDER BY ALL'
        ).fetchall()
        out[column] = [r[0] for r in rows]
        assert out[column], column
    return out


REAL = _real_values()


def delivered(column: str) -> st.SearchStrategy[str | None]:
    """A value as a force might deliver it: a real one, the same in odd case or with spaces
    around it, blank, NULL, or text no mapping or agreement lists."""
    real = st.sampled_from(REAL[column])
    return st.one_of(
        real,
        real.map(lambda v: f"  {v} "),
        real.map(str.upper),
        st.sampled_from(["", "  ", "Not stated", "Unknown"]),
        st.none(),
        st.text(alphabet="abcXYZ -/", max_size=6),
    )


# Instants either side of London month edges (in and out of summer time), and any instant.
EDGES = [
    dt.datetime(2022, 3, 31, 23, 0, tzinfo=dt.UTC),  # 1 April 00:00 in London (BST)
    dt.datetime(2022, 6, 30, 22, 59, 59, tzinfo=dt.UTC),  # still June in London
    dt.datetime(2022, 6, 30, 23, 0, tzinfo=dt.UTC),  # July in London, June in UTC
    dt.datetime(2022, 12, 31, 23, 59, 59, tzinfo=dt.UTC),  # December in both
    dt.datetime(2023, 1, 1, 0, 0, tzinfo=dt.UTC),  # January in both
]
instants = st.one_of(
    st.none(),
    st.sampled_from(EDGES),
    st.datetimes(
        min_value=dt.datetime(2022, 1, 1),
        max_value=dt.datetime(2023, 2, 28),
        timezones=st.just(dt.UTC),
    ),
)
searches = st.lists(
    st.tuples(instants, *(delivered(c) for c in COLUMNS), st.sampled_from(["2022-06", "2022-07"])),
    min_size=1,
    max_size=40,
)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB with the reference schema and `curated.stop_and_search` over a table the
    tests fill (`curated.rows`, the contract's curated schema), with the warehouse's
    `_month` column."""
    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA curated")
    schema = curated_schema(CONTRACTS["stop_and_search"])
    connection.register("_empty", pa.Table.from_batches([], schema))
    connection.execute("CREATE TABLE curated.rows AS SELECT * FROM _empty")
    connection.unregister("_empty")
    connection.execute(
        f"CREATE VIEW curated.stop_and_search AS SELECT *, {MONTH_OF_PERIOD} FROM curated.rows"
    )
    with warehouse_connection(connection, CONTRACTS) as ready:
        yield ready
    connection.close()


def fill(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """Make `rows` (date, the COLUMNS, period) the curated stop and search rows."""
    schema = curated_schema(CONTRACTS["stop_and_search"])
    columns = {
        "date": [r[0] for r in rows],
        **{c: [r[i + 1] for r in rows] for i, c in enumerate(COLUMNS)},
        "_period": [r[-1] for r in rows],
        "_delivery_id": ["d"] * len(rows),
        "_source_row": list(range(1, len(rows) + 1)),
    }
    table = pa.table(
        {f.name: pa.array(columns.get(f.name, [None] * len(rows)), f.type) for f in schema},
        schema=schema,
    )
    con.execute("DELETE FROM curated.rows")
    con.register("_rows", table)
    con.execute("INSERT INTO curated.rows SELECT * FROM _rows")
    con.unregister("_rows")


def body(con: duckdb.DuckDBPyConnection, mart: str, where: str) -> set[tuple]:
    """The mart's own SQL (no suppression), its rows matching `where`."""
    sql = MARTS[mart].sql(load_mappings(), CONTRACTS)
    return set(con.execute(f"SELECT * FROM ({sql}) WHERE {where}").fetchall())


# Each search mapped on its own: the macros as the marts applied them row by row.
PER_SEARCH = """
    SELECT oversight_ref.london_month(date) AS month,
           oversight_ref.ethnic_group('stop_and_search.officer_defined_ethnicity',
                                      officer_defined_ethnicity) AS officer_group,
           oversight_ref.ethnic_group('stop_and_search.self_defined_ethnicity',
                                      self_defined_ethnicity) AS self_group,
           CASE WHEN legislation IS NULL OR legislation = '' THEN 'Not recorded'
                ELSE oversight_ref.agreed_value('stop_and_search', 'legislation', legislation)
           END AS legislation,
           CASE WHEN object_of_search IS NULL OR object_of_search = '' THEN 'Not recorded'
                ELSE oversight_ref.agreed_value('stop_and_search', 'object_of_search',
                                                object_of_search)
           END AS object_of_search,
           outcome NOT IN (SELECT outcome FROM oversight_ref.search_no_further_action)
               AS action_taken
    FROM curated.stop_and_search
"""


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=searches)
def test_every_count_is_what_mapping_each_search_gives(con, rows):
    fill(con, rows)
    expected = set(
        con.execute(
            f"SELECT month, basis, ethnic_group, count(*) FROM ("
            f"  SELECT month, 'officer-defined' AS basis, officer_group AS ethnic_group "
            f"  FROM ({PER_SEARCH}) UNION ALL "
            f"  SELECT month, 'self-defined', self_group FROM ({PER_SEARCH}))"
            # A search with no timestamp is in no month's count (the mart shows a
            # month with none as 0 searches, as it always did).
            f" WHERE month IS NOT NULL GROUP BY ALL"
        ).fetchall()
    )
    shown = body(con, "stop_search_disproportionality", "time_window = 'month' AND searches > 0")
    assert {(r[1], r[4], r[5], r[6]) for r in shown} == expected

    expected = set(
        con.execute(
            f"SELECT month, basis, ethnic_group, legislation, object_of_search, count(*),"
            f"       count(*) FILTER (WHERE action_taken) FROM ("
            f"  SELECT month, 'officer-defined' AS basis, officer_group AS ethnic_group, "
            f"         legislation, object_of_search, action_taken FROM ({PER_SEARCH}) "
            f"  UNION ALL SELECT month, 'self-defined', self_group, legislation, "
            f"         object_of_search, action_taken FROM ({PER_SEARCH})) GROUP BY ALL"
        ).fetchall()
    )
    shown = body(con, "stop_search_outcomes", "time_window = 'month' AND _depth = 3")
    assert {(r[1], r[4], r[5], r[6], r[7], r[8], r[9]) for r in shown} == expected


MONTH_OF_ROW = MARTS["stop_search_outcomes"].incremental.month_of_row


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=searches,
    periods=st.one_of(st.none(), st.lists(st.sampled_from(["2022-06", "2022-07", "2022-08"]))),
    expression=st.sampled_from(
        [
            MONTH_OF_ROW,
            # Read by a subquery or under a qualified name: checked row by row, as before.
            f"(SELECT {MONTH_OF_ROW})",
            MONTH_OF_ROW.replace("(date)", "(stop_and_search.date)"),
            "_month",
        ]
    ),
)
def test_rows_outside_their_month_are_counted_as_row_by_row(con, rows, periods, expression):
    fill(con, rows)
    inc = MARTS["stop_search_outcomes"].incremental
    inc = dataclasses.replace(inc, month_of_row=expression)
    incremental_marts._OUTSIDE.pop(id(con), None)  # counted afresh for these rows
    listed = "" if periods is None else "AND _period IN (SELECT unnest(?::VARCHAR[]))"
    ((expected,),) = con.execute(
        f"SELECT count(*) FROM curated.stop_and_search "
        f"WHERE ({expression}) IS DISTINCT FROM _month {listed}",
        [] if periods is None else [periods],
    ).fetchall()
    assert incremental_marts._rows_outside_month(con, inc, periods) == expected


def test_every_mapping_and_mart_file_reads_as_the_pure_python_safe_loader_reads_it():
    # The mappings and the marts' definitions are read with libyaml's loader when PyYAML
    # has it (faster); what they say must not depend on which loader read them.
    files = [*MAPPINGS_DIR.glob("*.yaml"), *marts_dir().glob("*.yaml")]
    assert len(files) >= 14
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert yaml.load(text, Loader=SAFE_LOADER) == yaml.safe_load(text), path.name
