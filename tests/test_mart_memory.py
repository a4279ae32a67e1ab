"""The marts' DuckDB works within a memory cap, and the cap changes no figure.

Issue 21: the 2M-row month peaked at 1.2 GB because DuckDB, left at its default (80% of the
machine), took 400-650 MB more while it computed the stop-and-search marts. The connection
the marts run in is capped; over the cap DuckDB spills to disk, and the rows must not change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.lake.store import FolderLake
from pipelines.oversight import mart_runner
from pipelines.oversight.mart_runner import MARTS, compute_mart, warehouse_connection
from pipelines.validation.row_validation import validate_delivery
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts
from tests.conftest import REAL_DATA

CONTRACTS = load_contracts()
STOP_SEARCH_MARTS = [n for n in MARTS if n.startswith("stop_search")]


@pytest.fixture(scope="module")
def real_warehouse(tmp_path_factory) -> Path:
    """The real June 2022 stop-and-search file and the Census, curated, in a warehouse."""
    root = tmp_path_factory.mktemp("mart-memory")
    lake = FolderLake(root / "lake")
    real = [
        ("stop_and_search", "2022-06",
         REAL_DATA / "stop_and_search" / "2022-06-metropolitan-stop-and-search.csv"),
        ("census_2021_population", "2021-03",
         REAL_DATA / "reference" / "census2021_london_age3_ethnic8_sex.csv"),
    ]  # fmt: skip
    for contract, period, path in real:
        validate_delivery(CONTRACTS[contract], path, period, "real", lake)
        lake.path(lake.curated_path(contract, period)).parent.mkdir(parents=True, exist_ok=True)
        os.replace(
            lake.path(lake.staging_path(contract, period, "real")),
            lake.path(lake.curated_path(contract, period)),
        )
    return build_warehouse(lake, CONTRACTS, root / "warehouse.duckdb")


def _limit_bytes(text: str) -> float:
    """DuckDB's own spelling of a memory limit ('429.1 MiB') in bytes."""
    number, unit = text.split()
    return float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]


def test_the_marts_connection_is_capped_below_a_gigabyte(real_warehouse):
    with warehouse_connection(real_warehouse, CONTRACTS) as con:
        (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    # The rest of a run (Dagster, great-expectations, the row engine's leftovers) holds
    # about 530 MB when the marts start: the cap must leave the whole under 1 GB.
    assert _limit_bytes(limit) <= 500 * 2**20


def test_a_tight_cap_changes_no_mart_row(real_warehouse, monkeypatch):
    monkeypatch.setattr(mart_runner, "MART_MEMORY_LIMIT", "16GB")
    free = {n: compute_mart(n, real_warehouse, contracts=CONTRACTS) for n in STOP_SEARCH_MARTS}
    monkeypatch.setattr(mart_runner, "MART_MEMORY_LIMIT", "100MB")
    for name in STOP_SEARCH_MARTS:
        capped = compute_mart(name, real_warehouse, contracts=CONTRACTS)
        assert free[name].num_rows > 0
        assert capped.equals(free[name]), name
