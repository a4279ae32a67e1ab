"""A process keeps what the row engine compiles for a contract between deliveries: a
column's period-free rules and checks (`schemas.row_checks._period_free_checks`), their
polars expressions (`row_verdicts._EXPRESSIONS`), each column's typed expression and the
curated schema. A backfill's months then compile only what depends on the month (the
in-period bounds, the repeated keys, a wide file's value columns).

What a user would notice if the cache kept too much: a month judged by an earlier month's
bounds, or a rule or reason of another delivery. So the checks compiled after other months
must be the ones a fresh process compiles, rule for rule and row for row, for any period
and any cells, and judge as pandera itself does with the same schema.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.demo.synthetic import write_delivery
from pipelines.validation import row_validation, row_verdicts
from pipelines.validation.row_validation import curated_schema, validate_delivery
from pipelines.validation.row_verdicts import broken_rules, judged, row_checks
from schemas import row_checks as compiled
from schemas.contract import Contract, load_contracts
from tests.test_row_verdicts import _frame, _pandera, _schema

CONTRACTS = load_contracts()
SAS = CONTRACTS["stop_and_search"]
MONTHS = [f"{year}-{month:02d}" for year in range(2019, 2027) for month in range(1, 13)]


def _forget() -> None:
    """As a new process: nothing compiled kept."""
    compiled._period_free_checks.cache_clear()
    row_verdicts._EXPRESSIONS.clear()
    row_validation._typed.cache_clear()
    row_validation._curated_schema.cache_clear()


def _verdicts(contract: Contract, frame: pl.DataFrame, period: str):
    """The rules compiled for `period`, and (row, rule) for every failure the engine finds."""
    schema, rules = _schema(contract, frame, period)
    verdict, _ = judged(frame, row_checks(schema, rules))
    found = {
        (index, rule)
        for index, broken in enumerate(verdict.select(broken_rules(verdict)).to_series())
        for rule in broken
    }
    return schema, rules, found


def _edges(period: str) -> list[str]:
    """Timestamps either side of the period's first and last instants, London time."""
    year, month = (int(x) for x in period.split("-"))
    last_day = {2: 29 if year % 4 == 0 else 28}.get(month, 30 if month in (4, 6, 9, 11) else 31)
    return [
        f"{period}-01T00:00:00+00:00",
        f"{period}-01T00:30:00+01:00",
        f"{period}-{last_day:02d}T23:30:00+00:00",
        f"{period}-{last_day:02d}T23:59:59+01:00",
        f"{period}-15T12:00:00+00:00",
    ]


_text = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["51.5", "-0.12", "Male"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), periods=st.lists(st.sampled_from(MONTHS), min_size=2, max_size=4))
def test_checks_compiled_after_other_months_judge_as_a_fresh_compile(data, periods):
    """Months compiled one after another in one process (as a backfill does) judge any
    rows exactly as the last month's checks compiled in a new process do, and as pandera
    does: an earlier month's bounds or reasons never leak into a later month."""
    # Dates at the edges of every month drawn, so that stale bounds would misjudge some.
    dates = st.one_of(st.none(), st.sampled_from([d for p in periods for d in _edges(p)]))
    cells = st.lists(
        st.tuples(dates, st.lists(_text, min_size=14, max_size=14)), min_size=1, max_size=10
    )
    rows = data.draw(cells)
    names = SAS.source_names
    date_at = names.index(SAS.column("date").source_name)
    table = [[*others[:date_at], date, *others[date_at:]] for date, others in rows]
    frame = pl.DataFrame(
        {name: [row[i] for row in table] for i, name in enumerate(names)},
        schema={name: pl.String for name in names},
    )
    for period in periods[:-1]:
        _verdicts(SAS, frame, period)
    schema, rules, found = _verdicts(SAS, frame, periods[-1])

    _forget()
    _, fresh_rules, fresh_found = _verdicts(SAS, frame, periods[-1])
    assert rules == fresh_rules
    assert found == fresh_found
    # pandera, given the schema made of the kept checks, agrees too (a fresh schema's
    # agreement with pandera is test_row_verdicts' property).
    assert found == _pandera(schema, rules, frame)


@pytest.mark.parametrize(
    "name", ["stop_and_search", "public_attitude_survey", "complaints", "borough_crime"]
)
def test_each_contracts_months_in_one_process_are_judged_as_each_alone(name, tmp_path):
    """Generated deliveries with defects for three periods (a monthly, a quarterly and a
    wide contract among them), judged one after another in one process, fail the same
    rows on the same rules, with the same reasons, as each judged alone in a new one."""
    contract = CONTRACTS[name]
    quarterly = contract.schedule.period == "quarterly"
    periods = ["2023-01", "2023-04", "2024-10"] if quarterly else ["2023-11", "2024-02", "2024-03"]
    frames = {}
    for period in periods:
        path = write_delivery(
            contract, period, tmp_path / f"{period}.csv", rows=300, seed=3, defect_rate=0.3
        )
        frames[period] = _frame(path)
    in_one_process = {p: _verdicts(contract, frames[p], p)[1:] for p in periods}
    for period in periods:
        _forget()
        rules, found = _verdicts(contract, frames[period], period)[1:]
        assert found, "a file with 30% defects breaks some rule"
        assert in_one_process[period] == (rules, found)


def test_a_backfills_months_publish_and_quarantine_what_each_month_alone_does(tmp_path):
    """Three months of stop and search validated in one process (caches warm from the
    first) stage and quarantine the same rows, with the same breaches, as each month
    validated after everything kept is forgotten."""
    from pipelines.lake.store import open_lake

    periods = ["2024-01", "2024-02", "2024-03"]
    paths = {
        p: write_delivery(SAS, p, tmp_path / f"{p}.csv", rows=400, seed=5, defect_rate=0.1)
        for p in periods
    }

    def outcome(period: str, lake_dir: Path):
        lake = open_lake(lake_dir)
        result = validate_delivery(SAS, paths[period], period, "d" * 64, lake)
        staged = pl.read_parquet(lake.path(lake.staging_path(SAS.name, period, "d" * 64)))
        quarantined = pl.read_parquet(lake.path(lake.quarantine_path(SAS.name, period, "d" * 64)))
        breaches = [(b.rule, b.failing_rows, b.sample_rows, b.detail) for b in result.breaches]
        return staged, quarantined, breaches

    together = {p: outcome(p, tmp_path / "together") for p in periods}
    for period in periods:
        _forget()
        staged, quarantined, breaches = outcome(period, tmp_path / f"alone-{period}")
        assert together[period][0].equals(staged)
        assert together[period][1].equals(quarantined)
        assert together[period][2] == breaches
        assert any(rule == "date_in_period" for rule, *_ in breaches)
    assert curated_schema(SAS) is curated_schema(SAS)  # made once, then kept
