"""Contract features beyond stop and search, on small contracts built in the test."""

import json
from pathlib import Path

import duckdb
import pytest

from pipelines.intake.pseudonymise import PseudonymKeyError, load_key, token
from pipelines.lake.store import FolderLake
from pipelines.validation.row_validation import DeliveryRejected, validate_delivery
from schemas.contract import parse_contract

KEY = b"test-key"


def _contract(properties: list[dict], table: dict | None = None, secret=("officer",)):
    doc = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "urn:datashare:mps-mopac:calls",
        "name": "calls",
        "version": "1.0.0",
        "status": "active",
        "schema": [{"name": "calls", "properties": properties, **(table or {})}],
        "customProperties": [
            {
                "property": "deliverySchedule",
                "value": {
                    "period": "monthly",
                    "firstPeriod": "2019-01",
                    "dueDayOfFollowingMonth": 20,
                    "lateAfterDays": 5,
                },
            },
            {"property": "sharingAgreement", "value": {"pseudonymisedFields": list(secret)}},
        ],
    }
    return parse_contract(doc, Path("calls.yaml"))


def _run(contract, tmp_path: Path, text: str, period: str = "2024-03"):
    source = tmp_path / "d.csv"
    source.write_text(text, encoding="utf-8")
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(contract, source, period, "d1", lake, KEY)

    def rows(path):
        if not path.exists():
            return []
        return duckdb.sql(f"FROM read_parquet('{path}') ORDER BY _source_row").to_arrow_table()

    curated = rows(lake.path(lake.staging_path("calls", period, "d1")))
    quarantined = rows(lake.path(lake.quarantine_path("calls", period, "d1")))
    return (
        outcome,
        curated.to_pylist() if curated else [],
        quarantined.to_pylist() if quarantined else [],
    )


CALLS = [
    {"name": "call_ref", "physicalName": "CallRef", "logicalType": "string", "required": True,
     "primaryKey": True, "primaryKeyPosition": 1,
     "logicalTypeOptions": {"pattern": "C[0-9]{4}"}, "examples": ["C0001"]},
    {"name": "received", "physicalName": "Received", "logicalType": "timestamp", "required": True,
     "logicalTypeOptions": {"format": "yyyy-MM-dd HH:mm:ss", "defaultTimezone": "Europe/London"},
     "quality": [{"name": "received_in_period", "type": "custom", "engine": "datashare",
                  "implementation": "inPeriod", "severity": "major"}]},
    {"name": "arrived", "physicalName": "Arrived", "logicalType": "timestamp",
     "logicalTypeOptions": {"format": "yyyy-MM-dd HH:mm:ss", "defaultTimezone": "Europe/London"}},
    {"name": "day", "physicalName": "Day", "logicalType": "date",
     "logicalTypeOptions": {"format": "dd/MM/yyyy"}},
    {"name": "borough", "physicalName": "Borough", "logicalType": "string",
     "customProperties": [{"property": "previousNames", "value": ["LookUp_BoroughName"]}]},
    {"name": "officer", "physicalName": "Officer", "logicalType": "string",
     "classification": "personal"},
]  # fmt: skip
NOT_BEFORE = {
    "quality": [
        {
            "name": "arrival_not_before_call",
            "type": "custom",
            "engine": "datashare",
            "implementation": {"rule": "notBefore", "column": "arrived", "reference": "received"},
            "severity": "major",
        }
    ]
}
HEADER = "CallRef,Received,Arrived,Day,Borough,Officer\n"


def test_unique_key_holds_back_every_copy_and_checks_across_batches(tmp_path):
    contract = _contract(CALLS, NOT_BEFORE)
    text = HEADER + "".join(
        f"C{i:04d},2024-03-05 10:00:00,2024-03-05 10:09:00,05/03/2024,Camden,PC{i}\n"
        for i in range(1, 6)
    )
    text += "C0002,2024-03-06 10:00:00,,06/03/2024,Camden,PC9\n"
    outcome, curated, quarantined = _run(contract, tmp_path, text)
    assert [r["_source_row"] for r in quarantined] == [2, 6]
    assert all(r["rules"] == ["call_ref.unique"] for r in quarantined)
    assert len(curated) == 4
    (breach,) = outcome.breaches
    assert breach.rule == "call_ref.unique" and breach.sample_rows == [2, 6]


def test_local_times_dates_patterns_and_cross_field_rules(tmp_path):
    contract = _contract(CALLS, NOT_BEFORE)
    text = HEADER + (
        # London summer time: 10:00 local is 09:00 UTC.
        "C0001,2024-03-31 10:00:00,2024-03-31 10:12:00,31/03/2024,Camden,PC1\n"
        # Arrival before the call.
        "C0002,2024-03-05 10:00:00,2024-03-05 09:59:00,05/03/2024,Camden,PC2\n"
        # 01:30 on 31 March 2024 never happened in London (clocks went forward).
        "C0003,2024-03-31 01:30:00,,31/03/2024,Camden,PC3\n"
        # Lenient forms polars would accept: not the agreed form.
        "C0004,2024-03-05 10:00:00,,5/3/2024,Camden,PC4\n"
        "c5,2024-03-05 10:00:00,,05/03/2024,Camden,PC5\n"
        # The previous month, in London time.
        "C0006,2024-02-29 23:30:00,,29/02/2024,Camden,PC6\n"
    )
    outcome, curated, quarantined = _run(contract, tmp_path, text)
    assert str(curated[0]["received"]).startswith("2024-03-31 09:00:00")
    assert str(curated[0]["day"]) == "2024-03-31"
    rules = {r["_source_row"]: r["rules"] for r in quarantined}
    assert rules == {
        2: ["arrival_not_before_call"],
        3: ["received.type"],
        4: ["day.type"],
        5: ["call_ref.pattern"],
        6: ["received_in_period"],
    }
    pattern = next(b for b in outcome.breaches if b.rule == "call_ref.pattern")
    assert "for example C0001" in pattern.detail
    # CallRef is not classified: the breach shows the value that broke the rule (issue 20).
    assert "it holds 'c5' (1 row)" in pattern.detail


def test_pseudonymised_identifier_never_leaves_landing_in_clear(tmp_path):
    contract = _contract(CALLS)
    text = HEADER + (
        "C0001,2024-03-05 10:00:00,,05/03/2024,Camden,PC 1234\n"
        "C0002,2024-03-05 10:00:00,,05/03/2024,Camden,PC 1234\n"
        "C0003,bad,,05/03/2024,Camden,PC 1234\n"
        "C0004,2024-03-05 10:00:00,,05/03/2024,Camden\n"
    )
    _, curated, quarantined = _run(contract, tmp_path, text)
    assert curated[0]["officer"] == curated[1]["officer"] == token(KEY, "PC 1234")
    lake_bytes = b"".join(p.read_bytes() for p in (tmp_path / "lake").rglob("*") if p.is_file())
    assert b"PC 1234" not in lake_bytes
    by_row = {r["_source_row"]: r for r in quarantined}
    assert json.loads(by_row[3]["record"])["Officer"] == token(KEY, "PC 1234")
    assert "withheld" in json.loads(by_row[4]["record"])["raw_line"]


def test_previous_column_name_is_accepted_and_other_renames_are_not(tmp_path):
    contract = _contract(CALLS)
    old = HEADER.replace("Borough", "LookUp_BoroughName")
    _, curated, _ = _run(contract, tmp_path, old + "C0001,2024-03-05 10:00:00,,,Camden,PC1\n")
    assert curated[0]["borough"] == "Camden"
    with pytest.raises(DeliveryRejected, match="Borough"):
        _run(contract, tmp_path, HEADER.replace("Borough", "BOCU") + "C0001,,,,,\n")


def test_wide_layout_is_curated_long(tmp_path):
    contract = _contract(
        [
            {"name": "borough", "physicalName": "Borough", "logicalType": "string",
             "required": True},
            {"name": "major_category", "physicalName": "MajorText", "logicalType": "string"},
        ],
        {
            "customProperties": [
                {
                    "property": "layout",
                    "value": {"type": "wide", "valueColumnPattern": r"\d{6}",
                              "periodFormat": "yyyyMM", "periodName": "month",
                              "valueName": "count", "valueType": "integer", "valueMinimum": 0},
                }
            ]
        },
        secret=(),
    )  # fmt: skip
    text = (
        "Borough,MajorText,202401,202402\n"
        "Camden,Burglary,10,12\n"
        "Hackney,Burglary,-1,3\n"
        "Barnet,Burglary,,4\n"
    )
    outcome, curated, quarantined = _run(contract, tmp_path, text, period="2024-03")
    got = sorted((r["borough"], str(r["month"]), r["count"]) for r in curated)
    assert got == [
        ("Barnet", "2024-01-01", None),
        ("Barnet", "2024-02-01", 4),
        ("Camden", "2024-01-01", 10),
        ("Camden", "2024-02-01", 12),
    ]
    assert [r["_source_row"] for r in quarantined] == [2]
    assert outcome.rows_delivered == 3


def test_key_file_is_made_owner_only_and_refused_when_loose(tmp_path, monkeypatch):
    monkeypatch.delenv("DATASHARE_PSEUDONYM_KEY", raising=False)
    key = load_key(tmp_path)
    assert len(key) == 64 and (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path) == key
    (tmp_path / "pseudonym.key").chmod(0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_key(tmp_path)
    monkeypatch.setenv("DATASHARE_PSEUDONYM_KEY", "from-env")
    assert load_key(tmp_path) == b"from-env"
