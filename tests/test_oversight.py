"""The oversight marts, their Dagster assets and the HTML pack.

Every expected figure below is worked out by hand from the small curated fixtures written
here (comments show the sums), and the disproportionality of the real June 2022 stop and
search file is checked against an independent computation (csv module and the Census 2021
totals in shared/real/README.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.oversight import build_oversight_assets, oversight_key
from assets.resources import LakeResource, WarehouseResource
from pipelines.cli.report import run_report_command
from pipelines.home.settings import Settings
from pipelines.lake.store import FolderLake
from pipelines.oversight.charts import FONT_SIZE, bar_chart, fmt_count, text_width
from pipelines.oversight.mart_runner import (
    MARTS,
    compute_mart,
    load_mappings,
    mart_notes,
    warehouse_connection,
    write_mart,
    write_marts,
)
from pipelines.oversight.pack import write_report
from pipelines.oversight.pack_charts import (
    MartData,
    Pack,
    chart_crime_trends,
    chart_stop_search_outcomes,
)
from pipelines.validation.agreed_values import NOT_AGREED
from pipelines.validation.row_validation import curated_schema, validate_delivery
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts
from tests.conftest import REAL_DATA

CONTRACTS = load_contracts()
UTC = dt.UTC
D = dt.date


# --- fixtures -----------------------------------------------------------------------------


def put(lake: FolderLake, contract: str, period: str, rows: list[dict]) -> None:
    """Write rows as the curated partition of `contract` for `period` (unset columns NULL)."""
    schema = curated_schema(CONTRACTS[contract])
    blank = {f.name: None for f in schema}
    full = [
        {
            **blank,
            **row,
            "_delivery_id": f"{contract}-{period}",
            "_source_row": i,
            "_period": period,
        }
        for i, row in enumerate(rows, start=1)
    ]
    lake.write_table(lake.curated_path(contract, period), pa.Table.from_pylist(full, schema=schema))


def census_rows() -> list[dict]:
    """Residents: White 2,000 (three White rows), Black 1,000, Asian 4,000, Mixed 500,
    Other 500 (8,000 in all); aged 50 and over: White 800, Black 600."""
    white = "White: English, Welsh, Scottish, Northern Irish or British"
    black = "Black, Black British, Black Welsh, Caribbean or African"
    roma = "White: Gypsy or Irish Traveller, Roma or Other White"
    young, middle, old = "Aged 24 years and under", "Aged 25 to 49 years", "Aged 50 years and over"
    cells = [  # (age code, age band, ethnic code, ethnic group, sex code, residents)
        (1, young, 4, white, 1, 500),
        (2, middle, 4, white, 2, 500),
        (3, old, 4, white, 1, 500),
        (3, old, 5, "White: Irish", 2, 300),
        (1, young, 6, roma, 1, 200),
        (1, young, 2, black, 1, 400),
        (3, old, 2, black, 2, 600),
        (2, middle, 1, "Asian, Asian British or Asian Welsh", 1, 4000),
        (1, young, 3, "Mixed or Multiple ethnic groups", 2, 500),
        (2, middle, 7, "Other ethnic group", 1, 500),
        (1, young, -8, "Does not apply", 1, 0),
    ]
    return [
        {
            "region_code": "E12000007", "region": "London", "age_band_code": a, "age_band": ab,
            "ethnic_group_code": e, "ethnic_group": eg, "sex_code": s,
            "sex": "Female" if s == 1 else "Male", "observation": n,
        }
        for a, ab, e, eg, s, n in cells
    ]  # fmt: skip


def search(
    day: dt.date,
    officer,
    self_,
    outcome="A no further action disposal",
    legislation="Misuse of Drugs Act 1971 (section 23)",
    obj="Controlled drugs",
) -> dict:
    return {
        "type": "Person search",
        "date": dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        "officer_defined_ethnicity": officer,
        "self_defined_ethnicity": self_,
        "outcome": outcome,
        "legislation": legislation,
        "object_of_search": obj,
    }


PACE = "Police and Criminal Evidence Act 1984 (section 1)"
MISUSE = "Misuse of Drugs Act 1971 (section 23)"
AFRICAN = "Black/African/Caribbean/Black British - African"
CARIBBEAN = "Black/African/Caribbean/Black British - Caribbean"
WBC = "Mixed/Multiple ethnic groups - White and Black Caribbean"
IRISH = "White - Irish"
NOT_STATED = "Other ethnic group - Not stated"


def stop_and_search_rows() -> dict[str, list[dict]]:
    june, july, august = D(2024, 6, 10), D(2024, 7, 10), D(2024, 8, 10)
    return {
        "2024-06": (
            [search(june, "Black", AFRICAN, "Arrest")] * 10  # 20 Black/African, 10 arrested
            + [search(june, "Black", AFRICAN)] * 10
            + [search(june, "Black", WBC, legislation=PACE, obj="Offensive weapons")] * 10
            + [search(june, "White", IRISH + " ", "Community resolution")] * 5  # trailing space
            + [search(june, "White", IRISH + " ")] * 5
            + [
                search(
                    june,
                    "Asian",
                    "Asian/Asian British - Indian",
                    legislation=PACE,
                    obj="Stolen goods",
                )
            ]
            * 2  # fmt: skip
            + [search(june, None, NOT_STATED, legislation=PACE, obj=None)] * 12
        ),  # 54 searches
        "2024-07": (
            [search(july, "Black", CARIBBEAN, "Arrest")] * 10
            + [search(july, "White", "White - English/Welsh/Scottish/Northern Irish/British")] * 10
        ),  # 20 searches
        "2024-08": [search(august, "White", IRISH)] * 3 + [search(august, "Black", AFRICAN)] * 12,
    }


def use_of_force_rows() -> list[dict]:
    day = D(2024, 6, 5)

    def uof(ethnicity, age, *tactics):
        row = {"incident_date": day, "incident_time": "12:00", "officer_key": "tok",
               "borough": "Camden", "subject_ethnicity": ethnicity, "subject_age": age}  # fmt: skip
        row.update({f"tactic_{i}": t for i, t in enumerate(tactics, start=1)})
        return row

    return (
        [uof("Black (or Black British)", "18-34", "Compliant Handcuffing", "CED (Taser) Drawn")]
        * 10
        + [uof("Black (or Black British)", "18-34", "Compliant Handcuffing")] * 10
        + [uof("Black (or Black British)", "50-64", "Ground Restraint", "Ground Restraint")] * 12
        + [uof("White", "65 and over", "Compliant Handcuffing")] * 10
        + [uof("Chinese", "35-49", "Tactical Communications")] * 10
        + [uof(None, None, "Spit Guard")] * 3
    )  # 55 records


def complaint(ref, handling, received, finalised=None) -> dict:
    return {
        "case_reference": ref, "allegation_number": 1, "received_date": received,
        "finalised_date": finalised, "handling": handling,
        "allegation_category": "Delivery of duties and service",
    }  # fmt: skip


def complaints_rows() -> dict[str, list[dict]]:
    jan1 = D(2024, 1, 1)
    january = [complaint(f"CO/{i}", "Schedule 3", jan1) for i in range(1, 13)]  # 12 open
    january.append(complaint("CO/13", "Schedule 3", jan1, D(2024, 1, 15)))  # finalised Jan
    february = [  # CO/1..10 finalised 1-10 Feb: 31..40 days
        complaint(f"CO/{i}", "Schedule 3", jan1, D(2024, 2, i)) for i in range(1, 11)
    ]
    february += [complaint(f"CO/{i}", "Schedule 3", jan1) for i in (11, 12)]  # still open
    february += [
        complaint(f"CO/{i}", "Outside Schedule 3", D(2024, 2, 1), D(2024, 2, 3))
        for i in (20, 21, 22)
    ]
    return {"2024-01": january, "2024-02": february}


def call(grade, received: dt.datetime, minutes: float | None, borough="Camden") -> dict:
    arrival = received + dt.timedelta(minutes=minutes) if minutes is not None else None
    return {
        "call_reference": f"{grade}-{received.isoformat()}-{minutes}-{borough}",
        "grade": grade, "call_received": received, "first_arrival": arrival, "borough": borough,
    }  # fmt: skip


def emergency_rows() -> list[dict]:
    t = dt.datetime(2024, 6, 10, 9, tzinfo=UTC)
    return [
        call("I", t, 10), call("I", t, 15), call("I", t, 16), call("I", t, None),
        call("S", t, 59), call("S", t, 61),
        call("I", t, 5, borough=None),
        call("E", t, 600),
        # 23:30 UTC on 30 June is 00:30 on 1 July in London.
        call("I", dt.datetime(2024, 6, 30, 23, 30, tzinfo=UTC), 10),
    ]  # fmt: skip


def trust_rows() -> dict[str, list[dict]]:
    def pas(date, borough, proportion):
        return {"date": date, "survey": "PAS", "borough": borough, "measure": "Trust MPS",
                "proportion": proportion}  # fmt: skip

    q1_23, q1_24, q2_24 = D(2023, 3, 31), D(2024, 3, 31), D(2024, 6, 30)
    return {
        "2024-03": [pas(q1_23, "Camden", 0.70), pas(q1_23, "Hackney", 0.60),
                    pas(q1_24, "Camden", 0.50), pas(q1_24, "Hackney", 0.40)],
        "2024-06": [pas(q1_24, "Camden", 0.66), pas(q1_24, "Hackney", 0.56),  # revised
                    pas(q2_24, "Camden", 0.68), pas(q2_24, "Hackney", 0.58)],
    }  # fmt: skip


def workforce_rows() -> list[dict]:
    month = D(2024, 3, 1)

    def staff(bcu, worker, ethnicity, headcount):
        return {"month": month, "bcu": bcu, "worker_type": worker, "rank": "Not applicable",
                "gender": "Female", "ethnicity": ethnicity, "headcount": headcount,
                "fte": float(headcount)}  # fmt: skip

    officer, staff_ = "Police Officer", "Police Staff"
    return [
        staff("Central West", officer, "White", 30), staff("North Area", officer, "White", 20),
        staff("Central West", officer, "Black", 20), staff("Central West", officer, "Asian", 20),
        staff("Central West", officer, "Mixed", 5), staff("Central West", officer, "Other", 5),
        staff("Central West", officer, "Not stated", 25),
        staff("Central West", staff_, "White", 30), staff("Central West", staff_, "Black", 30),
        staff("Central West", staff_, "Asian", 40),
    ]  # fmt: skip


def borough_crime_rows() -> dict[str, list[dict]]:
    def months(first: dt.date, n: int) -> list[dt.date]:
        return [D(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1)
                for i in range(n)]  # fmt: skip

    def cell(borough, major, minor, month, count):
        return {"borough": borough, "major_category": major, "minor_category": minor,
                "month": month, "count": count}  # fmt: skip

    old = []  # release 2024-01: Jan 2022 to Dec 2023, Camden burglary 10 + 5 a month
    for m in months(D(2022, 1, 1), 24):
        old += [cell("Camden", "Burglary", "Domestic Burglary", m, 10),
                cell("Camden", "Burglary", "Burglary Business and Community", m, 5)]  # fmt: skip
    new = []  # release 2024-02: Feb 2022 to Jan 2024; Dec 2023 revised; Hackney robbery added
    for m in months(D(2022, 2, 1), 24):
        domestic = {D(2023, 12, 1): 20, D(2024, 1, 1): 30}.get(m, 10)
        business = None if m == D(2024, 1, 1) else 5  # a blank cell: unknown
        new += [cell("Camden", "Burglary", "Domestic Burglary", m, domestic),
                cell("Camden", "Burglary", "Burglary Business and Community", m, business),
                cell("Hackney", "Robbery", "Robbery of Personal Property", m, 1)]  # fmt: skip
    return {"2024-01": old, "2024-02": new}


A, B, C, E, DD, Z = (ch * 64 for ch in "abcedf")


JAN_2024 = D(2024, 1, 1)


def street(crime_id, crime_type, outcome, month=JAN_2024, lsoa="E01000001") -> dict:
    return {
        "crime_id": crime_id, "month": month, "reported_by": "Metropolitan Police Service",
        "falls_within": "Metropolitan Police Service", "location": "On or near X",
        "lsoa_code": lsoa, "crime_type": crime_type, "last_outcome_category": outcome,
    }  # fmt: skip


def outcome(crime_id, outcome_type, month) -> dict:
    return {"crime_id": crime_id, "month": month, "reported_by": "Metropolitan Police Service",
            "falls_within": "Metropolitan Police Service", "location": "On or near X",
            "outcome_type": outcome_type}  # fmt: skip


def street_rows() -> dict[str, list[dict]]:
    return {
        "2024-01": [
            street(A, "Burglary", "Under investigation"),
            street(A, "Burglary", "Under investigation", lsoa="E01000002"),  # second LSOA
            street(B, "Burglary", "Investigation complete; no suspect identified"),
            street(C, "Burglary", "Under investigation"),
            street(C, "Burglary", "Under investigation"),  # exact duplicate
            street(E, "Burglary", "Offender given a caution"),
            street(E, "Vehicle crime", "Offender given a caution"),  # a second type: Burglary
            street(DD, "Robbery", None),
            street(None, "Anti-social behaviour", None),  # no Crime ID: left out
        ],
        "2024-02": [street(A, "Burglary", "Under investigation", month=D(2024, 2, 1))],
    }


def outcome_rows() -> dict[str, list[dict]]:
    jan, feb = D(2024, 1, 1), D(2024, 2, 1)
    return {
        "2024-01": [
            outcome(A, "Under investigation", jan),
            outcome(C, "Suspect charged", jan),
            outcome(C, "Suspect charged", jan),  # identical row
            outcome(C, "Unable to prosecute suspect", jan),  # same month: charge wins
        ],
        "2024-02": [outcome(A, "Suspect charged", feb), outcome(Z, "Suspect charged", feb)],
    }


def write_fixtures(lake: FolderLake) -> None:
    put(lake, "census_2021_population", "2021-03", census_rows())
    for name, by_period in [
        ("stop_and_search", stop_and_search_rows()),
        ("complaints", complaints_rows()),
        ("public_attitude_survey", trust_rows()),
        ("borough_crime", borough_crime_rows()),
        ("street_crime", street_rows()),
        ("crime_outcomes", outcome_rows()),
    ]:
        for period, rows in by_period.items():
            put(lake, name, period, rows)
    put(lake, "use_of_force", "2024-06", use_of_force_rows())
    put(lake, "emergency_response", "2024-06", emergency_rows())
    put(lake, "workforce", "2024-03", workforce_rows())


@pytest.fixture(scope="module")
def fixture_lake(tmp_path_factory) -> tuple[FolderLake, Path]:
    root = tmp_path_factory.mktemp("oversight")
    lake = FolderLake(root / "lake")
    write_fixtures(lake)
    return lake, build_warehouse(lake, CONTRACTS, root / "warehouse.duckdb")


@pytest.fixture(scope="module")
def marts(fixture_lake) -> dict[str, list[dict]]:
    lake, warehouse = fixture_lake
    with warehouse_connection(warehouse, CONTRACTS) as con:
        return {name: compute_mart(name, con, lake, CONTRACTS).to_pylist() for name in MARTS}


def pick(rows: list[dict], **where) -> dict:
    """The one row matching `where` (dates given as YYYY-MM-DD strings or dates)."""

    def same(value, wanted):
        if isinstance(wanted, str) and isinstance(value, dt.date):
            return value.isoformat() == wanted
        return value == wanted

    found = [r for r in rows if all(same(r[k], v) for k, v in where.items())]
    assert len(found) == 1, f"{len(found)} rows match {where}"
    return found[0]


approx = pytest.approx
DUCKDB_TO_ARROW = {"VARCHAR": "string", "DATE": "date32[day]", "INTEGER": "int32",
                   "BIGINT": "int64", "DOUBLE": "double", "BOOLEAN": "bool"}  # fmt: skip


# --- stop and search ------------------------------------------------------------------


def test_disproportionality_figures_worked_by_hand(marts):
    rows = marts["stop_search_disproportionality"]

    def row(window, month, basis, group):
        return pick(rows, time_window=window, month=month, basis=basis, ethnic_group=group)

    # June, officer-defined: Black 30 of 1,000 residents = 30.0 per 1,000; White 10 of 2,000
    # (three White census rows: 1,500 + 300 + 200) = 5.0; ratio 30 / 5 = 6.0.
    black = row("month", "2024-06-01", "officer-defined", "Black")
    white = row("month", "2024-06-01", "officer-defined", "White")
    assert (black["searches"], black["population"]) == (30, 1000)
    assert black["rate_per_1000"] == approx(30.0)
    assert (white["searches"], white["population"], white["rate_per_1000"]) == (10, 2000, 5.0)
    assert black["ratio_to_white"] == approx(6.0)
    assert black["white_rate_per_1000"] == approx(5.0)
    assert black["share_of_searches"] == approx(30 / 54)
    # Blank officer-defined ethnicity: counted and shown, no rate.
    blank = row("month", "2024-06-01", "officer-defined", "Not recorded")
    assert (blank["searches"], blank["population"], blank["rate_per_1000"]) == (12, None, None)
    assert blank["share_of_searches"] == approx(12 / 54)
    # No officer-defined Mixed row (officers cannot record it); zero is shown as zero.
    assert not [r for r in rows if r["basis"] == "officer-defined" and r["ethnic_group"] == "Mixed"]
    other = row("month", "2024-06-01", "officer-defined", "Other")
    assert (other["searches"], other["rate_per_1000"], other["ratio_to_white"]) == (0, 0.0, 0.0)

    # Self-defined: 20 Black African -> 20 per 1,000 (4.0x); 10 White and Black Caribbean ->
    # Mixed, 10 of 500 -> 20 per 1,000 (4.0x); "White - Irish " (trailing space) is White.
    assert row("month", "2024-06-01", "self-defined", "Black")["ratio_to_white"] == approx(4.0)
    mixed = row("month", "2024-06-01", "self-defined", "Mixed")
    assert (mixed["searches"], mixed["rate_per_1000"]) == (10, approx(20.0))
    assert mixed["ratio_to_white"] == approx(4.0)
    assert row("month", "2024-06-01", "self-defined", "White")["searches"] == 10
    assert row("month", "2024-06-01", "self-defined", "Not stated")["searches"] == 12
    # Every search is in exactly one group of each basis.
    for basis in ("officer-defined", "self-defined"):
        june = [r for r in rows if r["time_window"] == "month" and r["basis"] == basis
                and r["month"] == D(2024, 6, 1)]  # fmt: skip
        assert sum(r["searches"] or 0 for r in june) + 2 == 54  # 2 Asian withheld

    # July: Black 10 -> 10.0, White 10 -> 5.0: 2.0x. The 12 months to July (June + July):
    # Black 40 -> 40.0, White 20 -> 10.0: 4.0x, two months of data.
    assert row("month", "2024-07-01", "officer-defined", "Black")["ratio_to_white"] == approx(2.0)
    year = row("12 months", "2024-07-01", "officer-defined", "Black")
    assert (year["searches"], year["rate_per_1000"], year["ratio_to_white"]) == (
        40, approx(40.0), approx(4.0),
    )  # fmt: skip
    assert (year["window_start"], year["months_with_data"]) == (D(2023, 8, 1), 2)
    assert row("12 months", "2024-07-01", "self-defined", "Black")["ratio_to_white"] == approx(3.0)
    assert row("12 months", "2024-07-01", "self-defined", "Mixed")["ratio_to_white"] == approx(2.0)


def test_small_counts_are_withheld_and_marked_not_zero(marts):
    rows = marts["stop_search_disproportionality"]
    asian = pick(rows, time_window="month", month="2024-06-01", basis="officer-defined",
                 ethnic_group="Asian")  # fmt: skip
    assert asian["searches"] is None and asian["searches_suppressed"] is True
    assert asian["rate_per_1000"] is None and asian["ratio_to_white"] is None
    assert asian["share_of_searches"] is None
    assert asian["population"] == 4000  # the denominator is not a count of people searched
    # Still 2 over the 12 months to July: still withheld; a zero in July is shown as 0.
    assert pick(rows, time_window="12 months", month="2024-07-01", basis="officer-defined",
                ethnic_group="Asian")["searches_suppressed"]  # fmt: skip
    july = pick(rows, time_window="month", month="2024-07-01", basis="officer-defined",
                ethnic_group="Asian")  # fmt: skip
    assert (july["searches"], july["searches_suppressed"], july["rate_per_1000"]) == (0, False, 0.0)
    # August: 3 White searches are withheld, and so is the White reference and every ratio
    # (it would give the White count away); the Black rate itself is shown.
    black = pick(rows, time_window="month", month="2024-08-01", basis="officer-defined",
                 ethnic_group="Black")  # fmt: skip
    white = pick(rows, time_window="month", month="2024-08-01", basis="officer-defined",
                 ethnic_group="White")  # fmt: skip
    assert white["searches"] is None and white["searches_suppressed"]
    assert (black["searches"], black["rate_per_1000"]) == (12, approx(12.0))
    assert black["white_rate_per_1000"] is None and black["ratio_to_white"] is None
    assert {c for c in MARTS["stop_search_disproportionality"].output_columns
            if c.name.endswith("_suppressed")} != set()  # fmt: skip


def test_stop_search_outcomes_worked_by_hand(marts):
    rows = marts["stop_search_outcomes"]

    def row(basis, group="All", legislation="All", obj="All", window="month", month="2024-06-01"):
        return pick(rows, time_window=window, month=month, basis=basis, ethnic_group=group,
                    legislation=legislation, object_of_search=obj)  # fmt: skip

    # June: 10 arrests and 5 community resolutions of 54 searches.
    total = row("self-defined")
    assert (total["searches"], total["action_taken"]) == (54, 15)
    assert total["action_taken_share"] == approx(15 / 54)
    black = row("self-defined", "Black")  # 20 Black African, 10 arrested
    assert (black["searches"], black["action_taken"], black["action_taken_share"]) == (
        20, 10, approx(0.5),
    )  # fmt: skip
    assert row("officer-defined", "Black")["action_taken_share"] == approx(10 / 30)
    drugs = row("self-defined", legislation=MISUSE)  # 20 Black + 10 White, 15 actions
    assert (drugs["searches"], drugs["action_taken_share"]) == (30, approx(0.5))
    # White: 10 searches shown, 5 actions withheld (under 10), not zero.
    white = row("self-defined", "White")
    assert (white["searches"], white["action_taken"], white["action_taken_suppressed"]) == (
        10, None, True,
    )  # fmt: skip
    assert white["action_taken_share"] is None
    unknown_object = row("self-defined", obj="Not recorded")  # blank object of search
    assert (unknown_object["searches"], unknown_object["action_taken"]) == (12, 0)
    assert unknown_object["action_taken_share"] == 0.0
    # The full breakdown: Black African, drugs, controlled drugs.
    cell = row("self-defined", "Black", MISUSE, "Controlled drugs")
    assert (cell["searches"], cell["action_taken"]) == (20, 10)
    # 12 months to July: 30 self-defined Black searches, 20 arrests.
    year = row("self-defined", "Black", window="12 months", month="2024-07-01")
    assert (year["searches"], year["action_taken"]) == (30, 20)
    assert year["action_taken_share"] == approx(2 / 3)


def test_real_june_2022_disproportionality_against_an_independent_computation(tmp_path):
    """The real file through the contract's checks, then the mart, against the csv module
    and the Census 2021 London totals quoted in shared/real/README.md."""
    lake = FolderLake(tmp_path / "lake")
    real = [
        ("stop_and_search", "2022-06",
         REAL_DATA / "stop_and_search" / "2022-06-metropolitan-stop-and-search.csv"),
        ("census_2021_population", "2021-03",
         REAL_DATA / "reference" / "census2021_london_age3_ethnic8_sex.csv"),
    ]  # fmt: skip
    for contract, period, path in real:
        outcome = validate_delivery(CONTRACTS[contract], path, period, "real", lake)
        assert outcome.rows_quarantined == 0
        lake.path(lake.curated_path(contract, period)).parent.mkdir(parents=True, exist_ok=True)
        os.replace(
            lake.path(lake.staging_path(contract, period, "real")),
            lake.path(lake.curated_path(contract, period)),
        )
    warehouse = build_warehouse(lake, CONTRACTS, tmp_path / "warehouse.duckdb")
    mart = compute_mart("stop_search_disproportionality", warehouse).to_pylist()

    # Independently: count the CSV with the csv module; populations from the README.
    population = {"White": 4_731_173, "Asian": 1_817_639, "Black": 1_188_374,
                  "Mixed": 505_775, "Other": 556_767}  # fmt: skip
    with open(real[0][2], encoding="utf-8", newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 16_332

    def self_group(text: str) -> str:  # the 2011 categories by their first word
        text = text.strip()
        if not text:
            return "Not recorded"
        if text == "Other ethnic group - Not stated":
            return "Not stated"
        first_word = {
            "Asian/Asian": "Asian", "Black/African/Caribbean/Black": "Black",
            "Mixed/Multiple": "Mixed", "White": "White", "Other": "Other",
        }  # fmt: skip
        return first_word[text.split()[0]]

    officer = Counter(r["Officer-defined ethnicity"] or "Not recorded" for r in records)
    self_defined = Counter(self_group(r["Self-defined ethnicity"]) for r in records)
    expected = {"officer-defined": officer, "self-defined": self_defined}
    assert expected["officer-defined"]["Black"] == 6443  # as published
    for basis, counts in expected.items():
        white_rate = counts["White"] * 1000 / population["White"]
        got = {
            r["ethnic_group"]: r
            for r in mart
            if r["basis"] == basis and r["time_window"] == "month"
        }
        assert set(got) == set(counts)
        assert sum(r["searches"] for r in got.values()) == 16_332  # nothing dropped
        for group, n in counts.items():
            r = got[group]
            assert r["searches"] == n and r["searches_suppressed"] is False
            assert r["share_of_searches"] == approx(n / 16_332)
            if group in population:
                rate = n * 1000 / population[group]
                assert r["population"] == population[group]
                assert r["rate_per_1000"] == approx(rate, rel=1e-12)
                assert r["ratio_to_white"] == approx(rate / white_rate, rel=1e-12)
            else:
                assert r["population"] is None and r["rate_per_1000"] is None
        # The 12-month window over one delivered month equals the month.
        year = [r for r in mart if r["basis"] == basis and r["time_window"] == "12 months"]
        assert {r["ethnic_group"]: r["searches"] for r in year} == dict(counts)
        assert {r["months_with_data"] for r in year} == {1}
    black = pick(mart, time_window="month", basis="officer-defined", ethnic_group="Black")
    assert round(black["ratio_to_white"], 2) == 4.07  # 6,443 / 1,188,374 over 6,299 / 4,731,173


# --- crime ------------------------------------------------------------------------------


def test_crime_trends_worked_by_hand(marts):
    rows = marts["crime_trends"]

    def row(borough, major, month):
        return pick(rows, borough=borough, major_category=major, month=month)

    # December 2023 as revised by the newer release: 20 domestic + 5 business.
    dec = row("Camden", "Burglary", "2023-12-01")
    assert (dec["crimes"], dec["release"]) == (25, "2024-02")
    # The 12 months to Dec 2023: 11 x 15 + 25 = 190; the 12 before (2022): 12 x 15 = 180.
    assert (dec["last_12_months"], dec["previous_12_months"], dec["change"]) == (190, 180, 10)
    # January 2024: 30 domestic, business blank (unknown: left out, counted).
    jan = row("Camden", "Burglary", "2024-01-01")
    assert (jan["crimes"], jan["blank_cells"]) == (30, 1)
    # 10 x 15 + 25 + 30 = 205 against Feb 2022 to Jan 2023, 12 x 15 = 180: +13.9%.
    assert (jan["last_12_months"], jan["previous_12_months"]) == (205, 180)
    assert jan["change_percent"] == approx(25 * 100 / 180)
    # January 2022 is only in the older release, which has no Hackney robbery: zero.
    first = row("Hackney", "Robbery", "2022-01-01")
    assert (first["crimes"], first["release"], first["last_12_months"]) == (0, "2024-01", None)
    hackney = row("Hackney", "Robbery", "2024-01-01")
    assert (hackney["last_12_months"], hackney["previous_12_months"]) == (12, 12)
    assert hackney["change_percent"] == 0.0
    assert len(rows) == 2 * 25  # 2 borough-categories x 25 months (Jan 2022 to Jan 2024)


def test_crime_outcome_rates_count_each_crime_once(fixture_lake, marts):
    rows = marts["crime_outcome_rates"]
    burglary = {r["outcome_group"]: r for r in rows if r["crime_type"] == "Burglary"}
    # Crimes A, B, C, E (A on two LSOAs, C duplicated, E also listed as vehicle crime).
    assert {g: r["crimes"] for g, r in burglary.items()} == {
        "Charge or summons": 2,  # A (charged in February, its latest month), C (charge wins)
        "No suspect identified": 1,  # B, from its street record
        "Out of court disposal": 1,  # E, a caution on its street record
    }
    assert {r["crimes_of_type"] for r in burglary.values()} == {4}
    assert burglary["Charge or summons"]["outcome_rate"] == approx(0.5)
    assert burglary["Charge or summons"]["crimes_from_outcomes_file"] == 2
    assert burglary["No suspect identified"]["crimes_from_outcomes_file"] == 0
    robbery = pick(rows, crime_type="Robbery")
    assert (robbery["outcome_group"], robbery["crimes"], robbery["outcome_rate"]) == (
        "No outcome recorded", 1, 1.0,
    )  # fmt: skip
    assert {r["month"] for r in rows} == {D(2024, 1, 1)}  # A's later row keeps its first month
    assert not [r for r in rows if r["crime_type"] in ("Anti-social behaviour", "Vehicle crime")]
    lake, warehouse = fixture_lake
    notes = mart_notes(MARTS["crime_outcome_rates"], warehouse)
    assert notes["unmatched_outcome_crime_ids"] == 1  # Z has no street record


# --- use of force, complaints, response, trust, workforce, data quality -------------------


def test_use_of_force_by_subject_worked_by_hand(marts):
    rows = marts["use_of_force_subjects"]

    def row(group, band, level):
        return pick(rows, time_window="month", month="2024-06-01", ethnic_group=group,
                    age_band=band, age_band_level=level)  # fmt: skip

    # All ages: Black 32 of 1,000 -> 32.0; White 10 of 2,000 -> 5.0 (6.4x); Chinese counts
    # as Asian: 10 of 4,000 -> 2.5 (0.5x).
    black = row("Black", "All ages", "all ages")
    assert (black["records"], black["rate_per_1000"], black["ratio_to_white"]) == (
        32, approx(32.0), approx(6.4),
    )  # fmt: skip
    assert row("Asian", "All ages", "all ages")["ratio_to_white"] == approx(0.5)
    # 50 and over (50-64, 65 and over) is the one band with a Census population:
    # Black 12 of 600 -> 20.0; White 10 of 800 -> 12.5; 1.6x.
    old = row("Black", "50 and over", "census band")
    assert (old["records"], old["population"], old["rate_per_1000"]) == (12, 600, approx(20.0))
    assert old["census_age_band"] == "Aged 50 years and over"
    assert old["ratio_to_white"] == approx(1.6)
    young = row("Black", "18-34", "recorded band")  # no Census band: a count, no rate
    assert (young["records"], young["population"], young["rate_per_1000"]) == (20, None, None)
    unknown = row("Not recorded", "All ages", "all ages")  # 3: withheld
    assert unknown["records"] is None and unknown["records_suppressed"]

    tactics = marts["use_of_force_tactics"]

    def tactic(group, name):
        return pick(tactics, time_window="month", month="2024-06-01", ethnic_group=group,
                    tactic=name)  # fmt: skip

    # 55 records; handcuffing on 20 Black + 10 White; ground restraint listed twice on
    # 12 records counts 12.
    cuffs = tactic("All", "Compliant Handcuffing")
    assert (cuffs["records_with_tactic"], cuffs["records"]) == (30, 55)
    assert cuffs["share_of_records"] == approx(30 / 55)
    assert tactic("All", "Ground Restraint")["records_with_tactic"] == 12
    assert tactic("Black", "CED (Taser) Drawn")["share_of_records"] == approx(10 / 32)
    spit = tactic("All", "Spit Guard")  # 3 records: withheld
    assert spit["records_with_tactic"] is None and spit["records_with_tactic_suppressed"]
    assert spit["records"] == 55 and spit["share_of_records"] is None


def test_complaints_timeliness_worked_by_hand(marts):
    rows = marts["complaints_timeliness"]
    feb = pick(rows, month="2024-02-01", handling="Schedule 3")
    # CO/1..10 received 1 Jan, finalised 1..10 Feb: 31..40 days.
    assert feb["allegations_finalised"] == 10
    assert feb["median_days_to_finalise"] == approx(35.5)
    assert feb["mean_days_to_finalise"] == approx(35.5)
    assert feb["p90_days_to_finalise"] == 39
    assert feb["open_at_month_end"] is None and feb["open_at_month_end_suppressed"]  # 2 open
    jan = pick(rows, month="2024-01-01", handling="Schedule 3")
    # January's snapshot: 12 open at the end, 30 days each; CO/13 finalised (1: withheld).
    assert (jan["open_at_month_end"], jan["median_days_open"]) == (12, approx(30.0))
    assert jan["allegations_finalised"] is None and jan["allegations_finalised_suppressed"]
    assert jan["median_days_to_finalise"] is None
    outside = pick(rows, month="2024-02-01", handling="Outside Schedule 3")
    assert outside["allegations_finalised"] is None and outside["allegations_finalised_suppressed"]
    assert outside["open_at_month_end"] == 0  # a true zero, shown


def test_emergency_response_worked_by_hand(marts):
    rows = marts["emergency_response"]
    i_calls = pick(rows, month="2024-06-01", borough="Camden", grade="I")
    # 10, 15 (inclusive), 16 minutes and one not attended: 2 of 3 attended within 15.
    assert (i_calls["calls"], i_calls["calls_attended"], i_calls["attended_within_target"]) == (
        4, 3, 2,
    )  # fmt: skip
    assert i_calls["share_within_target"] == approx(2 / 3)
    assert i_calls["median_minutes_to_arrival"] == approx(15.0)
    s_calls = pick(rows, month="2024-06-01", borough="Camden", grade="S")
    assert (s_calls["target_minutes"], s_calls["share_within_target"]) == (60, approx(0.5))
    assert pick(rows, month="2024-06-01", borough="Not recorded", grade="I")["calls"] == 1
    assert pick(rows, month="2024-07-01", borough="Camden", grade="I")["calls"] == 1  # London
    assert {r["grade"] for r in rows} == {"I", "S"}


def test_trust_and_confidence_uses_the_newest_release(marts):
    rows = marts["trust_and_confidence"]
    camden = pick(rows, date="2024-03-31", borough="Camden")
    assert (camden["proportion"], camden["release"]) == (0.66, "2024-06")  # revised
    assert camden["proportion_year_before"] == 0.70
    assert camden["change_points"] == approx(-4.0)
    assert camden["mean_of_boroughs"] == approx(0.61)
    assert camden["rank_among_boroughs"] == 1
    assert pick(rows, date="2023-03-31", borough="Hackney")["release"] == "2024-03"
    assert len(rows) == 6  # 3 quarter ends x 2 boroughs, no duplicates from re-sending


def test_workforce_representation_worked_by_hand(marts):
    rows = marts["workforce_representation"]

    def row(worker, group):
        return pick(rows, month="2024-03-01", worker_type=worker, ethnic_group=group)

    # Officers with a stated group: 50 + 20 + 20 + 5 + 5 = 100; London shares of 8,000:
    # White 2,000 (0.25), Black 1,000 (0.125), Asian 4,000 (0.5).
    white = row("Police Officer", "White")  # 30 + 20 in two BCUs
    assert (white["headcount"], white["share_of_stated"], white["london_share"]) == (
        50, approx(0.5), approx(0.25),
    )  # fmt: skip
    assert white["representation_ratio"] == approx(2.0)
    assert white["gap_points"] == approx(25.0)
    assert row("Police Officer", "Black")["representation_ratio"] == approx(1.6)
    assert row("Police Officer", "Asian")["representation_ratio"] == approx(0.4)
    not_stated = row("Police Officer", "Not stated")
    assert not_stated["share_of_workforce"] == approx(25 / 125)
    assert not_stated["share_of_stated"] is None
    mixed = row("Police Officer", "Mixed")
    assert mixed["headcount"] is None and mixed["headcount_suppressed"]
    assert mixed["representation_ratio"] is None
    staff_mixed = row("Police Staff", "Mixed")  # none: a true zero
    assert (staff_mixed["headcount"], staff_mixed["share_of_stated"]) == (0, 0.0)
    # All workers: 80 White, 50 Black, 60 Asian of 200 stated.
    assert row("All", "Black")["representation_ratio"] == approx((50 / 200) / 0.125)
    assert row("All", "White")["headcount"] == 80


def test_data_quality_completeness_of_key_fields(marts):
    rows = marts["data_quality"]
    june = pick(rows, contract="stop_and_search", period="2024-06",
                field="officer_defined_ethnicity")  # fmt: skip
    assert (june["curated_rows"], june["missing_rows"]) == (54, 12)
    assert june["completeness_percent"] == approx(42 * 100 / 54)
    assert (june["agreed_max_missing_percent"], june["within_agreement"]) == (5.0, False)
    self_june = pick(rows, contract="stop_and_search", period="2024-06",
                     field="self_defined_ethnicity")  # fmt: skip
    assert self_june["missing_rows"] == 12  # "Other ethnic group - Not stated" is missing
    july = pick(rows, contract="stop_and_search", period="2024-07",
                field="officer_defined_ethnicity")  # fmt: skip
    assert (july["completeness_percent"], july["within_agreement"]) == (100.0, True)
    count = pick(rows, contract="borough_crime", period="2024-02", field="count")
    assert (count["missing_rows"], count["field_role"]) == (1, "value")  # the blank cell
    key = pick(rows, contract="complaints", period="2024-01", field="case_reference")
    assert (key["field_role"], key["within_agreement"]) == ("primary key", None)


# --- empty inputs, the warehouse, Dagster, the pack ----------------------------------------


def test_every_mart_is_empty_with_its_columns_when_nothing_is_delivered(tmp_path):
    lake = FolderLake(tmp_path / "lake")
    warehouse = build_warehouse(lake, CONTRACTS, tmp_path / "warehouse.duckdb")
    bare = build_warehouse(lake, {}, tmp_path / "bare.duckdb")  # no curated tables at all
    for source in (warehouse, bare):
        with warehouse_connection(source, CONTRACTS) as con:
            for name, mart in MARTS.items():
                table = compute_mart(name, con, lake, CONTRACTS)
                assert table.num_rows == 0
                assert table.schema.names == [c.name for c in mart.output_columns]
                assert [str(t) for t in table.schema.types] == [
                    DUCKDB_TO_ARROW[c.type] for c in mart.output_columns
                ]
    assert len(write_marts(warehouse, lake, contracts=CONTRACTS)) == len(MARTS)
    build_warehouse(lake, CONTRACTS, warehouse)
    assert oversight_views(warehouse) == set(MARTS)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM oversight.crime_trends").fetchall() == [(0,)]


def test_marts_carry_their_definitions_into_the_warehouse(fixture_lake, tmp_path):
    lake, _ = fixture_lake
    copy = FolderLake(tmp_path / "lake")
    shutil.copytree(lake.root, copy.root)
    warehouse = build_warehouse(copy, CONTRACTS, tmp_path / "warehouse.duckdb")
    written = write_mart("stop_search_disproportionality", warehouse, copy)
    # A folder per mart, one file in it: an engine declares a table over the folder.
    folder = copy.root / "oversight" / "stop_search_disproportionality"
    assert written.path == str(folder / "data.parquet")
    assert [p.name for p in folder.iterdir()] == ["data.parquet"]
    metadata = pq.read_schema(written.path).metadata
    assert b"Numerator:" in metadata[b"comment"]
    build_warehouse(copy, CONTRACTS, warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (table_comment,) = con.execute(
            "SELECT comment FROM duckdb_views() WHERE schema_name = 'oversight' "
            "AND view_name = 'stop_search_disproportionality'").fetchall()[0]  # fmt: skip
        comments = dict(con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = 'oversight' "
            "AND table_name = 'stop_search_disproportionality'").fetchall())  # fmt: skip
        rows = con.execute(
            "SELECT ratio_to_white FROM oversight.stop_search_disproportionality "
            "WHERE time_window = 'month' AND month = DATE '2024-06-01' "
            "AND basis = 'officer-defined' AND ethnic_group = 'Black'").fetchall()  # fmt: skip
    assert "Census 2021" in table_comment and "Caveats:" in table_comment
    assert "withheld for disclosure control" in comments["searches_suppressed"]
    assert "NULL when searches_suppressed" in comments["rate_per_1000"]
    assert rows == [(approx(6.0),)]


def test_mappings_are_data_and_cover_every_agreed_value():
    mappings = load_mappings()
    for key, mapping in mappings.ethnicity.items():
        contract, column = key.split(".")
        rule = CONTRACTS[contract].column(column).value_rules
        agreed = {v for r in rule for v in r.valid_values} - {"Does not apply"}  # always 0
        assert agreed <= set(mapping), f"{key} lacks {agreed - set(mapping)}"
    outcomes = {o for group in mappings.outcome_groups.values() for o in group}
    agreed = {v for r in CONTRACTS["crime_outcomes"].column("outcome_type").value_rules
              for v in r.valid_values}  # fmt: skip
    assert outcomes == agreed


def oversight_views(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'oversight'"
        ).fetchall()
    return {r[0] for r in rows}


def test_dagster_assets_one_per_mart_with_latest_figures(fixture_lake, tmp_path):
    (marts,) = build_oversight_assets(CONTRACTS)  # one step computes the selected marts
    specs = {s.key: s for s in marts.specs}
    assert set(specs) == {oversight_key(m) for m in MARTS} and marts.partitions_def is None
    for spec in specs.values():
        assert spec.group_name == "oversight" and set(spec.kinds) == {"duckdb", "parquet"}
        assert "Numerator:" in spec.description
        assert all(d.asset_key.path[0] == "curated" for d in spec.deps)
    spec = specs[oversight_key("stop_search_disproportionality")]
    assert {d.asset_key for d in spec.deps} == {
        dg.AssetKey(["curated", "stop_and_search"]),
        dg.AssetKey(["curated", "census_2021_population"]),
    }
    assert len(specs[oversight_key("data_quality")].deps) == len(CONTRACTS)

    lake, _ = fixture_lake
    copy = tmp_path / "lake"
    shutil.copytree(lake.root, copy)
    warehouse = tmp_path / "warehouse.duckdb"  # not there yet: the asset builds it
    chosen = ["stop_search_disproportionality", "crime_outcome_rates", "data_quality"]
    result = dg.materialize(
        [marts],
        selection=[oversight_key(name) for name in chosen],
        resources={
            "lake": LakeResource(root=str(copy)),
            "warehouse": WarehouseResource(path=str(warehouse)),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    materialized = {
        m.asset_key: m.metadata for m in result.asset_materializations_for_node("oversight_marts")
    }
    assert set(materialized) == {oversight_key(name) for name in chosen}  # only those
    meta = materialized[oversight_key("stop_search_disproportionality")]
    # 3 months x 2 windows x (5 officer-defined groups + 6 self-defined groups)
    assert meta["dagster/row_count"].value == 66
    # 12 months to August: Black 30 + 10 + 12 = 52 per 1,000; White 10 + 10 + 3 = 23 of
    # 2,000 = 11.5 per 1,000; 52 / 11.5 = 4.52.
    assert meta["black_white_ratio_officer_defined_12m"].value == approx(52 / 11.5)
    assert meta["latest_month"].value == "2024-08-01"
    assert "| 12 months | 2024-08-01 | 3 | officer-defined | Black | 52 |" in (
        meta["latest_figures"].value
    )
    # Asian (2) in June and the three 12-month windows, White (3) in August; both bases.
    assert meta["cells_suppressed"].value == (1 + 3 + 1) * 2
    columns = [c.name for c in meta["dagster/column_schema"].value.columns]
    assert "searches_suppressed" in columns
    outcomes = materialized[oversight_key("crime_outcome_rates")]
    assert outcomes["unmatched_outcome_crime_ids"].value == 1
    assert oversight_views(warehouse) == set(chosen)


@pytest.fixture(scope="module")
def command_pack(fixture_lake, tmp_path_factory) -> dict[str, str]:
    """On a copy of the hand-worked fixtures' lake, whose warehouse was built before any
    mart was computed: the pack written then (`early`), and the pack `datashare report
    --refresh` writes (`page`; it computes the marts and rebuilds the warehouse). The
    module's checks of the pack as a reader sees it read this page too (`pages`)."""
    lake, _ = fixture_lake
    root = tmp_path_factory.mktemp("pack")
    copy = FolderLake(root / "lake")
    shutil.copytree(lake.root, copy.root)
    settings = Settings(
        home=root, dropzone=root / "dropzone", lake=copy.root,
        warehouse=root / "warehouse.duckdb", dagster_home=root / "dagster",
    )  # fmt: skip
    build_warehouse(copy, CONTRACTS, settings.warehouse)
    early = write_report(settings.warehouse, root / "early.html").read_text()

    class Args:
        output = root / "pack" / "oversight.html"
        refresh = True

    assert run_report_command(Args(), settings) == 0
    return {"early": early, "page": Args.output.read_text(encoding="utf-8")}


def test_the_oversight_pack_is_one_offline_page_with_a_chart_per_measure(command_pack):
    # Before any mart is computed, the pack says so.
    assert command_pack["early"].count("Not computed yet") == len(MARTS)
    page = command_pack["page"]
    assert page.startswith("<!DOCTYPE html>")
    for mart in MARTS.values():
        section = page[page.index(f'<section id="{mart.name}">') :]
        section = section[: section.index("</section>")]
        assert "<svg" in section, f"no chart for {mart.name}"
        assert mart.numerator[:40].replace("'", "&#x27;") in section
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)
    assert "White rate (self-defined)" in page  # the White reference on the rates chart
    assert 'class="withheld"' in page  # withheld figures are marked, not zero


# --- agreed categories, and the pack as a reader sees it ----------------------------------

MISSPELT_ACT = "Misuse o Drugs Act 1971 (section 23)"  # as the demo's profile misspells it
SHOUTED_ACT = "POLICE AND CRIMINAL EVIDENCE ACT 1984 (SECTION 1)"
THEFTS = ("Theft", "Theft ", "THEFT")  # one agreed category and two mistakes
SVG = re.compile(r"<svg\b.*?</svg>", re.S)
NS = "{http://www.w3.org/2000/svg}"


def publish(lake: FolderLake, contract: str, period: str, path: Path):
    """A file through the contract's row checks, its curated rows published as `datashare
    run` would; the validation outcome (with its breaches) is returned."""
    outcome = validate_delivery(CONTRACTS[contract], path, period, "quirks", lake)
    target = lake.path(lake.curated_path(contract, period))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(lake.path(lake.staging_path(contract, period, "quirks")), target)
    return outcome


def quirky_deliveries(folder: Path) -> dict[str, Path]:
    """A crime release with `Theft`, `Theft ` and `THEFT`, and the real June 2022 stop and
    search file with 11 searches under a misspelt Act and 1 under a shouted one."""
    crime = folder / "borough_crime.csv"
    crime.write_text(
        "MajorText,MinorText,LookUp_BoroughName,202312,202401\n"
        "Theft,Shoplifting,Camden,10,12\n"
        "Theft ,Bicycle Theft,Camden,3,4\n"  # trailing space
        "THEFT,Other Theft,Camden,5,6\n"
        "Burglary,Domestic Burglary,Camden,7,8\n",
        encoding="utf-8",
    )
    with open(REAL_DATA / "stop_and_search" / "2022-06-metropolitan-stop-and-search.csv",
              encoding="utf-8", newline="") as f:  # fmt: skip
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [r for _, r in zip(range(200), reader, strict=False)]
    for i in range(11):
        rows[i]["Legislation"] = MISSPELT_ACT
    rows[11]["Legislation"] = SHOUTED_ACT
    searches = folder / "stop_and_search.csv"
    with open(searches, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return {"borough_crime": crime, "stop_and_search": searches}


def quirky_complaints() -> list[dict]:
    """February 2024: 10 allegations finalised in February (31 days each), one finalised on
    5 March (after the delivered month: the extract ran into March) and one 'finalised'
    before it was received (a breach the agreement keeps)."""
    feb1 = D(2024, 2, 1)
    rows = [complaint(f"CO/{i}", "Schedule 3", feb1, D(2024, 2, 29)) for i in range(10)]
    rows.append(complaint("CO/late", "Schedule 3", feb1, D(2024, 3, 5)))
    rows.append(complaint("CO/early", "Schedule 3", D(2024, 2, 20), D(2024, 2, 2)))
    return rows


@pytest.fixture(scope="module")
def quirks(tmp_path_factory) -> dict:
    """A home-like lake whose deliveries carry values outside the agreed categories, a
    finalisation past the last delivered month and crime IDs that recur; its marts and pack."""
    root = tmp_path_factory.mktemp("quirks")
    lake = FolderLake(root / "lake")
    paths = quirky_deliveries(root)
    outcomes = {
        "borough_crime": publish(lake, "borough_crime", "2024-02", paths["borough_crime"]),
        "stop_and_search": publish(lake, "stop_and_search", "2022-06", paths["stop_and_search"]),
    }
    put(lake, "census_2021_population", "2021-03", census_rows())
    put(lake, "complaints", "2024-02", quirky_complaints())
    # The same two crimes in January and February: counted once, in January.
    put(lake, "street_crime", "2024-01", [street(A, "Burglary", "Under investigation"),
                                          street(B, "Robbery", None)])  # fmt: skip
    feb = D(2024, 2, 1)
    put(lake, "street_crime", "2024-02", [street(A, "Burglary", "Under investigation", feb),
                                          street(B, "Robbery", None, month=feb)])  # fmt: skip
    warehouse = build_warehouse(lake, CONTRACTS, root / "warehouse.duckdb")
    write_marts(warehouse, lake, contracts=CONTRACTS)
    build_warehouse(lake, CONTRACTS, warehouse)
    page = write_report(warehouse, root / "pack.html").read_text(encoding="utf-8")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        marts = {
            name: con.sql(f"SELECT * FROM oversight.{name}").to_arrow_table().to_pylist()
            for name in MARTS
        }
    return {"outcomes": outcomes, "marts": marts, "page": page, "warehouse": warehouse}


def breach(outcome, rule: str):
    (found,) = [b for b in outcome.breaches if b.rule == rule]
    return found


def charts(page: str) -> dict[str, ET.Element]:
    """Every chart of the pack by its title (the SVG parsed as XML)."""
    out = {}
    for text in SVG.findall(page):
        svg = ET.fromstring(text)
        out[svg.find(f"{NS}title").text] = svg
    return out


def figure_of(page: str, title: str) -> str:
    """The <figure> (chart and notes) whose chart has `title`."""
    for figure in re.findall(r"<figure>.*?</figure>", page, re.S):
        if f"<title>{html.escape(title, quote=True)}</title>" in figure:
            return figure
    raise AssertionError(f"no chart titled {title!r}")


def test_values_outside_the_agreed_categories_are_one_group_in_the_mart_and_the_pack(quirks):
    """`Theft`, `Theft ` and `THEFT`: the mart and the chart show Theft and one group of
    the two others, with the rows and the breach in a note; a misspelt and a shouted Act
    are one group of 12 searches, not two powers."""
    crime_breach = breach(quirks["outcomes"]["borough_crime"], "major_category_known")
    assert crime_breach.failing_rows == 2 and crime_breach.action == "rows kept"
    rows = quirks["marts"]["crime_trends"]
    assert {r["major_category"] for r in rows} == {"Theft", "Burglary", NOT_AGREED}
    jan = {r["major_category"]: r for r in rows if r["month"] == D(2024, 1, 1)}
    assert jan["Theft"]["crimes"] == 12 and jan[NOT_AGREED]["crimes"] == 4 + 6
    assert jan[NOT_AGREED]["source_rows"] == crime_breach.failing_rows
    assert sum(r["crimes"] for r in jan.values()) == 12 + 4 + 6 + 8  # nothing dropped

    page = quirks["page"]
    svg = charts(page)["Recorded crime in London by major category"]
    lines = [g.get("data-series") for g in svg.iter(f"{NS}g") if g.get("class") == "series"]
    assert lines == ["Theft", "Burglary", NOT_AGREED]  # the group last, whatever its size
    figure = figure_of(page, "Recorded crime in London by major category")
    # 2 rows of the release, 2 months each: 4 monthly figures, 3 + 4 + 5 + 6 = 18 crimes.
    assert "Not an agreed value: 4 monthly figures (18 crimes)" in figure
    assert "major_category_known" in figure and "major breach" in figure
    for bad in ("THEFT", "Theft "):
        assert f">{bad}<" not in page and f'"{bad}"' not in page

    act_breach = breach(quirks["outcomes"]["stop_and_search"], "legislation_known")
    assert act_breach.failing_rows == 12 and act_breach.action == "rows kept"
    searches = quirks["marts"]["stop_search_outcomes"]
    agreed = set(CONTRACTS["stop_and_search"].column("legislation").value_rules[0].valid_values)
    assert {r["legislation"] for r in searches} <= agreed | {"All", NOT_AGREED}
    rest = pick(searches, time_window="month", basis="self-defined", ethnic_group="All",
                legislation=NOT_AGREED, object_of_search="All")  # fmt: skip
    assert rest["searches"] == act_breach.failing_rows
    power = charts(page)["By the power used"]
    bars = [g.get("data-category") for g in power.iter(f"{NS}g") if g.get("class") == "category"]
    assert set(bars) <= agreed | {NOT_AGREED} and bars[-1] == NOT_AGREED
    assert "Not an agreed value: 12 searches in the 12 months" in figure_of(
        page, "By the power used"
    )
    assert "legislation_known" in figure_of(page, "By the power used")
    assert MISSPELT_ACT not in page and html.escape(SHOUTED_ACT) not in page


def test_the_complaints_months_stop_at_the_latest_delivery(quirks):
    rows = quirks["marts"]["complaints_timeliness"]
    # Finalised on 5 March in February's extract: March waits for its own delivery; the
    # allegation "finalised" before receipt has no duration; the 10 took 28 days each.
    assert {r["month"] for r in rows} == {D(2024, 2, 1)}
    feb = pick(rows, month="2024-02-01", handling="Schedule 3")
    assert feb["allegations_finalised"] == 10 and feb["median_days_to_finalise"] == 28.0


def test_a_chart_that_is_not_of_the_latest_month_says_which_and_why(quirks):
    figure = figure_of(quirks["page"], "What happened to the crimes first recorded in Jan 2024")
    assert "Why Jan 2024" in figure and "delivered to Feb 2024" in figure


@pytest.fixture(scope="module")
def pages(command_pack, quirks) -> list[str]:
    """The pack of the hand-worked fixtures (as `datashare report --refresh` writes it) and
    of the quirky deliveries."""
    return [command_pack["page"], quirks["page"]]


def text_extent(node: ET.Element) -> tuple[float, float]:
    """Where a <text> starts and ends, by its anchor and the width the charts measure."""
    size = float(node.get("font-size") or FONT_SIZE)
    width = text_width(node.text or "", size, node.get("font-weight") == "600")
    x = float(node.get("x"))
    anchor = node.get("text-anchor", "start")
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return left, left + width


def test_no_chart_label_is_clipped_and_no_markdown_is_left_in_the_page(pages):
    for page in pages:
        assert "`" not in page  # inline code is <code>, never literal backticks
        assert "<code>_suppressed</code>" in page
        for title, svg in charts(page).items():
            width = float(svg.get("viewBox").split()[2])
            for node in svg.iter(f"{NS}text"):
                if node.get("transform"):  # the rotated axis title: its height is the plot's
                    continue
                left, right = text_extent(node)
                assert left >= -0.5 and right <= width + 0.5, (title, node.text, left, right)


def test_every_monthly_axis_ends_at_the_latest_delivered_month(pages, quirks):
    for page, last in zip(pages, ("2024-08", "2024-02"), strict=True):
        monthly = {t: s for t, s in charts(page).items() if s.get("data-axis") == "month"}
        assert len(monthly) >= 3
        assert {s.get("data-x-end") for s in monthly.values()} == {last}, {
            t: s.get("data-x-end") for t, s in monthly.items()
        }
    # The crime figures end a month before their release: the chart says so.
    figure = figure_of(pages[1], "Recorded crime in London by major category")
    assert "The figures end with Jan 2024; the axis runs on to Feb 2024" in figure


def test_colours_do_not_repeat_within_a_chart_and_lines_differ_in_black_and_white(pages):
    for page in pages:
        for title, svg in charts(page).items():
            lines = [g for g in svg.iter(f"{NS}g") if g.get("class") == "series"]
            colours = [g.get("data-colour") for g in lines]
            assert len(colours) == len(set(colours)), title
            # In black and white: each line its own pair of dash and marker.
            looks = [(g.get("data-dash"), g.get("data-marker")) for g in lines]
            assert len(looks) == len(set(looks)), title


def test_the_data_quality_legend_names_fields_by_the_agreements_titles(pages):
    page = pages[0]
    svg = charts(page)["Completeness of the fields with an agreed threshold"]
    lines = [g.get("data-series") for g in svg.iter(f"{NS}g") if g.get("class") == "series"]
    assert "Stop and search: officer-defined ethnicity" in lines
    assert "Use of force: subject ethnicity" in lines
    assert not [name for name in lines if "." in name or "_" in name]
    figure = figure_of(page, "Completeness of the fields with an agreed threshold")
    description = CONTRACTS["stop_and_search"].column("officer_defined_ethnicity").description
    assert html.escape(description, quote=True) in figure


def test_the_pack_opens_with_a_page_of_headline_figures_each_with_its_period_and_section(
    pages, marts
):
    page = pages[0]
    summary = page[page.index('<section id="summary"') : page.index("</section>")]
    assert page.index('<section id="summary"') < page.index('<section id="stop_search')
    cards = re.findall(
        r'<a class="headline" href="#(\w+)" data-headline="(\w+)" data-value="([^"]*)">'
        r'<span class="value[^"]*">([^<]*)</span><span class="label">[^<]*</span>'
        r'<span class="period">([^<]*)</span>',
        summary,
    )
    assert len(cards) >= 8
    for section, _, _, _, period in cards:
        assert f'<section id="{section}">' in page and period
    found = {key: (value, text, period) for _, key, value, text, period in cards}
    # 12 months to August: self-defined Black 20 + 10 + 12 = 42 per 1,000 against White
    # 10 + 10 + 3 = 23 of 2,000 = 11.5 per 1,000: 3.65x.
    year = pick(marts["stop_search_disproportionality"], time_window="12 months",
                month="2024-08-01", basis="self-defined", ethnic_group="Black")  # fmt: skip
    value, text, period = found["stop_search_black_white_ratio"]
    assert float(value) == approx(year["ratio_to_white"]) and text == "3.65×"
    assert period == "12 months to Aug 2024 (3 of the 12 delivered)"
    # Emergency calls: the latest month is July (00:30 on 1 July in London), 1 of 1.
    assert found["emergency_i_within_target"][1:] == ("100.0%", "Jul 2024")
    # Complaints: February's 10 Schedule 3 allegations, a median of 35.5 days.
    assert found["complaints_median_days"][1:] == ("36 days", "Feb 2024")


@pytest.fixture(scope="module")
def scratch() -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckDB for the module's generated examples: the reference schema the marts read
    is made once (at the first mart), and each example replaces its curated table (a new
    connection per example made it again each time: 0.06 s of CPU an example)."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA curated")
    try:
        yield con
    finally:
        con.close()


def mart_over(
    con: duckdb.DuckDBPyConnection, mart: str, contract: str, rows: list[dict]
) -> pa.Table:
    """`mart` computed over `rows` as the whole of `contract`'s curated table."""
    table = pa.Table.from_pylist(rows, schema=curated_schema(CONTRACTS[contract]))
    con.register("delivered", table)
    try:
        con.execute(f"CREATE OR REPLACE TABLE curated.{contract} AS SELECT * FROM delivered")
    finally:
        con.unregister("delivered")
    return compute_mart(mart, con, contracts=CONTRACTS)


@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(CONTRACTS["borough_crime"].column("major_category")
                                .value_rules[0].valid_values),
                st.sampled_from(("Theft ", "THEFT", " Burglary", "theft", "Robbery\t")),
                st.text(min_size=1, max_size=12),
            ),
            st.integers(0, 1000),
        ),
        min_size=1,
        max_size=25,
    )
)  # fmt: skip
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
def test_any_delivered_category_is_agreed_or_counted_in_the_one_group(scratch, cells):
    """Whatever the force writes as a major category, the mart and the chart hold only the
    agreed categories and the one group, and their crimes add up to what was delivered."""
    agreed = set(CONTRACTS["borough_crime"].column("major_category").value_rules[0].valid_values)
    month = D(2024, 1, 1)
    rows = [
        {"borough": "Camden", "major_category": major, "minor_category": f"minor {i}",
         "month": month, "count": n, "_delivery_id": "d", "_source_row": i,
         "_period": "2024-02"}
        for i, (major, n) in enumerate(cells)
    ]  # fmt: skip
    mart = mart_over(scratch, "crime_trends", "borough_crime", rows)
    got = mart.to_pylist()
    assert {r["major_category"] for r in got} <= agreed | {NOT_AGREED}
    rest = sum(n for major, n in cells if major not in agreed)
    by = {r["major_category"]: r for r in got}
    assert (by[NOT_AGREED]["crimes"] if NOT_AGREED in by else 0) == rest
    assert sum(r["crimes"] for r in got) == sum(n for _, n in cells)
    assert sum(r["source_rows"] for r in got) == len(cells)

    data = MartData(MARTS["crime_trends"], mart)
    try:
        (chart, *_) = chart_crime_trends(data, Pack(CONTRACTS, {}, month))
    finally:
        data.close()
    svg = ET.fromstring(chart.svg)
    lines = {g.get("data-series"): g for g in svg.iter(f"{NS}g") if g.get("class") == "series"}
    assert set(lines) <= agreed | {NOT_AGREED}
    drawn = sum(
        float(re.search(r": ([\d,]+)$", tip.text).group(1).replace(",", ""))
        for g in lines.values()
        for tip in g.iter(f"{NS}title")
    )
    assert drawn == sum(n for _, n in cells)  # the lines' points add up to the mart's total


@given(
    st.lists(
        st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
            min_size=1,
            max_size=90,
        ),
        min_size=1,
        max_size=8,
        unique=True,
    )
)
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
def test_bar_labels_of_any_length_fit_their_chart(labels):
    svg = ET.fromstring(
        bar_chart("Any labels", labels, [("n", list(range(1, len(labels) + 1)))], fmt_count)
    )
    width = float(svg.get("viewBox").split()[2])
    for node in svg.iter(f"{NS}text"):
        left, right = text_extent(node)
        assert left >= -0.5 and right <= width + 0.5, (node.text, left, right)


POWERS = CONTRACTS["stop_and_search"].column("legislation").value_rules[0].valid_values


@given(
    st.lists(
        st.one_of(
            st.sampled_from(POWERS),
            st.sampled_from(POWERS).map(str.upper),
            st.sampled_from(POWERS).map(lambda p: p + " "),
            st.text(min_size=1, max_size=40),
        ),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
def test_any_delivered_power_is_agreed_or_counted_in_the_one_group(scratch, powers):
    """Whatever the Legislation column holds, the outcomes mart and the "By the power used"
    chart list only agreed powers and the one group, and every search is in one of them."""
    day = D(2024, 6, 10)
    rows = [
        {**search(day, "White", IRISH, legislation=p), "_delivery_id": "d", "_source_row": i,
         "_period": "2024-06"}
        for i, p in enumerate(powers)
    ]  # fmt: skip
    mart = mart_over(scratch, "stop_search_outcomes", "stop_and_search", rows)
    cells = [
        r for r in mart.to_pylist()
        if r["time_window"] == "month" and r["basis"] == "self-defined"
        and r["ethnic_group"] == "All" and r["object_of_search"] == "All"
    ]  # fmt: skip
    by = {r["legislation"]: r for r in cells}
    assert set(by) <= set(POWERS) | {"All", NOT_AGREED}
    rest = sum(p not in POWERS for p in powers)
    if NOT_AGREED in by or rest:
        assert by[NOT_AGREED]["searches"] == (rest if rest >= 10 else None)  # withheld < 10
    shown = [r["searches"] for p, r in by.items() if p != "All"]
    if None not in shown:  # nothing withheld: the powers add up to every search
        assert sum(shown) == by["All"]["searches"] == len(powers)

    data = MartData(MARTS["stop_search_outcomes"], mart)
    try:
        figures = chart_stop_search_outcomes(data, Pack(CONTRACTS, {}, D(2024, 6, 1)))
    finally:
        data.close()
    (power,) = [ET.fromstring(f.svg) for f in figures if "By the power used" in f.svg]
    bars = [g.get("data-category") for g in power.iter(f"{NS}g") if g.get("class") == "category"]
    assert set(bars) <= set(POWERS) | {NOT_AGREED}
    assert len(bars) == len(set(bars)) and (NOT_AGREED not in bars or bars[-1] == NOT_AGREED)
