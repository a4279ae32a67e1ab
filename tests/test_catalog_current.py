"""A run leaves `warehouse.duckdb` as it is when a rebuild would make the same catalog.

The catalog's views read the lake's files by pattern, so a month published, a record
written or a mart recomputed shows in it without a rebuild; a rebuild per run cost a
one-new-month run a second or more, growing with the lake (issue 21). What does need a
new catalog: another lake, a contract, mapping or line of the building code that changed,
a record set that had no files (an empty stand-in table) and has some now, and a mart
whose view is missing or whose definition changed. `catalog_current` says which.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.governance.audit_log import EXPORT_SCHEMA
from pipelines.governance.breach_register import BREACH_EVENT_SCHEMA
from pipelines.lake.provenance import MART_SOURCES_SCHEMA
from pipelines.lake.register import BREACH_SCHEMA, DELIVERY_EVENT_SCHEMA
from pipelines.lake.retention import ERASURE_SCHEMA
from pipelines.lake.store import Lake, open_lake
from pipelines.oversight.mart_runner import write_mart
from pipelines.validation.row_validation import QUARANTINE_SCHEMA, curated_schema
from pipelines.warehouse.catalog import (
    GOVERNANCE_SOURCES,
    build_warehouse,
    catalog_current,
    curated_pattern,
)
from schemas.contract import load_contracts

CONTRACTS = load_contracts()
SCHEMAS = {
    "governance.delivery_events": DELIVERY_EVENT_SCHEMA,
    "governance.breach_records": BREACH_SCHEMA,
    "governance.breach_events": BREACH_EVENT_SCHEMA,
    "governance.erasures": ERASURE_SCHEMA,
    "governance.exports": EXPORT_SCHEMA,
    "governance.quarantine_history": QUARANTINE_SCHEMA,
    "governance.mart_sources_history": MART_SOURCES_SCHEMA,
}
CURATED = ("stop_and_search", "use_of_force", "complaints")
# Every record set a catalog reads that a run can give its first file.
RECORD_SETS = sorted(SCHEMAS) + [f"curated.{name}" for name in CURATED]


def _first_file(lake: Lake, record_set: str) -> None:
    """Write a record set's first file (no rows, its own schema), where its view reads."""
    if record_set.startswith("curated."):
        contract = CONTRACTS[record_set.removeprefix("curated.")]
        pattern, schema = curated_pattern(contract), curated_schema(contract)
    else:
        pattern, schema = GOVERNANCE_SOURCES[record_set], SCHEMAS[record_set]
    key = (
        pattern.replace("contract=*", "contract=stop_and_search")
        .replace("period=*", "period=2025-01")
        .replace("mart=*", "mart=crime_trends")
        .replace("*.parquet", "first.parquet")
    )
    lake.write_table(key, pa.Table.from_batches([], schema))


def test_a_catalog_just_built_is_current_and_each_change_it_cannot_show_is_not(tmp_path: Path):
    lake = open_lake(tmp_path / "lake")
    path = build_warehouse(lake, CONTRACTS, tmp_path / "warehouse.duckdb")
    assert catalog_current(path, lake, CONTRACTS)

    # Another lake (the home moved, or another one): its views read elsewhere.
    assert not catalog_current(path, open_lake(tmp_path / "elsewhere"), CONTRACTS)
    # A contract changed (its file): its comments and columns may have.
    changed = tmp_path / "stop_and_search.yaml"
    original = CONTRACTS["stop_and_search"]
    changed.write_text(original.path.read_text() + "\n# edited\n")
    edited = {**CONTRACTS, "stop_and_search": dataclasses.replace(original, path=changed)}
    assert not catalog_current(path, lake, edited)
    # ... or a contract given changed in memory (a new version).
    newer = {**CONTRACTS, "stop_and_search": dataclasses.replace(original, version="9.0.0")}
    assert not catalog_current(path, lake, newer)
    # One contract fewer (or more).
    fewer = {k: v for k, v in CONTRACTS.items() if k != "workforce"}
    assert not catalog_current(path, lake, fewer)
    # A catalog built by an earlier version, before `built_from`.
    old = tmp_path / "old.duckdb"
    old.write_bytes(path.read_bytes())
    with duckdb.connect(str(old)) as con:
        con.execute("ALTER TABLE governance.catalog DROP COLUMN built_from")
    assert not catalog_current(old, lake, CONTRACTS)
    assert not catalog_current(tmp_path / "missing.duckdb", lake, CONTRACTS)


def test_a_mart_is_current_only_with_its_view_reading_its_file_with_its_comments(
    tmp_path: Path,
):
    lake = open_lake(tmp_path / "lake")
    path = build_warehouse(lake, CONTRACTS, tmp_path / "warehouse.duckdb")
    write_mart("crime_trends", path, lake, CONTRACTS)
    build_warehouse(lake, CONTRACTS, path)
    # A mart computed for the first time: the catalog has no view over it yet.
    written = write_mart("data_quality", path, lake, CONTRACTS)
    assert catalog_current(path, lake, CONTRACTS)
    assert not catalog_current(
        path, lake, CONTRACTS, {"data_quality": (written.path, written.table.schema)}
    )
    # Recomputed as it was defined: the view reads the new file as it is.
    again = write_mart("crime_trends", path, lake, CONTRACTS)
    marts = {"crime_trends": (again.path, again.table.schema)}
    assert catalog_current(path, lake, CONTRACTS, marts)
    # A definition whose comment, or a column's, changed; a column more; another file.
    schema = again.table.schema
    metadata = dict(schema.metadata)
    retitled = schema.with_metadata({**metadata, b"comment": b"Another definition."})
    column = f"comment:{schema.names[0]}".encode()
    recolumned = schema.with_metadata({**metadata, column: b"Another column comment."})
    wider = schema.append(pa.field("new_measure", pa.float64())).with_metadata(metadata)
    for changed in (retitled, recolumned, wider):
        assert not catalog_current(path, lake, CONTRACTS, {"crime_trends": (again.path, changed)})
    moved = again.path.replace("crime_trends", "crime_trends_v2")
    assert not catalog_current(path, lake, CONTRACTS, {"crime_trends": (moved, schema)})


@pytest.fixture(scope="module")
def empty_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose `pristine/` holds an empty lake and the warehouse built on it at
    `work/` (built once: a build is most of an example's time)."""
    folder = tmp_path_factory.mktemp("empty-catalog")
    lake = open_lake(folder / "work" / "lake")
    build_warehouse(lake, CONTRACTS, folder / "work" / "warehouse.duckdb")
    shutil.copytree(folder / "work", folder / "pristine")
    return folder


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first_files=st.sets(st.sampled_from(RECORD_SETS), max_size=3))
def test_a_record_set_given_its_first_file_needs_a_rebuild_and_a_rebuild_makes_it_current(
    empty_catalog: Path, first_files: set[str]
):
    """For any record sets getting their first file after the catalog was built (their
    views were empty stand-in tables), the catalog is current exactly when there are none;
    a rebuild then shows them, and is current again."""
    # The empty lake and its just-built warehouse, put back where they were built.
    shutil.rmtree(empty_catalog / "work")
    shutil.copytree(empty_catalog / "pristine", empty_catalog / "work")
    lake = open_lake(empty_catalog / "work" / "lake")
    path = empty_catalog / "work" / "warehouse.duckdb"
    for record_set in sorted(first_files):
        _first_file(lake, record_set)
    assert catalog_current(path, lake, CONTRACTS) == (not first_files)
    build_warehouse(lake, CONTRACTS, path)
    assert catalog_current(path, lake, CONTRACTS)
    # ... and a second file in a set that has one needs nothing.
    with duckdb.connect(str(path), read_only=True) as con:
        kinds = dict(
            con.execute(
                "SELECT schema_name || '.' || view_name, 'view' FROM duckdb_views() "
                "UNION ALL SELECT schema_name || '.' || table_name, 'table' "
                "FROM duckdb_tables()"
            ).fetchall()
        )
    assert all(kinds[record_set] == "view" for record_set in first_files)


# The one-new-month run of the end-to-end benchmark (the month published, its marts
# recomputed and its records written, `warehouse.duckdb` left as it was, and what an analyst
# reads in it, comments and rows, what a fresh build gives) is held by tests/test_pipeline.py's
# new-month test, on the home its module's first run already made, with tests/catalog_reading.py.
