"""What a month's verdict tells people is true (issue 20, items 2, 3, 4, 6 and 8).

- A delivery from which nothing can be published is held back with a critical breach
  saying what most likely happened, and its month still counts as not delivered.
- A file named for another period than its folder is a breach of its own.
- A second file for a month agreed as one file never replaces the first in silence, and
  the volume check catches a month at half its usual size.
- A borough crime release must carry its agreed 24 months, and an older release's figures
  never replace a newer one's in the curated view.
- Every breach of a held delivery says it was held, not published.
- A category-mix change on a nearly empty column is not a breach.

Real published files throughout (tests/data/real), through the engine itself: intake,
validation and publication on a folder lake, the warehouse in DuckDB.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.demo.synthetic import write_delivery
from pipelines.governance.delivery_schedule import check_schedule, delivered_periods
from pipelines.intake.delivery_intake import take_deliveries
from pipelines.intake.dropzone import FolderDropZone
from pipelines.lake.publishing import awaiting_publication, publish_delivery, published
from pipelines.lake.register import Register
from pipelines.lake.store import FolderLake, Lake, open_lake
from pipelines.validation.dataset_expectations import check_dataset, profile_from_counts
from pipelines.validation.delivery_verdicts import _history_mix, _mix_path, validate_pending
from pipelines.validation.month_checks import (
    FILE_NAME,
    HELD,
    HELD_TOO,
    MULTIPLE_FILES,
    NOTHING_USABLE,
    PERIODS_CARRIED,
    RESTATED,
    agreed_periods,
    file_name_breach,
    shift_period,
)
from pipelines.validation.row_validation import curated_schema
from pipelines.warehouse.catalog import build_warehouse, catalog_shows
from schemas.contract import load_contracts
from schemas.contract_lint import lint_document
from tests.conftest import REAL_DATA, REAL_STOP_AND_SEARCH
from tests.s3_server import LAKE_BUCKET

REAL_BOROUGH = (
    REAL_DATA
    / "borough_crime"
    / ("MPS Borough Level Crime (most recent 24 months) 2022-02 to 2024-01.csv")
)
REAL_ROWS = 16_332  # data rows of the real June 2022 stop-and-search file


class Engine:
    """Intake, validation and publication of one contract on a folder drop zone and lake."""

    def __init__(self, tmp_path: Path, contract: str, lake: Lake | None = None, **changes) -> None:
        self.contract = load_contracts()[contract]
        if changes:
            self.contract = dataclasses.replace(self.contract, **changes)
        self.root = tmp_path / "dropzone"
        self.zone = FolderDropZone(self.root, settle_seconds=0)
        self.lake = lake or FolderLake(tmp_path / "lake")
        self.register = Register(self.lake)

    def put(self, period: str, name: str, text: str | bytes) -> None:
        path = self.root / self.contract.name / period / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)

    def process(self, period: str):
        take_deliveries(self.contract.name, period, self.zone, self.lake, self.register, "t")
        verdicts = validate_pending(self.contract, period, self.lake, self.register, "t")
        candidate = awaiting_publication(self.register, self.contract.name, period)
        if candidate:
            publish_delivery(self.lake, self.register, candidate, "t")
        return verdicts

    def status(self, period: str) -> dict[str, str]:
        return {
            d["source_path"].rsplit("/", 1)[-1]: d["event"]
            for d in self.register.deliveries(self.contract.name).values()
            if d["period"] == period
        }

    def breaches(self, delivery_id: str) -> list[dict]:
        return [
            b for b in self.register.breaches(self.contract.name) if b["delivery_id"] == delivery_id
        ]


def real_text() -> str:
    return REAL_STOP_AND_SEARCH.read_text(encoding="utf-8")


def split_rows(text: str) -> tuple[str, list[str]]:
    header, *rows = text.splitlines(keepends=True)
    return header, rows


# -- item 2: a month with nothing usable ------------------------------------------------------


def test_a_month_filed_under_the_wrong_month_is_held_and_stays_undelivered(tmp_path):
    engine = Engine(tmp_path, "stop_and_search")
    engine.put("2022-07", REAL_STOP_AND_SEARCH.name, REAL_STOP_AND_SEARCH.read_bytes())
    (verdict,) = engine.process("2022-07")

    assert verdict.status == "held"
    assert published(engine.register, "stop_and_search", "2022-07") is None
    assert not engine.lake.exists(engine.lake.curated_path("stop_and_search", "2022-07"))
    by_rule = {b["rule"]: b for b in engine.breaches(verdict.delivery_id)}
    held = by_rule[NOTHING_USABLE]
    assert held["severity"] == "critical"
    assert held["failing_rows"] == REAL_ROWS
    assert f"None of the {REAL_ROWS:,} rows can be published." in held["detail"]
    assert "Every date in Date lies in 2022-06, the month before 2022-07" in held["detail"]
    assert "filed under the wrong month?" in held["detail"]
    # The file's name says June too: a breach of its own, naming both periods.
    named = by_rule[FILE_NAME]
    assert named["severity"] == "major"
    assert "names 2022-06" in named["detail"] and "2022-07 folder" in named["detail"]

    # Every breach says what really happened: held back, nothing published.
    assert {b["action"] for b in by_rule.values()} == {HELD, HELD_TOO}
    assert all(b["action"] == HELD for b in by_rule.values() if b["severity"] == "critical")
    assert "nothing is published for the month" in verdict.reason

    # The month was not delivered: the late check still chases it.
    usable, unusable = delivered_periods(engine.register, "stop_and_search")
    assert "2022-07" not in usable and "2022-07" in unusable
    watched = dataclasses.replace(
        engine.contract,
        schedule=dataclasses.replace(engine.contract.schedule, late_checks_from="2022-07"),
    )
    report = check_schedule(watched, engine.lake, engine.register, today=date(2022, 9, 1))
    assert [p.period for p in report.late] == ["2022-07"]
    (late,) = report.raised
    assert "held back with nothing in it fit to publish" in late.detail


def test_booleans_spelled_as_a_spreadsheet_writes_them_are_named_as_the_cause(tmp_path):
    # The real June file as Excel saves it: every False written FALSE.
    engine = Engine(tmp_path, "stop_and_search")
    engine.put("2022-06", "june.csv", real_text().replace(",False,", ",FALSE,"))
    (verdict,) = engine.process("2022-06")

    assert verdict.status == "held"
    (held,) = [b for b in engine.breaches(verdict.delivery_id) if b["rule"] == NOTHING_USABLE]
    assert (
        "Every row fails Part of a policing operation: it holds 'FALSE' where the agreement "
        "says True or False (booleans spelled as a spreadsheet writes them)." in held["detail"]
    )
    assert published(engine.register, "stop_and_search", "2022-06") is None


def test_a_contract_can_agree_the_least_share_of_rows_that_makes_a_delivery(tmp_path):
    header, rows = split_rows(real_text())
    spoilt = int(len(rows) * 0.6)
    text = header + "".join(
        r.replace(",False,", ",FALSE,") if i < spoilt else r for i, r in enumerate(rows)
    )
    strict = Engine(tmp_path / "strict", "stop_and_search", min_publishable_share=0.5)
    strict.put("2022-06", "june.csv", text)
    (verdict,) = strict.process("2022-06")
    assert verdict.status == "held"
    (held,) = [b for b in strict.breaches(verdict.delivery_id) if b["rule"] == NOTHING_USABLE]
    usable = len(rows) - spoilt
    assert f"Only {usable:,} of {len(rows):,} rows" in held["detail"]
    assert "at least 50%" in held["detail"]

    # Without the term, any usable row is enough: the same file is published.
    lenient = Engine(tmp_path / "lenient", "stop_and_search")
    lenient.put("2022-06", "june.csv", text)
    (verdict,) = lenient.process("2022-06")
    assert verdict.status == "validated"
    assert published(lenient.register, "stop_and_search", "2022-06")["rows_curated"] == usable


def test_a_share_of_dates_in_another_month_is_counted_in_the_cause(tmp_path):
    # The real June rows filed under July, 40% of them moved into July: under the agreed
    # half, held, and the cause counts the dates outside July.
    header, rows = split_rows(real_text())
    moved = int(len(rows) * 0.4)
    text = header + "".join(
        r.replace("2022-06-", "2022-07-", 1) if i < moved else r for i, r in enumerate(rows)
    )
    engine = Engine(tmp_path, "stop_and_search", min_publishable_share=0.5)
    engine.put("2022-07", "july.csv", text)
    (verdict,) = engine.process("2022-07")
    assert verdict.status == "held"
    (held,) = [b for b in engine.breaches(verdict.delivery_id) if b["rule"] == NOTHING_USABLE]
    outside = len(rows) - verdict.outcome.rows_curated
    assert (
        f"Every date in Date outside 2022-07 ({outside:,} of {len(rows):,}) lies in 2022-06, "
        "the month before 2022-07: filed under the wrong month?" in held["detail"]
    )


def test_a_file_named_for_its_own_month_raises_no_name_breach(tmp_path):
    engine = Engine(tmp_path, "stop_and_search")
    engine.put("2022-06", REAL_STOP_AND_SEARCH.name, REAL_STOP_AND_SEARCH.read_bytes())
    (verdict,) = engine.process("2022-06")
    assert verdict.status == "validated"
    rules = {b["rule"] for b in engine.breaches(verdict.delivery_id)}
    assert not rules & {FILE_NAME, NOTHING_USABLE}


@given(
    named=st.integers(0, 400).map(lambda n: shift_period("2000-01", n)),
    folder=st.integers(0, 400).map(lambda n: shift_period("2000-01", n)),
    suffix=st.sampled_from([".csv", ".csv.gz", ".CSV", ".parquet"]),
)
@settings(max_examples=200, deadline=None)
def test_a_name_breach_exactly_when_the_named_period_is_not_the_folders(named, folder, suffix):
    contract = load_contracts()["stop_and_search"]
    name = f"stop_and_search/{folder}/{named}-metropolitan-stop-and-search{suffix}"
    breach = file_name_breach(contract, folder, "d", name, 10)
    assert (breach is None) == (named == folder)
    if breach:
        assert named in breach.detail and folder in breach.detail
    # A name outside the agreed pattern says nothing about its period.
    assert file_name_breach(contract, folder, "d", f"x/{folder}/{named}-other.csv", 10) is None


def test_new_terms_are_linted():
    path = Path(load_contracts()["borough_crime"].path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["customProperties"] += [
        {"property": "minPublishableShare", "value": 1.5},
        {"property": "mixMinimumValues", "value": 0},
    ]
    for prop in doc["customProperties"]:
        if prop["property"] == "deliverySchedule":
            prop["value"]["filesPerPeriod"] = "two"
    layout = doc["schema"][0]["customProperties"][0]["value"]
    layout["agreedPeriods"] = {"count": 0, "endsPeriodsBefore": -1}
    found = " | ".join(f"{f.path}: {f.message}" for f in lint_document(doc, path))
    assert "must be a share of the rows from 0 to 1 (0.5 is half), not 1.5" in found
    assert "must be a whole number of values >= 1, not 0" in found
    assert "filesPerPeriod: must be one" in found
    assert "agreedPeriods.count: must be a whole number >= 1" in found
    assert "agreedPeriods.endsPeriodsBefore: must be a whole number >= 0" in found


# -- item 3: a second file for a month agreed as one ----------------------------------------


def test_two_files_sent_together_are_a_breach_naming_both(tmp_path):
    header, rows = split_rows(real_text())
    half = len(rows) // 2
    engine = Engine(tmp_path, "stop_and_search")
    engine.put("2022-06", "a-first-half.csv", header + "".join(rows[:half]))
    engine.put("2022-06", "b-second-half.csv", header + "".join(rows[half:]))
    verdicts = engine.process("2022-06")

    assert [v.status for v in verdicts] == ["validated", "validated"]
    assert engine.status("2022-06") == {
        "a-first-half.csv": "superseded",
        "b-second-half.csv": "published",
    }
    (breach,) = [b for b in engine.breaches(verdicts[1].delivery_id) if b["rule"] == MULTIPLE_FILES]
    assert breach["severity"] == "major"
    detail = breach["detail"]
    assert "a-first-half.csv" in detail and "b-second-half.csv" in detail
    assert f"({half:,} rows)" in detail and f"({len(rows) - half:,} rows)" in detail
    assert f"the {half:,} rows of a-first-half.csv are not" in detail
    # The warehouse agrees: the month holds the second half only.
    build_warehouse(engine.lake, {"stop_and_search": engine.contract}, tmp_path / "w.duckdb")
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        (curated,) = con.execute("SELECT count(*) FROM curated.stop_and_search").fetchone()
    assert curated == published(engine.register, "stop_and_search", "2022-06")["rows_curated"]


def test_a_restatement_says_what_it_replaces_and_far_fewer_rows_is_major(tmp_path):
    header, rows = split_rows(real_text())
    engine = Engine(tmp_path, "stop_and_search")
    engine.put("2022-06", "june.csv", real_text())
    engine.process("2022-06")

    # Restated with half the month: far fewer rows, a major breach naming both files.
    engine.put("2022-06", "june-restated.csv", header + "".join(rows[: len(rows) // 2]))
    (verdict,) = engine.process("2022-06")
    (breach,) = [b for b in engine.breaches(verdict.delivery_id) if b["rule"] == RESTATED]
    assert breach["severity"] == "major"
    assert "june-restated.csv (8,166 rows) restates 2022-06" in breach["detail"]
    assert f"replacing june.csv ({REAL_ROWS:,} rows) as a whole" in breach["detail"]
    assert "far fewer rows (50% of the month it replaces)" in breach["detail"]

    # Restated again whole (a corrected copy): a minor note, still naming both files.
    engine.put("2022-06", "june-corrected.csv", header + "".join(reversed(rows)))
    (verdict,) = engine.process("2022-06")
    (breach,) = [b for b in engine.breaches(verdict.delivery_id) if b["rule"] == RESTATED]
    assert breach["severity"] == "minor"
    assert "june-corrected.csv" in breach["detail"] and "june-restated.csv" in breach["detail"]
    assert engine.status("2022-06")["june-corrected.csv"] == "published"


def test_half_the_usual_month_is_outside_the_volume_band(stop_and_search, tmp_path):
    # The month: 9,201 rows published where 18,402 is usual. Exactly half was the
    # band's edge and passed.
    history = [{"period": f"2023-{m:02d}", "rows_delivered": 18_402} for m in range(1, 7)]
    profile = profile_from_counts(stop_and_search, 9_201)
    breaches, _ = check_dataset(
        stop_and_search, "2023-07", "d", profile, history, FolderLake(tmp_path)
    )
    (volume,) = [b for b in breaches if b.rule == "dataset.volume"]
    assert "9,201 rows, 50% of the usual 18,402" in volume.detail
    just_over = profile_from_counts(stop_and_search, 9_202)
    breaches, _ = check_dataset(
        stop_and_search, "2023-07", "e", just_over, history, FolderLake(tmp_path)
    )
    assert not [b for b in breaches if b.rule == "dataset.volume"]


def test_a_month_in_parts_publishes_every_part(tmp_path):
    # street_crime agrees a month in parts: the Met's file and the City of London's.
    met = REAL_DATA / "street_crime" / "2023-01-metropolitan-street-burglary-only.csv"
    city = REAL_DATA / "street_crime" / "2023-01-city-of-london-street.csv"
    engine = Engine(tmp_path, "street_crime")
    assert engine.contract.schedule.files_per_period == "parts"
    engine.put("2023-01", met.name, met.read_bytes())
    engine.put("2023-01", city.name, city.read_bytes())
    verdicts = engine.process("2023-01")
    assert [v.status for v in verdicts] == ["validated", "validated"]
    assert set(engine.status("2023-01").values()) == {"published"}
    for v in verdicts:
        rules = {b["rule"] for b in engine.breaches(v.delivery_id)}
        assert not rules & {MULTIPLE_FILES, RESTATED}

    def curated() -> dict[str, int]:
        path = tmp_path / "w.duckdb"
        build_warehouse(engine.lake, {"street_crime": engine.contract}, path)
        with duckdb.connect(str(path), read_only=True) as con:
            return dict(
                con.execute(
                    "SELECT d.source_path, count(*) FROM curated.street_crime c "
                    "JOIN governance.deliveries d ON d.delivery_id = c._delivery_id GROUP BY 1"
                ).fetchall()
            )

    published_rows = {
        d["source_path"]: d["rows_curated"]
        for d in engine.register.deliveries("street_crime").values()
    }
    assert curated() == published_rows
    assert len(published_rows) == 2

    # The City of London part re-sent under the same name with a third of its rows: it
    # replaces that part only (far fewer rows: major), and the Met's rows stay published.
    header, rows = split_rows(city.read_text(encoding="utf-8"))
    engine.put("2023-01", city.name, header + "".join(rows[: len(rows) // 3]))
    (verdict,) = engine.process("2023-01")
    (breach,) = [b for b in engine.breaches(verdict.delivery_id) if b["rule"] == RESTATED]
    assert breach["severity"] == "major"
    assert f"({len(rows) // 3:,} rows) replaces the part of 2023-01" in breach["detail"]
    assert f"({len(rows):,} rows, published)" in breach["detail"]
    statuses = sorted(
        (d["event"], d["rows_delivered"])
        for d in engine.register.deliveries("street_crime").values()
    )
    assert [s for s, _ in statuses] == ["published", "published", "superseded"]
    now = curated()
    assert (
        now[f"street_crime/2023-01/{met.name}"]
        == published_rows[f"street_crime/2023-01/{met.name}"]
    )
    assert now[f"street_crime/2023-01/{city.name}"] == verdict.outcome.rows_curated


KINDS = ("good", "half", "wrong_month", "unreadable")


def _file_for(kind: str, seed: int) -> str:
    """A small stop-and-search file for 2025-01 of the given kind, unique by `seed`."""
    contract = load_contracts()["stop_and_search"]
    path = Path(tempfile.mkdtemp()) / "d.csv"
    period = "2024-12" if kind == "wrong_month" else "2025-01"
    write_delivery(contract, period, path, rows=40, seed=seed, defect_rate=0)
    text = path.read_text(encoding="utf-8")
    header, rows = split_rows(text)
    if kind == "half":
        return header + "".join(rows[:20])
    if kind == "unreadable":
        return header.replace("Officer-defined ethnicity", "Officer ethnicity") + "".join(rows)
    return text


@given(
    batches=st.lists(
        st.lists(st.sampled_from(KINDS), min_size=1, max_size=2), min_size=1, max_size=3
    )
)
@settings(max_examples=8, deadline=None)
def test_the_month_lifecycle_never_replaces_rows_in_silence(tmp_path_factory, batches):
    engine = Engine(tmp_path_factory.mktemp("month"), "stop_and_search")
    expected = None  # the file the rules say is published: the latest one validated
    seed = 0
    for number, batch in enumerate(batches):
        for kind in batch:
            seed += 1
            engine.put("2025-01", f"{number}-{seed}-{kind}.csv", _file_for(kind, seed))
        for verdict in engine.process("2025-01"):
            if verdict.status == "validated":
                expected = verdict.source_path.rsplit("/", 1)[-1]
    deliveries = list(engine.register.deliveries("stop_and_search").values())
    finals = {"published", "superseded", "held", "rejected"}
    assert {d["event"] for d in deliveries} <= finals
    shown = [d for d in deliveries if d["event"] == "published"]
    assert [d["source_path"].rsplit("/", 1)[-1] for d in shown] == ([expected] if expected else [])
    breaches = engine.register.breaches("stop_and_search")
    for d in deliveries:
        mine = [b for b in breaches if b["delivery_id"] == d["delivery_id"]]
        if d["event"] == "held":
            assert {b["action"] for b in mine} <= {HELD, HELD_TOO}
            assert NOTHING_USABLE in {b["rule"] for b in mine}
        if d["event"] == "superseded" and d.get("rows_curated"):
            # Rows validated or published never go without a breach naming their file.
            name = d["source_path"].rsplit("/", 1)[-1]
            naming = [
                b for b in breaches
                if b["rule"] in (MULTIPLE_FILES, RESTATED) and name in b["detail"]
            ]  # fmt: skip
            assert naming, f"{name} was replaced in silence"
    if shown:
        curated = engine.lake.parquet_file(engine.lake.curated_path("stop_and_search", "2025-01"))
        assert curated.metadata.num_rows == shown[0]["rows_curated"]


def test_a_month_in_parts_is_published_whole_on_an_s3_lake(s3, tmp_path):
    _, prefix = s3
    lake = open_lake(f"s3://{LAKE_BUCKET}/{prefix}")
    met = REAL_DATA / "street_crime" / "2023-01-metropolitan-street-burglary-only.csv"
    city = REAL_DATA / "street_crime" / "2023-01-city-of-london-street.csv"
    engine = Engine(tmp_path, "street_crime", lake=lake)
    engine.put("2023-01", met.name, met.read_bytes())
    engine.put("2023-01", city.name, city.read_bytes())
    verdicts = engine.process("2023-01")
    assert [v.status for v in verdicts] == ["validated", "validated"]
    curated = lake.read_table(lake.curated_path("street_crime", "2023-01"), ["_delivery_id"])
    counts = curated.group_by("_delivery_id").aggregate([("_delivery_id", "count")]).to_pylist()
    assert {r["_delivery_id"]: r["_delivery_id_count"] for r in counts} == {
        v.delivery_id: v.outcome.rows_curated for v in verdicts
    }
    # Nothing is left in staging: each part's staged file went into the month's file.
    assert not lake.glob("staging/contract=street_crime/period=2023-01/*.parquet")


# -- item 4: a stale borough crime release ----------------------------------------------------


def _release(text: str, drop: list[str], add: dict[str, int], bump: dict[str, int]) -> str:
    """A release derived from the real one: month columns dropped, added (with a count for
    every row) or bumped (each count raised), so each release's figures can be told apart."""
    reader = csv.DictReader(io.StringIO(text))
    fields = [f for f in reader.fieldnames if f not in drop] + list(add)
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, lineterminator="\r\n")
    writer.writeheader()
    for row in reader:
        for month in drop:
            row.pop(month)
        for month, count in add.items():
            row[month] = str(count)
        for month, extra in bump.items():
            row[month] = str(int(row[month]) + extra)
        writer.writerow(row)
    return out.getvalue()


def test_a_release_carries_its_agreed_months(tmp_path):
    contract = load_contracts()["borough_crime"]
    assert agreed_periods(contract, "2024-02") == [shift_period("2022-02", k) for k in range(24)]
    engine = Engine(tmp_path, "borough_crime")
    engine.put("2024-02", REAL_BOROUGH.name, REAL_BOROUGH.read_bytes())
    (verdict,) = engine.process("2024-02")
    assert verdict.status == "validated"
    assert PERIODS_CARRIED not in {b["rule"] for b in engine.breaches(verdict.delivery_id)}

    # The same release filed years later (in another home: the same bytes twice would be a
    # duplicate): none of the agreed months. Held back.
    engine = Engine(tmp_path / "stale", "borough_crime")
    engine.put("2026-06", REAL_BOROUGH.name, REAL_BOROUGH.read_bytes())
    (verdict,) = engine.process("2026-06")
    assert verdict.status == "held"
    (stale,) = [b for b in engine.breaches(verdict.delivery_id) if b["rule"] == PERIODS_CARRIED]
    assert stale["severity"] == "critical" and stale["action"] == HELD
    assert "24 months 2024-06 to 2026-05" in stale["detail"]
    assert "carries 24, 2022-02 to 2024-01: none of the agreed ones" in stale["detail"]
    assert "the release of 2024-02 sent again" in stale["detail"]
    assert published(engine.register, "borough_crime", "2026-06") is None
    usable, _ = delivered_periods(engine.register, "borough_crime")
    assert "2026-06" not in usable


def test_an_older_release_never_replaces_a_newer_ones_figures(tmp_path):
    text = REAL_BOROUGH.read_text(encoding="utf-8")
    engine = Engine(tmp_path, "borough_crime")
    # The March 2024 release: 202203 to 202402, every January 2024 count revised up by 1000.
    march = _release(text, drop=["202202"], add={"202402": 7}, bump={"202401": 1000})
    engine.put("2024-03", "march.csv", march)
    (verdict,) = engine.process("2024-03")
    assert verdict.status == "validated"
    # Then the February release sent again, filed as May 2024: three months short, three
    # months too old, and its January 2024 figures older than March's.
    engine.put("2024-05", REAL_BOROUGH.name, REAL_BOROUGH.read_bytes())
    (verdict,) = engine.process("2024-05")
    assert verdict.status == "validated"
    (breach,) = [b for b in engine.breaches(verdict.delivery_id) if b["rule"] == PERIODS_CARRIED]
    assert breach["severity"] == "major"
    assert "3 agreed months missing (2024-02 to 2024-04)" in breach["detail"]
    assert "3 not agreed (2022-02 to 2022-04)" in breach["detail"]

    path = tmp_path / "w.duckdb"
    build_warehouse(engine.lake, {"borough_crime": engine.contract}, path)
    with duckdb.connect(str(path), read_only=True) as con:
        picked = dict(
            con.execute(
                "SELECT strftime(month, '%Y-%m'), any_value(_period) FROM curated.borough_crime "
                "GROUP BY 1"
            ).fetchall()
        )
        january = con.execute(
            "SELECT sum(count) FROM curated.borough_crime WHERE month = DATE '2024-01-01'"
        ).fetchone()[0]
        released = con.execute(
            "SELECT _period, sum(count) FROM curated.borough_crime_releases "
            "WHERE month = DATE '2024-01-01' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        per_month = con.execute(
            "SELECT max(n) FROM (SELECT count(DISTINCT _period) AS n "
            "FROM curated.borough_crime GROUP BY month)"
        ).fetchone()[0]
    assert picked["2024-01"] == "2024-03" and picked["2023-06"] == "2024-03"
    assert picked["2022-02"] == "2024-05"  # only the old release carries it
    assert picked["2024-02"] == "2024-03"
    assert january == dict(released)["2024-03"]
    assert january == dict(released)["2024-05"] + 1000 * sum(1 for _ in text.splitlines()[1:])
    assert per_month == 1

    # A home whose catalog was built by the previous version (its view picked the latest
    # release period, under the old comment) is rebuilt before it is shown again.
    assert catalog_shows(path, engine.lake, engine.contract)
    with duckdb.connect(str(path)) as con:
        old = f"{engine.contract.title} Contract borough_crime v{engine.contract.version}."
        con.execute(f"COMMENT ON VIEW curated.borough_crime IS '{old}'")
    assert not catalog_shows(path, engine.lake, engine.contract)


@st.composite
def _releases(draw) -> list[tuple[str, list[str]]]:
    """Releases of a wide layout: (release period, the months it carries), any order."""
    count = draw(st.integers(1, 5))
    periods = draw(st.lists(st.integers(0, 30), min_size=count, max_size=count, unique=True))
    releases = []
    for p in periods:
        newest = p - draw(st.integers(0, 12))  # stale releases reach back further
        span = draw(st.integers(1, 6))
        months = [shift_period("2020-01", newest - k) for k in range(span)]
        releases.append((shift_period("2020-01", p), months))
    return releases


def _write_releases(lake: FolderLake, releases: list[tuple[str, list[str]]]) -> None:
    """Each release (period, the months it carries) published as borough crime's file for
    its period; release `number` gives each of its months the count `number`."""
    schema = curated_schema(load_contracts()["borough_crime"])
    for number, (period, months) in enumerate(releases):
        rows = [
            {"major_category": "Burglary", "minor_category": "Domestic Burglary",
             "borough": "Camden", "month": date.fromisoformat(m + "-01"), "count": number,
             "_delivery_id": f"d{number}", "_source_row": 1, "_period": period}
            for m in months
        ]  # fmt: skip
        lake.write_table(
            lake.curated_path("borough_crime", period), pa.Table.from_pylist(rows, schema)
        )


@pytest.fixture(scope="module")
def release_catalog(tmp_path_factory) -> tuple[FolderLake, Path]:
    """A lake with a release of borough crime and its catalog, built once. The view reads
    the lake's release files by pattern, as a month published after a build is read: each
    example's files, written in place of the last one's, are what it shows (a catalog built
    for each example was most of what an example cost)."""
    folder = tmp_path_factory.mktemp("releases")
    lake = FolderLake(folder / "lake")
    _write_releases(lake, [("2020-01", ["2020-01"])])
    contract = load_contracts()["borough_crime"]
    return lake, build_warehouse(lake, {"borough_crime": contract}, folder / "w.duckdb")


@given(releases=_releases())
@settings(max_examples=15, deadline=None)
def test_each_month_comes_from_the_release_reaching_furthest(release_catalog, releases):
    lake, path = release_catalog
    shutil.rmtree(lake.root / "curated")  # the last example's releases
    _write_releases(lake, releases)
    with duckdb.connect(str(path), read_only=True) as con:
        shown = con.execute(
            "SELECT strftime(month, '%Y-%m'), list(count) FROM curated.borough_crime GROUP BY 1"
        ).fetchall()
    # The newest release is the one reaching the latest month; of two reaching it, the one
    # for the later period. Arrival order (the list's order) never matters.
    expected = {}
    for number, (period, months) in enumerate(releases):
        for month in months:
            rank = (max(months), period)
            if month not in expected or rank > expected[month][0]:
                expected[month] = (rank, number)
    assert {m: counts for m, counts in shown} == {m: [n] for m, (_, n) in expected.items()}


# -- item 8: category mix over enough values ------------------------------------------------


def _mix_profile(contract, rows: int, outcomes: dict[str, int]):
    return profile_from_counts(contract, rows, value_counts={"Outcome": outcomes})


def test_a_mix_change_on_a_nearly_empty_column_is_no_breach(stop_and_search, tmp_path):
    history = [{"period": f"2023-{m:02d}", "rows_delivered": 1000} for m in range(1, 13)]
    before = {"outcome": {"Arrest": 0.083, "A no further action disposal": 0.917}}
    lake = FolderLake(tmp_path)
    # 12 values in a column of 1,000 rows: one arrest more is "8.3% to 16.7%".
    sparse = _mix_profile(stop_and_search, 1000, {"Arrest": 2, "A no further action disposal": 10})
    breaches, _ = check_dataset(
        stop_and_search, "2024-01", "a", sparse, history, lake, before, {"outcome": 900.0}
    )
    assert not [b for b in breaches if b.rule.startswith("dataset.mix")]
    # The same move over enough values in both is a breach.
    full = _mix_profile(stop_and_search, 1000, {"Arrest": 400, "A no further action disposal": 600})
    breaches, _ = check_dataset(
        stop_and_search, "2024-01", "b", full, history, lake, before, {"outcome": 900.0}
    )
    assert [b.rule for b in breaches] == ["dataset.mix.outcome"]
    # ... but not when the history's average month had only a handful of values.
    breaches, _ = check_dataset(
        stop_and_search, "2024-01", "c", full, history, lake, before, {"outcome": 12.0}
    )
    assert not [b for b in breaches if b.rule.startswith("dataset.mix")]


def test_history_mix_reads_profiles_kept_before_value_counts_were(tmp_path):
    engine = Engine(tmp_path, "stop_and_search")
    engine.put("2022-06", "june.csv", real_text())
    engine.process("2022-06")
    (june,) = engine.register.deliveries("stop_and_search").values()
    kept = json.loads(
        engine.lake.read_text(_mix_path("stop_and_search", "2022-06", june["delivery_id"]))
    )
    assert kept["values"]["outcome"] == REAL_ROWS  # every row has an outcome
    # Three published months whose profiles were kept the old way (shares only).
    from pipelines.lake.register import DeliveryEvent

    for period in ("2022-07", "2022-08", "2022-09"):
        delivery_id = f"old-{period}"
        engine.register.record(
            DeliveryEvent("stop_and_search", period, delivery_id, "published", rows_delivered=9)
        )
        old = {"outcome": {"Arrest": 0.5, "Summons": 0.5}}
        engine.lake.write_bytes(
            _mix_path("stop_and_search", period, delivery_id), json.dumps(old).encode()
        )
    mix, values = _history_mix(engine.lake, engine.register, "stop_and_search", "2022-10")
    assert mix["outcome"]["Arrest"] == pytest.approx(
        (0.5 * 3 + kept["mix"]["outcome"]["Arrest"]) / 4
    )
    assert values == {c: float(n) for c, n in kept["values"].items()}  # the one that knew
