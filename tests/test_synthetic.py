"""The synthetic delivery generator: layout, determinism, validity, defects and realism."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import yaml

from pipelines.demo.synthetic import CHUNK_ROWS, generate_batches, write_delivery
from pipelines.demo.synthetic_time import PROFILES_DIR
from pipelines.lake.store import FolderLake
from pipelines.validation.row_validation import validate_delivery
from schemas.contract import Contract, load_contracts, parse_contract

LONDON = ZoneInfo("Europe/London")
PERIOD = "2022-06"
CONTRACTS = load_contracts()
# A key over a finite set of values allows fewer rows than asked for: the census has one row
# per age band, ethnic group and sex; a quarter of the survey one per borough and measure.
DISTINCT_ROWS = {"census_2021_population": 48, "public_attitude_survey": 32 * 8}
# Completeness limits a realistic delivery breaches (the breach publishes the delivery):
# 30.4% of the real June 2022 stop and search file has no self-defined ethnicity, over the
# 25% agreed; and workforce counts "Not stated" in rows of cells, one of six ethnicity
# values in almost every group, over the 10% agreed.
KNOWN_COMPLETENESS = {
    "stop_and_search": {"self_defined_ethnicity_completeness"},
    "workforce": {"ethnicity_completeness"},
}


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        header, *rows = csv.reader(fh)
    return header, rows


def _problems(contract: Contract, period: str, row: list[str]) -> list[str]:
    """What is wrong with one delivered row against the contract (empty when valid)."""
    problems = []
    for column, value in zip(contract.columns, row, strict=True):
        name = column.source_name
        if value == "":
            if column.required:
                problems.append(f"{name} blank")
            continue
        for rule in column.value_rules:
            if value not in rule.valid_values:
                problems.append(f"{name} not allowed: {value!r}")
        if column.logical_type == "timestamp":
            try:
                when = datetime.strptime(value, column.timestamp_format.replace("%:z", "%z"))
            except ValueError:
                problems.append(f"{name} malformed: {value!r}")
                continue
            if column.in_period_rule and when.astimezone(LONDON).strftime("%Y-%m") != period:
                problems.append(f"{name} outside {period}: {value!r}")
        elif column.logical_type == "date":
            try:
                day = datetime.strptime(value, "%Y-%m-%d")
            except ValueError:
                problems.append(f"{name} malformed: {value!r}")
                continue
            if column.in_period_rule and day.strftime("%Y-%m") != period:
                problems.append(f"{name} outside {period}: {value!r}")
        elif column.logical_type in ("number", "integer"):
            try:
                number = float(value) if column.logical_type == "number" else int(value)
            except ValueError:
                problems.append(f"{name} not a number: {value!r}")
                continue
            low, high = column.minimum, column.maximum
            if (low is not None and number < low) or (high is not None and number > high):
                problems.append(f"{name} out of range: {value!r}")
        elif column.logical_type == "boolean" and value not in ("True", "False"):
            problems.append(f"{name} not a boolean: {value!r}")
    return problems


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, stop_and_search: Contract) -> Path:
    path = tmp_path_factory.mktemp("clean") / "2022-06-metropolitan-stop-and-search.csv"
    return write_delivery(stop_and_search, PERIOD, path, rows=20_000, seed=7, defect_rate=0)


@pytest.fixture(scope="module")
def defective(tmp_path_factory: pytest.TempPathFactory, stop_and_search: Contract) -> Path:
    path = tmp_path_factory.mktemp("defective") / "2022-06-metropolitan-stop-and-search.csv"
    return write_delivery(stop_and_search, PERIOD, path, rows=20_000, seed=7, defect_rate=0.05)


def test_layout_matches_the_published_file(
    stop_and_search: Contract, clean: Path, real_stop_and_search: Path
) -> None:
    data = clean.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in data and b'"' not in data and data.endswith(b"\n")
    header, rows = _read(clean)
    assert header == list(stop_and_search.source_names)
    assert len(rows) == 20_000
    assert data.split(b"\n", 1)[0] == real_stop_and_search.read_bytes().split(b"\n", 1)[0]
    assert rows[0][1].endswith("+00:00") and len(rows[0][1]) == len("2022-06-01T10:15:00+00:00")


@pytest.mark.parametrize("rows", [0, 1, 999])
def test_row_count_is_exact(tmp_path: Path, stop_and_search: Contract, rows: int) -> None:
    path = write_delivery(stop_and_search, PERIOD, tmp_path / "a" / "b" / "out.csv", rows)
    assert len(_read(path)[1]) == rows
    assert [p.name for p in path.parent.iterdir()] == ["out.csv"]  # no temporary left behind


def test_same_arguments_give_the_same_bytes(tmp_path: Path, stop_and_search: Contract) -> None:
    first = write_delivery(stop_and_search, PERIOD, tmp_path / "1.csv", 3_000, seed=3)
    second = write_delivery(stop_and_search, PERIOD, tmp_path / "2.csv", 3_000, seed=3)
    other = write_delivery(stop_and_search, PERIOD, tmp_path / "3.csv", 3_000, seed=4)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_no_defects_gives_a_valid_file(stop_and_search: Contract, clean: Path) -> None:
    _, rows = _read(clean)
    bad = [(i, p) for i, row in enumerate(rows) if (p := _problems(stop_and_search, PERIOD, row))]
    assert bad == []
    dates = [row[1] for row in rows]
    assert dates == sorted(dates)


def test_defect_share_is_roughly_as_asked(
    stop_and_search: Contract, clean: Path, defective: Path
) -> None:
    _, good = _read(clean)
    _, rows = _read(defective)
    failing = [_problems(stop_and_search, PERIOD, row) for row in rows]
    share = sum(1 for p in failing if p) / len(rows)
    assert 0.042 < share < 0.058
    assert all(len(p) == 1 for p in failing if p)  # one defect per row
    # Defects change cells of the clean file, nothing else.
    changed = sum(1 for a, b in zip(good, rows, strict=True) if a != b)
    assert changed == sum(1 for p in failing if p)
    text = " | ".join(p[0] for p in failing if p)
    for symptom in ("blank", "not allowed", "malformed", "outside 2022-06", "out of range"):
        assert symptom in text
    assert "Self-defined ethnicity not allowed" in text and " '" in text  # trailing space


def test_value_mix_follows_the_profile(stop_and_search: Contract, clean: Path) -> None:
    profile = yaml.safe_load((PROFILES_DIR / "stop_and_search.yaml").read_text())
    weights = profile["columns"]["Type"]["weights"]
    _, rows = _read(clean)
    seen = Counter(row[0] for row in rows)
    for value, weight in weights.items():
        assert abs(seen[value] / len(rows) - weight / sum(weights.values())) < 0.012, value


def test_realistic_correlations(stop_and_search: Contract, clean: Path) -> None:
    header, rows = _read(clean)
    col = {name: i for i, name in enumerate(header)}
    pairs = Counter((r[col["Legislation"]], r[col["Object of search"]]) for r in rows)
    drugs = {o for (law, o) in pairs if law == "Misuse of Drugs Act 1971 (section 23)"}
    assert drugs == {"Controlled drugs"}
    assert all((r[col["Latitude"]] == "") == (r[col["Longitude"]] == "") for r in rows)
    assert 0.08 < sum(1 for r in rows if not r[col["Latitude"]]) / len(rows) < 0.13
    assert {r[col["Part of a policing operation"]] for r in rows} == {"False"}
    for blank in ("Policing operation", "Outcome linked to object of search"):
        assert {r[col[blank]] for r in rows} == {""}
    officer = col["Officer-defined ethnicity"]
    black = [r for r in rows if r[officer] == "Black"]
    assert sum(r[col["Self-defined ethnicity"]].startswith("Black") for r in black) > len(black) / 2
    extra = len(rows) - len(set(map(tuple, rows)))
    assert 0.010 < extra / len(rows) < 0.026  # people searched together


@pytest.mark.parametrize("period", ["2022-03", "2022-10", "2023-01"])
def test_timestamps_stay_in_the_london_month(
    tmp_path: Path, stop_and_search: Contract, period: str
) -> None:
    path = write_delivery(stop_and_search, period, tmp_path / "x.csv", 4_000, defect_rate=0)
    _, rows = _read(path)
    assert all(not _problems(stop_and_search, period, row) for row in rows)


def test_chunks_join_up(tmp_path: Path, stop_and_search: Contract) -> None:
    """Across chunk boundaries the rows stay in time order and the count stays exact."""
    rows = CHUNK_ROWS + 2_345
    path = write_delivery(stop_and_search, PERIOD, tmp_path / "big.csv", rows, defect_rate=0)
    _, delivered = _read(path)
    dates = [row[1] for row in delivered]
    assert len(dates) == rows and dates == sorted(dates)


def test_generate_batches_gives_text_without_nulls(stop_and_search: Contract) -> None:
    batches = list(generate_batches(stop_and_search, PERIOD, rows=1_000, seed=1))
    assert sum(b.num_rows for b in batches) == 1_000
    for batch in batches:
        assert batch.schema.names == list(stop_and_search.source_names)
        assert all(c.type == pa.string() and c.null_count == 0 for c in batch.columns)


def test_contract_without_profile(tmp_path: Path) -> None:
    """Any contract works from the contract alone, and awkward text is quoted minimally."""
    schedule = {"period": "monthly", "firstPeriod": "2020-01", "dueDayOfFollowingMonth": 20}
    doc = {
        "name": "synthetic_test_no_profile",
        "version": "1.0.0",
        "schema": [
            {
                "name": "t",
                "properties": [
                    {
                        "name": "kind",
                        "physicalName": "Kind, of thing",
                        "logicalType": "string",
                        "required": True,
                        "quality": [
                            {
                                "name": "kind_known",
                                "metric": "invalidValues",
                                "arguments": {"validValues": ["a, b", 'say "hi"', "plain"]},
                                "severity": "major",
                            }
                        ],
                    },
                    {"name": "n", "logicalType": "integer", "logicalTypeOptions": {"minimum": 1}},
                    {
                        "name": "x",
                        "logicalType": "number",
                        "logicalTypeOptions": {"minimum": -2.5, "maximum": 2.5},
                    },
                    {"name": "flag", "logicalType": "boolean"},
                    {"name": "day", "logicalType": "date", "quality": [_in_period()]},
                    {"name": "note", "logicalType": "string"},
                ],
            }
        ],
        "customProperties": [
            {"property": "deliverySchedule", "value": {**schedule, "lateAfterDays": 5}}
        ],
    }
    contract = parse_contract(doc, tmp_path / "synthetic_test_no_profile.yaml")
    path = write_delivery(contract, "2024-02", tmp_path / "out.csv", 2_000, defect_rate=0)
    header, rows = _read(path)
    assert header == list(contract.source_names)
    assert all(not _problems(contract, "2024-02", row) for row in rows)
    assert {r[0] for r in rows} == {"a, b", 'say "hi"', "plain"}
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerows([header, *rows])
    assert path.read_text(encoding="utf-8") == expected.getvalue()


def _in_period() -> dict:
    return {
        "name": "day_in_period",
        "type": "custom",
        "implementation": "inPeriod",
        "severity": "major",
    }


def _contract_period(contract: Contract) -> str:
    """A period within the contract's schedule: March 2025 (the clocks go forward), the
    quarter from April 2025, or the one period of a delivery sent once."""
    return {"once": contract.schedule.first_period, "quarterly": "2025-04"}.get(
        contract.schedule.period, "2025-03"
    )


def _validated(contract: Contract, tmp_path: Path, rows: int, defect_rate: float, seed: int = 0):
    period = _contract_period(contract)
    path = write_delivery(contract, period, tmp_path / "d.csv", rows, seed, defect_rate)
    lake = FolderLake(tmp_path / "lake")
    return validate_delivery(contract, path, period, f"d{defect_rate}", lake, b"k")


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_every_contract_gives_a_delivery_that_passes_validation(tmp_path: Path, name: str) -> None:
    contract = CONTRACTS[name]
    outcome = _validated(contract, tmp_path, rows=500, defect_rate=0)
    assert outcome.rows_delivered == DISTINCT_ROWS.get(name, 500)
    assert outcome.rows_quarantined == 0
    row_breaches = [
        (b.rule, b.failing_rows, b.sample_rows)
        for b in outcome.breaches
        if b.action in ("rows quarantined", "rows kept")
    ]
    assert row_breaches == []
    others = {b.rule for b in outcome.breaches} - KNOWN_COMPLETENESS.get(name, set())
    assert others == set()


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_every_contract_gives_defects_that_validation_catches(tmp_path: Path, name: str) -> None:
    # Fixed seed: the census's 48 rows carry about one defect at 2%.
    outcome = _validated(CONTRACTS[name], tmp_path, rows=500, defect_rate=0.02)
    assert outcome.rows_delivered == DISTINCT_ROWS.get(name, 500)
    assert 0 < outcome.rows_quarantined < outcome.rows_delivered * 0.1
    # Every source row is accounted for: published or quarantined, never dropped.
    assert outcome.rows_curated + outcome.rows_quarantined == outcome.rows_delivered


def test_wide_layout_has_the_release_months(tmp_path: Path) -> None:
    """A release for 2024-02 has the 24 months 2022-02 to 2024-01, as the real file has."""
    contract = CONTRACTS["borough_crime"]
    months = [f"{2022 + (m - 1) // 12}{(m - 1) % 12 + 1:02d}" for m in range(2, 26)]
    path = write_delivery(contract, "2024-02", tmp_path / "wide.csv", 300, defect_rate=0)
    header, rows = _read(path)
    assert header[:3] == ["MajorText", "MinorText", "BoroughName"]
    assert header[3:] == months and months[0] == "202202" and months[-1] == "202401"
    assert all(int(v) >= 0 for row in rows for v in row[3:])
    assert all(sum(int(v) for v in row[3:]) > 0 for row in rows)
    assert len({tuple(row[:3]) for row in rows}) == len(rows) == 300


@pytest.mark.parametrize("rows", [10, 1_000])
def test_census_rows_are_distinct_combinations(tmp_path: Path, rows: int) -> None:
    contract = CONTRACTS["census_2021_population"]
    path = write_delivery(contract, "2021-03", tmp_path / "c.csv", rows, defect_rate=0)
    _, delivered = _read(path)
    assert len(delivered) == min(rows, 48)
    assert len({(r[2], r[4], r[6]) for r in delivered}) == len(delivered)


def test_linked_times_follow_their_reference(tmp_path: Path) -> None:
    """Local wall-clock times without an offset, arrival after the call, sometimes none;
    an allegation finalised after its case was received, or open with no outcome."""
    emergency = CONTRACTS["emergency_response"]
    path = write_delivery(emergency, "2025-03", tmp_path / "e.csv", 3_000, defect_rate=0)
    _, rows = _read(path)
    calls = [datetime.strptime(r[2], "%Y-%m-%d %H:%M:%S") for r in rows]
    assert all(c.strftime("%Y-%m") == "2025-03" for c in calls)
    # Nothing in the hour the clocks skip (01:00 to 01:59 on 30 March 2025).
    assert not [c for c in calls if c.day == 30 and c.hour == 1]
    assert len({r[0] for r in rows}) == len(rows)
    days = [c.strftime("%d%b%y").upper() for c in calls]
    assert all(r[0].endswith("/" + day) for r, day in zip(rows, days, strict=True))
    arrivals = [(r, c) for r, c in zip(rows, calls, strict=True) if r[3]]
    assert 0.6 < len(arrivals) / len(rows) < 0.95
    assert all(datetime.strptime(r[3], "%Y-%m-%d %H:%M:%S") >= c for r, c in arrivals)

    complaints = CONTRACTS["complaints"]
    path = write_delivery(complaints, "2025-03", tmp_path / "c.csv", 2_000, defect_rate=0)
    _, rows = _read(path)
    assert len({(r[0], r[1]) for r in rows}) == len(rows)
    assert {r[1] for r in rows} >= {"1", "2", "3"}
    for case, _, received, finalised, *_, outcome in (r[:7] for r in rows):
        assert case.endswith("/25") and received.endswith("/03/2025")
        assert (finalised == "") == (outcome == "")
        if finalised:
            day = datetime.strptime(finalised, "%d/%m/%Y")
            assert datetime.strptime(received, "%d/%m/%Y") <= day <= datetime(2025, 4, 15)
    assert 0.2 < sum(1 for r in rows if not r[3]) / len(rows) < 0.8
