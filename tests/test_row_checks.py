"""A number is any finite decimal number as Arrow and Python read it (issue 20, item 1).

Real exports write small coordinates in exponent notation (`-8.6e-05`, as Python and
pandas write floats under 1e-4); other writers put a `+` in front or leave out the zero
before the point. Each of these is the same number, and the curated value is the one
Python reads from the text. `inf`, `nan` and what is not a number at all are not numbers.
"""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines.intake.delivery_intake import take_deliveries
from pipelines.intake.dropzone import FolderDropZone
from pipelines.lake.publishing import awaiting_publication, publish_delivery
from pipelines.lake.register import Register
from pipelines.lake.store import FolderLake
from pipelines.validation.delivery_verdicts import validate_pending
from pipelines.validation.row_validation import validate_delivery
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts
from schemas.row_checks import parsed

REAL_OUTCOMES = (
    Path(__file__).parent / "data" / "real" / "crime_outcomes" / "2023-01-metropolitan-outcomes.csv"
)
NUMBER = load_contracts()["crime_outcomes"].column("longitude")


def _read(texts: list[str | None]) -> list[float | None]:
    """What the contract's number check makes of each text (None: not a number)."""
    frame = pl.DataFrame({"x": texts}, schema={"x": pl.String})
    return frame.select(parsed(NUMBER, pl.col("x")))["x"].to_list()


def _forms(x: float) -> list[str]:
    """The ways exporters write one float: repr, exponent (both cases), `+`, no leading 0."""
    forms = [repr(x), f"{x:e}", f"{x:E}", f"{x:.17e}", format(Decimal(repr(x)), "E")]
    forms += ["+" + f for f in list(forms) if not f.startswith("-")]
    forms += [f.replace("0.", ".", 1) for f in forms if f.lstrip("+-").startswith("0.")]
    return forms


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20))
@example([-8.6e-05, 1e3, 0.5, 5.0, 5e-324, 1.7976931348623157e308, -0.0])
def test_every_finite_float_in_every_written_form_is_a_number_and_reads_back_exactly(xs):
    texts = [form for x in xs for form in _forms(x)]
    values = _read(texts)
    for text, value in zip(texts, values, strict=True):
        assert value is not None, f"{text!r} was not taken as a number"
        assert value == float(text), text  # the curated value is exactly Python's reading
        assert math.copysign(1, value) == math.copysign(1, float(text)), text


_NOT_FINITE = ["inf", "-inf", "+inf", "Infinity", "nan", "NaN", "1e400", "-1e999", "1E+309"]
_NOT_NUMBERS = ["", ".", "+", "-", "e5", "1e", "1e+", "1.2.3", "0x10", "1,5", "12 345",
                "1_000", " 1", "1 ", "١٢", "5-", "--1", "+-1", "1e5.0", "N/A", "None"]  # fmt: skip


@pytest.mark.parametrize("text", _NOT_FINITE + _NOT_NUMBERS)
def test_what_is_not_a_finite_number_is_not_a_number(text):
    assert _read([text]) == [None]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789+-.eE _xinfaINFA\u0663 "), max_size=12))
@example("1e400")
@example("+.5e-3")
def test_whatever_passes_is_read_the_same_finite_number_by_python_and_arrow(text):
    (value,) = _read([text])
    try:
        python = float(text)
    except ValueError:
        python = None
    if python is None or not math.isfinite(python):
        assert value is None, f"{text!r} is not a finite number but passed"
        return
    if value is None:
        return  # Python is looser than Arrow (" 1", "1_000"): turned away, as agreed
    arrow = pc.cast(pa.array([text]), pa.float64())[0].as_py()
    assert value == python == arrow, text


def _with_coordinates_written(rows: list[dict], write) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        row = dict(row)
        for name in ("Longitude", "Latitude"):
            if row[name]:
                row[name] = write(row[name])
        writer.writerow(row)
    return out.getvalue()


def _curated(path: Path) -> dict[int, tuple[float | None, float | None]]:
    query = f"SELECT _source_row, longitude, latitude FROM read_parquet('{path}')"
    return {row: (lon, lat) for row, lon, lat in duckdb.sql(query).fetchall()}


@pytest.mark.parametrize(
    "write",
    [
        lambda v: format(Decimal(v), "E"),  # 0.000148 as 1.48E-4
        lambda v: f"{float(v):.16e}",  # as 1.4800000000000000e-04
        lambda v: v if v.startswith("-") else "+" + v,  # +51.546108
        lambda v: v.replace("0.", ".", 1) if v.lstrip("-").startswith("0.") else v,  # .000148
    ],
    ids=["exponent", "python-exponent", "plus", "no-leading-zero"],
)
def test_real_outcomes_with_coordinates_in_other_written_forms_are_curated_alike(tmp_path, write):
    """The real January 2023 outcomes file, and the same file with every coordinate written
    another way: the same rows are curated, with the same typed coordinates."""
    contract = load_contracts()["crime_outcomes"]
    rows = list(csv.DictReader(REAL_OUTCOMES.open(encoding="utf-8", newline="")))
    rewritten = tmp_path / "2023-01-metropolitan-outcomes.csv"
    rewritten.write_text(_with_coordinates_written(rows, write), encoding="utf-8")
    lake = FolderLake(tmp_path / "lake")

    original = validate_delivery(contract, REAL_OUTCOMES, "2023-01", "original", lake)
    other = validate_delivery(contract, rewritten, "2023-01", "rewritten", lake)

    assert original.rows_delivered == other.rows_delivered == len(rows) == 1_822
    assert other.rows_quarantined == original.rows_quarantined
    assert not [b.rule for b in other.breaches if b.rule.endswith((".type", ".range"))]
    before = _curated(lake.path(lake.staging_path(contract.name, "2023-01", "original")))
    after = _curated(lake.path(lake.staging_path(contract.name, "2023-01", "rewritten")))
    assert after == before
    written = [r for r in csv.DictReader(io.StringIO(rewritten.read_text())) if r["Longitude"]]
    assert written and len(written) == sum(1 for lon, _ in after.values() if lon is not None)
    for number, row in enumerate(csv.DictReader(io.StringIO(rewritten.read_text())), 1):
        if row["Longitude"] and number in after:
            assert after[number] == (float(row["Longitude"]), float(row["Latitude"]))


def test_exponent_coordinates_reach_the_warehouse_as_the_numbers_they_are(tmp_path):
    """The real outcomes file with its coordinates in exponent form, through intake,
    validation and publication: the warehouse holds every row, each coordinate exactly
    float(text), and the month is published with no breach of a number."""
    contract = load_contracts()["crime_outcomes"]
    rows = list(csv.DictReader(REAL_OUTCOMES.open(encoding="utf-8", newline="")))
    text = _with_coordinates_written(rows, lambda v: format(Decimal(v), "E"))
    drop = tmp_path / "dropzone" / contract.name / "2023-01" / REAL_OUTCOMES.name
    drop.parent.mkdir(parents=True)
    drop.write_text(text, encoding="utf-8")
    lake = FolderLake(tmp_path / "lake")
    register = Register(lake)
    zone = FolderDropZone(tmp_path / "dropzone", settle_seconds=0)

    take_deliveries(contract.name, "2023-01", zone, lake, register, "t")
    (verdict,) = validate_pending(contract, "2023-01", lake, register, "t")
    publish_delivery(lake, register, awaiting_publication(register, contract.name, "2023-01"), "t")
    warehouse = build_warehouse(lake, {contract.name: contract}, tmp_path / "w.duckdb")

    assert verdict.status == "validated"
    assert not [b.rule for b in verdict.outcome.breaches if b.rule.endswith((".type", ".range"))]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = dict(
            (row, (lon, lat))
            for row, lon, lat in con.execute(
                "SELECT _source_row, longitude, latitude FROM curated.crime_outcomes"
            ).fetchall()
        )
    assert len(stored) == len(rows) == verdict.outcome.rows_curated
    delivered = list(csv.DictReader(io.StringIO(text)))
    with_point = [n for n, r in enumerate(delivered, 1) if r["Longitude"]]
    assert with_point and all("E" in delivered[n - 1]["Longitude"] for n in with_point)
    for number in with_point:
        row = delivered[number - 1]
        assert stored[number] == (float(row["Longitude"]), float(row["Latitude"]))
