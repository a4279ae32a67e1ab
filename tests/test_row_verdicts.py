"""The engine judges a batch in one polars query (`pipelines.validation.row_verdicts`) instead of
pandera's `validate`: it must find exactly the failing rows and rules pandera finds, for
every contract, on generated deliveries full of defects, on the real published file, and
on any text a force could put in a cell."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandera.errors
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.demo.synthetic import write_delivery
from pipelines.intake.delivery_formats import open_delivery, text_batches
from pipelines.intake.wide_layout import value_columns, value_rule
from pipelines.validation.row_verdicts import broken_rules, judged, quarantined_rows, row_checks
from schemas.contract import Contract, load_contracts
from schemas.row_checks import compile_row_checks, key_expr

CONTRACTS = load_contracts()
PERIOD = "2024-03"  # includes the clocks going forward in London


def _frame(path: Path) -> pl.DataFrame:
    """The whole delivery as one all-text frame, as the engine reads its batches."""
    delivery = open_delivery(path)
    return pl.concat(text_batches(delivery, block_size=64 << 20, names=list(delivery.header)))


def _schema(contract: Contract, frame: pl.DataFrame, period: str):
    """The delivery's compiled checks, with its repeated keys and value columns."""
    duplicates = {
        key: frame.select(key_expr(contract, key).alias("k"))
        .drop_nulls()
        .filter(pl.col("k").is_duplicated())["k"]
        .unique()
        .to_list()
        for key in contract.unique_keys
    }
    schema, rules = compile_row_checks(contract, period, duplicates)
    values = value_columns(contract, frame.columns)
    if values:
        schema, rules = value_rule(contract, schema, rules, values)
    return schema, rules


def _pandera(schema, rules, frame: pl.DataFrame) -> set[tuple[int, str]]:
    """(row, rule id) for every failure pandera's own validate reports."""
    try:
        schema.validate(frame, lazy=True)
        return set()
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases.filter(pl.col("index").is_not_null())
    required = {r.source_name: r.id for r in rules if r.id.endswith(".required")}
    return {
        (int(index), required[column] if check == "not_nullable" else check)
        for index, column, check in cases.select("index", "column", "check").iter_rows()
    }


def _engine(schema, rules, frame: pl.DataFrame) -> set[tuple[int, str]]:
    verdict, _ = judged(frame, row_checks(schema, rules))
    return {
        (index, rule)
        for index, broken in enumerate(verdict.select(broken_rules(verdict)).to_series())
        for rule in broken
    }


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_every_contract_fails_the_same_rows_on_the_same_rules_as_pandera(name, tmp_path):
    contract = CONTRACTS[name]
    path = write_delivery(contract, PERIOD, tmp_path / "d.csv", rows=600, seed=7, defect_rate=0.3)
    frame = _frame(path)
    schema, rules = _schema(contract, frame, PERIOD)

    expected = _pandera(schema, rules, frame)
    assert expected, "a file with 30% defects breaks some rule"
    assert _engine(schema, rules, frame) == expected


def test_the_real_june_2022_file_with_defects_fails_as_pandera_says(
    stop_and_search, real_stop_and_search, tmp_path
):
    with real_stop_and_search.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    defects = {
        "Date": "2022-06-31T10:00:00+00:00",
        "Age range": "10-17 ",
        "Latitude": "1e400",
        "Part of a policing operation": "FALSE",
        "Type": "",
    }
    for number, row in enumerate(rows[1:]):
        column = list(defects)[number % len(defects)]
        if number % 3 == 0:
            row[header.index(column)] = defects[column]
    path = tmp_path / "d.csv"
    path.write_text(_csv(rows), encoding="utf-8")
    frame = _frame(path)
    schema, rules = _schema(stop_and_search, frame, "2022-06")

    expected = _pandera(schema, rules, frame)
    assert len({rule for _, rule in expected}) >= len(defects)
    assert _engine(schema, rules, frame) == expected
    checks = row_checks(schema, rules)
    verdict, _ = judged(frame, checks)
    quarantining = {index for index, rule in expected if rule in checks.quarantining}
    assert set(quarantined_rows(verdict, checks, frame.height).arg_true().to_list()) == quarantining


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


SAS = CONTRACTS["stop_and_search"]
# Cells near what each column agrees: valid values, their near misses, blanks, any text.
_near = st.sampled_from(
    [
        "2024-03-31T01:30:00+00:00", "2024-03-31T23:30:00+01:00", "2024-02-29T23:59:59+00:00",
        "2024-3-1T00:00:00+00:00", "51.5", "-0.12", "1e3", ".5", "5.", "nan", "inf", " 1",
        "True", "False", "TRUE", "18-24", "over 34", "Male", "Female", "Person search",
        "Vehicle search", "None", "NA",
    ]
)  # fmt: skip
_cell = st.one_of(st.none(), _near, st.text(max_size=12))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_cell, min_size=15, max_size=15), min_size=1, max_size=12))
def test_any_cells_fail_the_same_rules_as_pandera(cells):
    names = SAS.source_names
    frame = pl.DataFrame(
        {name: [row[i] for row in cells] for i, name in enumerate(names)},
        schema={name: pl.String for name in names},
    )
    schema, rules = _schema(SAS, frame, PERIOD)
    assert _engine(schema, rules, frame) == _pandera(schema, rules, frame)
