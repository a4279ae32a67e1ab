"""Every real published sample goes through its contract with every row accounted for."""

import csv

import duckdb
import pytest

from pipelines.lake.store import FolderLake
from pipelines.validation.row_validation import validate_delivery
from schemas.contract import load_contracts
from tests.conftest import REAL_DATA

SAMPLES = [
    ("stop_and_search", "2022-06", "stop_and_search/2022-06-metropolitan-stop-and-search.csv"),
    ("street_crime", "2023-01", "street_crime/2023-01-metropolitan-street-burglary-only.csv"),
    ("street_crime", "2023-01", "street_crime/2023-01-city-of-london-street.csv"),
    ("crime_outcomes", "2023-01", "crime_outcomes/2023-01-metropolitan-outcomes.csv"),
    (
        "borough_crime",
        "2024-02",
        "borough_crime/MPS Borough Level Crime (most recent 24 months) 2022-02 to 2024-01.csv",
    ),
    ("census_2021_population", "2021-03", "reference/census2021_london_age3_ethnic8_sex.csv"),
]


def _data_rows(path) -> int:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


@pytest.mark.parametrize(("contract", "period", "sample"), SAMPLES, ids=[s[2] for s in SAMPLES])
def test_real_sample_every_row_curated_or_quarantined(tmp_path, contract, period, sample):
    path = REAL_DATA / sample
    assert path.exists(), f"real sample missing: {path}"
    lake = FolderLake(tmp_path / "lake")
    chosen = load_contracts()[contract]
    outcome = validate_delivery(chosen, path, period, "real", lake, b"test-key")
    delivered = _data_rows(path)
    assert outcome.rows_delivered == delivered
    assert outcome.rows_curated + outcome.rows_quarantined == delivered

    staged = lake.path(lake.staging_path(contract, period, "real"))
    quarantine = lake.path(lake.quarantine_path(contract, period, "real"))
    parts = [f"SELECT DISTINCT _source_row FROM read_parquet('{staged}')"]
    if quarantine.exists():
        parts.append(f"SELECT _source_row FROM read_parquet('{quarantine}')")
    numbers = duckdb.sql(" UNION ALL ".join(parts)).fetchall()
    assert sorted(n for (n,) in numbers) == list(range(1, delivered + 1))
    # Real, published data: nothing in it is broken enough to hold a month back.
    assert not [b for b in outcome.breaches if b.severity == "critical"]


def test_borough_crime_release_is_curated_long_with_a_row_per_month(tmp_path):
    path = REAL_DATA / SAMPLES[4][2]
    lake = FolderLake(tmp_path / "lake")
    contract = load_contracts()["borough_crime"]
    validate_delivery(contract, path, "2024-02", "real", lake)
    staged = lake.path(lake.staging_path("borough_crime", "2024-02", "real"))
    months, rows = duckdb.sql(
        f"SELECT count(DISTINCT month), count(*) FROM read_parquet('{staged}')"
    ).fetchall()[0]
    assert months == 24 and rows == 24 * _data_rows(path)
