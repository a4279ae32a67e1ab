"""Rejection and breach texts name what is wrong: the lead forwards them to the force as
they are, so a sentence never ends in an empty list, "None" or "()"."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from datetime import date
from html import escape
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.governance.delivery_schedule import LatePeriod, late_breach, scheduled_periods
from pipelines.intake.delivery_formats import (
    OTHER_SEPARATORS,
    UnreadableFile,
    column_positions,
    error_words,
    header_problem,
    open_delivery,
    quoted,
)
from pipelines.intake.delivery_intake import _duplicate, plan_intake
from pipelines.intake.dropzone import FolderDropZone
from pipelines.intake.manifests import manifest_problems
from pipelines.lake.store import FolderLake
from pipelines.validation import row_validation
from pipelines.validation.dataset_expectations import check_dataset, profile_from_counts
from pipelines.validation.row_validation import DeliveryRejected, validate_delivery
from schemas.contract import load_contracts

# What a sentence with a missing value looks like once printed.
EMPTY = re.compile(r":\s*\.|\(\s*\)|\(\s*,|,\s*\)|\bNone\b|''|: ;|,\s*,")

# The London Datastore dashboard's borough sheet of the Public Attitude Survey, as exported:
# six named columns, then four columns with no header the spreadsheet kept.
PAS_HEADER = "Date,Survey,Borough,Measure,Proportion,MPS,,,,"
PAS_ROW = '2023-12-31,PAS,Hackney,"""Good Job"" local",0.62,0.65,,,,'


def _contract(name: str):
    return load_contracts()[name]


def _reject(contract, tmp_path: Path, text: str, period: str = "2023-10") -> DeliveryRejected:
    source = tmp_path / "delivery.csv"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(DeliveryRejected) as caught:
        validate_delivery(contract, source, period, "d1", FolderLake(tmp_path / "lake"))
    return caught.value


def test_pas_borough_sheet_with_unnamed_trailing_columns_says_which(tmp_path):
    rejected = _reject(_contract("public_attitude_survey"), tmp_path, f"{PAS_HEADER}\n{PAS_ROW}\n")
    assert rejected.rule == "file.header"
    assert rejected.reason.startswith("Columns 7 to 10 have no name in the header")
    assert "delete them, or name them" in rejected.reason
    assert "more than once" not in rejected.reason
    assert not EMPTY.search(rejected.reason), rejected.reason


def test_a_repeated_name_and_blank_names_are_each_said(tmp_path):
    header = "Type,Date,Type,,"
    reason = header_problem(header.split(","))
    assert reason == (
        "Columns 4 and 5 have no name in the header (empty columns left at the edge of a "
        "spreadsheet often are): delete them, or name them, and send the file again; the "
        "header names 'Type' more than once (columns 1 and 3): each column must have a name "
        "of its own."
    )


@pytest.mark.parametrize(
    ("positions", "words"),
    [
        ([7, 8, 9, 10], "columns 7 to 10"),
        ([4], "column 4"),
        ([2, 3], "columns 2 and 3"),
        ([9, 1, 2, 3, 5], "columns 1 to 3, 5 and 9"),
    ],
)
def test_column_positions_read_as_a_person_writes_them(positions, words):
    assert column_positions(positions) == words


def test_one_unnamed_column_is_named_by_its_position_in_the_breach(stop_and_search, tmp_path):
    header = ",".join(stop_and_search.source_names) + ","
    row = (
        "Person search,2022-06-03T10:00:00+00:00,False,,51.5,-0.1,Male,25-34,White - Irish,"
        "White,Misuse of Drugs Act 1971 (section 23),Controlled drugs,Arrest,,,"
    )
    source = tmp_path / "d.csv"
    source.write_text(f"{header}\n{row}\n", encoding="utf-8")
    outcome = validate_delivery(
        stop_and_search, source, "2022-06", "d1", FolderLake(tmp_path / "lake")
    )
    (breach,) = [b for b in outcome.breaches if b.rule == "file.unagreed_columns"]
    assert "(column 16, with no name)" in breach.detail
    assert not EMPTY.search(breach.detail), breach.detail


def test_a_wide_file_without_month_columns_says_what_they_look_like(tmp_path):
    borough = _contract("borough_crime")
    header = ",".join(borough.source_names)
    rejected = _reject(borough, tmp_path, f"{header}\n" + ",".join("x" * len(borough.columns)))
    assert "one per month, headed like 202401" in rejected.reason


def test_a_blank_manifest_row_count_is_called_blank():
    (problem,) = manifest_problems({"rows": ""}, "abc", 12)
    said = "The file has 12 data rows, but the manifest says nothing (its rows field is blank)."
    assert problem == said


def test_a_blank_category_in_the_mix_is_called_blank(stop_and_search, tmp_path):
    profile = profile_from_counts(
        stop_and_search, 1000, value_counts={"Object of search": {None: 600, "Firearms": 400}}
    )
    history = [{"period": f"2023-{m:02d}", "rows_delivered": 1000} for m in range(1, 13)]
    mix = {"object_of_search": {"": 0.1, "Firearms": 0.9}}
    breaches, _ = check_dataset(
        stop_and_search, "2024-01", "d", profile, history, FolderLake(tmp_path), history_mix=mix
    )
    (breach,) = breaches
    assert "blank (no value) rose from 10.0% to 60.0%" in breach.detail
    assert "''" not in breach.detail


def test_a_late_quarter_is_named_in_words():
    pas = _contract("public_attitude_survey")
    late = LatePeriod("2025-04", date(2025, 7, 20), date(2025, 7, 25))
    detail = late_breach(pas, late).detail
    assert detail.startswith("No delivery for April to June 2025 had arrived by 25 July 2025. ")
    assert "It was due on 20 July 2025" in detail
    assert not EMPTY.search(detail), detail


def test_a_duplicate_of_a_delivery_with_no_recorded_path_does_not_say_none():
    event = _duplicate(dict(contract="c", period="2025-01", delivery_id="x"), {"period": "2025-01"})
    assert (
        event.reason == "Same bytes as the delivery already taken for 2025-01; not processed again."
    )


def test_an_error_with_no_message_is_named_by_its_kind():
    assert error_words(OSError()) == "OSError, with no message"
    assert error_words(ValueError("bad  \n byte")) == "bad byte"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Type,Date\n",
        "Type\nPerson search\n",
        "Type,Type,,\n1,2,3,4\n",
        "Type,Date\nPerson search,2022-06-03\n",
    ],
    ids=["empty", "no rows", "one column", "repeated and blank", "missing columns"],
)
def test_no_rejection_prints_an_empty_value(stop_and_search, tmp_path, text):
    rejected = _reject(stop_and_search, tmp_path, text, "2022-06")
    assert rejected.reason and not EMPTY.search(rejected.reason), rejected.reason


# --- issue 20, item 5: reasons a person can act on ---------------------------------------

REAL_STOP_AND_SEARCH_HEAD = 3  # rows of the real June 2022 file used in re-exported copies


def _real_rows(real_stop_and_search: Path) -> list[list[str]]:
    with real_stop_and_search.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[: 1 + REAL_STOP_AND_SEARCH_HEAD]


@pytest.mark.parametrize(
    ("delimiter", "said"),
    [(";", "semicolons (;)"), ("\t", "tabs"), ("|", "pipes (|)")],
)
def test_a_file_separated_by_another_character_says_which_and_that_commas_are_agreed(
    stop_and_search, real_stop_and_search, tmp_path, delimiter, said
):
    """The real June 2022 file as a European Excel (or a database export) saves it."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(
        _real_rows(real_stop_and_search)
    )
    rejected = _reject(stop_and_search, tmp_path, out.getvalue(), "2022-06")
    assert rejected.rule == "file.format"
    assert rejected.reason.startswith(f"The file is separated by {said}, not commas: ")
    assert "its first line names 15 columns ('Type', 'Date', " in rejected.reason
    assert "The agreement asks for commas between fields" in rejected.reason
    assert "no column names" not in rejected.reason
    assert not EMPTY.search(rejected.reason), rejected.reason


def test_one_column_of_prose_is_named_as_such(stop_and_search, tmp_path):
    rejected = _reject(stop_and_search, tmp_path, "Searches in June\nnone\n", "2022-06")
    assert rejected.reason == (
        "The file is not a comma-separated table: its first line holds one column, named "
        "'Searches in June', and no commas: the agreement asks for a first line naming the "
        "columns, separated by commas."
    )


def _opendocument_spreadsheet(path: Path, rows: list[list[str]]) -> None:
    """An .ods file as the OpenDocument packaging rules lay it out (what Calc writes): the
    `mimetype` member first and stored, then the manifest and the sheet's content."""
    cells = "".join(
        "<table:table-row>"
        + "".join(
            f'<table:table-cell office:value-type="string"><text:p>{escape(v)}</text:p>'
            "</table:table-cell>"
            for v in row
        )
        + "</table:table-row>"
        for row in rows
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3">'
        f'<office:body><office:spreadsheet><table:table table:name="Sheet1">{cells}'
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.3"><manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as ods:
        ods.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        ods.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        ods.writestr("content.xml", content, zipfile.ZIP_DEFLATED)


@pytest.mark.parametrize("name", ["2022-06-metropolitan-stop-and-search.csv", "june.ods"])
def test_an_opendocument_spreadsheet_is_called_one(
    stop_and_search, real_stop_and_search, tmp_path, name
):
    sheet = tmp_path / name
    _opendocument_spreadsheet(sheet, _real_rows(real_stop_and_search))
    with pytest.raises(DeliveryRejected) as caught:
        validate_delivery(stop_and_search, sheet, "2022-06", "d1", FolderLake(tmp_path / "l"))
    reason = caught.value.reason
    assert caught.value.rule == "file.format"
    assert reason.startswith("The file is an OpenDocument spreadsheet (.ods), as LibreOffice")
    assert "zip" not in reason and "xlsx" not in reason
    assert "'Text CSV'" in reason


def test_an_excel_workbook_is_still_called_one(stop_and_search, tmp_path):
    book = tmp_path / "june.csv"
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as xlsx:
        xlsx.writestr("[Content_Types].xml", "<Types/>")
        xlsx.writestr("_rels/.rels", "<Relationships/>")
        xlsx.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(DeliveryRejected) as caught:
        validate_delivery(stop_and_search, book, "2022-06", "d1", FolderLake(tmp_path / "l"))
    assert caught.value.reason.startswith("The file is an Excel workbook (.xlsx), not CSV text")
    assert "'CSV UTF-8 (Comma delimited)'" in caught.value.reason


def test_a_boolean_reason_names_the_spellings_the_agreement_reads(
    stop_and_search, real_stop_and_search, tmp_path
):
    """The real June 2022 rows with `False` as Excel writes it, `FALSE`: not coerced (that
    is the contract's to agree), but the reason says which spellings are agreed."""
    rows = _real_rows(real_stop_and_search)
    column = rows[0].index("Part of a policing operation")
    for row in rows[1:]:
        row[column] = row[column].upper()
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    source = tmp_path / "d.csv"
    source.write_text(out.getvalue(), encoding="utf-8")
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(stop_and_search, source, "2022-06", "d1", lake)
    (breach,) = [b for b in outcome.breaches if b.rule == "part_of_a_policing_operation.type"]
    assert breach.failing_rows == REAL_STOP_AND_SEARCH_HEAD
    assert (
        "Part of a policing operation is not true or false as the agreement spells them: "
        "'True' or 'False'"
    ) in breach.detail
    assert outcome.rows_curated == 0


def test_a_date_outside_a_quarter_says_quarters_are_named_by_their_first_month(tmp_path):
    pas = _contract("public_attitude_survey")
    header = "Date,Survey,Borough,Measure,Proportion,MPS"
    row = '2023-12-31,PAS,Hackney,"""Good Job"" local",0.62,0.65'
    source = tmp_path / "PAS_borough_2024-01.csv"
    source.write_text(f"{header}\n{row}\n", encoding="utf-8")
    outcome = validate_delivery(pas, source, "2024-01", "d1", FolderLake(tmp_path / "lake"))
    (breach,) = [b for b in outcome.breaches if b.rule == "date_in_period"]
    assert (
        "Date is outside the quarter the delivery is for (2024-01, London time: a quarter is "
        "named by its first month, so 2024-01 is January to March 2024)"
    ) in breach.detail


def _renamed(real_stop_and_search: Path, renames: dict[str, str]) -> str:
    rows = _real_rows(real_stop_and_search)
    rows[0] = [renames.get(name, name) for name in rows[0]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def test_missing_columns_are_named_with_what_the_header_has_instead(
    stop_and_search, real_stop_and_search, tmp_path
):
    renames = {"Type": "Search type", "Officer-defined ethnicity": "officer defined ethnicity"}
    text = _renamed(real_stop_and_search, renames)
    rejected = _reject(stop_and_search, tmp_path, text, "2022-06")
    assert rejected.rule == "file.columns"
    assert rejected.reason == (
        "The file lacks 2 agreed column(s): 'Type' (the header has 'Search type': renamed?), "
        "'Officer-defined ethnicity' (the header has 'officer defined ethnicity': renamed?). "
        "Instead, the header has 2 column(s) the agreement does not name: 'Search type', "
        "'officer defined ethnicity'. A renamed column counts as missing; nothing from this "
        "file was published."
    )


def test_missing_columns_with_nothing_in_their_place_say_so(stop_and_search, tmp_path):
    rejected = _reject(stop_and_search, tmp_path, "Type,Date\nPerson search,x\n", "2022-06")
    assert rejected.reason.startswith("The file lacks 13 agreed column(s): 'Part of a polic")
    assert "The header has no other columns in their place." in rejected.reason


def test_a_header_split_by_semicolons_and_commas_says_which_separator_it_holds(
    stop_and_search, tmp_path
):
    """A semicolon export whose column names hold a comma splits into a few odd names."""
    header = "Type;Date, time;Gender"
    rejected = _reject(stop_and_search, tmp_path, f"{header}\nPerson search;x;y\n", "2022-06")
    assert rejected.rule == "file.columns"
    assert "Its names hold semicolons (;): the file may be separated by them" in rejected.reason


def _quarantined_values(lake: FolderLake, contract: str, period: str, column: str) -> Counter:
    """What the warehouse's quarantine file holds in one column, value by value."""
    path = lake.path(lake.quarantine_path(contract, period, "d1"))
    rows = duckdb.sql(
        f"SELECT json_extract_string(record, '$.\"{column}\"') AS v, count(*) "
        f"FROM read_parquet('{path}') GROUP BY v"
    ).fetchall()
    return Counter(dict(rows))


def test_a_breach_on_a_public_column_says_what_the_rows_hold_with_exact_counts(
    stop_and_search, real_stop_and_search, tmp_path, monkeypatch
):
    """The whole real June 2022 file with its booleans spelled eight ways, read in many small
    batches: the commonest values are named with counts the quarantine file confirms."""
    monkeypatch.setattr(row_validation, "READ_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(row_validation, "BATCH_BYTES", 128 << 10)
    spellings = ["FALSE", "FALSE", "FALSE", "FALSE ", "FALSE ", "false", "No", "0", "F", "n"]
    with real_stop_and_search.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    column = rows[0].index("Part of a policing operation")
    for number, row in enumerate(rows[1:]):
        row[column] = spellings[number % len(spellings)] if number % 50 else "False"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    source = tmp_path / "d.csv"
    source.write_text(out.getvalue(), encoding="utf-8")
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(stop_and_search, source, "2022-06", "d1", lake)

    (breach,) = [b for b in outcome.breaches if b.rule == "part_of_a_policing_operation.type"]
    held = _quarantined_values(lake, "stop_and_search", "2022-06", rows[0][column])
    assert sum(held.values()) == outcome.rows_quarantined
    assert "False" not in held and breach.failing_rows == sum(held.values())
    shown = re.findall(r"'([^']*)' \(([\d,]+) rows?\)", breach.detail)
    assert len(shown) == 5 and shown[0][0] == "FALSE"  # the commonest first
    for value, count in shown:
        assert held[value] == int(count.replace(",", "")), value
    other = breach.failing_rows - sum(held[v] for v, _ in shown)
    assert f", and other values ({other:,} rows)." in breach.detail
    assert shown[1][0] == "FALSE "  # a trailing space is shown, inside quotes


def test_a_breach_on_a_classified_column_never_shows_its_values_and_says_why(
    stop_and_search, real_stop_and_search, tmp_path
):
    rows = _real_rows(real_stop_and_search)
    header = rows[0]
    rows[1][header.index("Latitude")] = "51,512"  # a decimal comma: not a number
    rows[2][header.index("Gender")] = "Unknown-Secret"
    rows[3][header.index("Type")] = "Person  search"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    source = tmp_path / "d.csv"
    source.write_text(out.getvalue(), encoding="utf-8")
    outcome = validate_delivery(stop_and_search, source, "2022-06", "d1", FolderLake(tmp_path))
    details = {b.rule: b.detail for b in outcome.breaches}
    assert (
        "(its values are not shown: the agreement classifies Latitude as restricted)"
        in (details["latitude.type"])
    )
    assert "51,512" not in details["latitude.type"]
    assert "Latitude is not a finite decimal number (its values" in details["latitude.type"]
    assert "classifies Gender as personal" in details["gender_known"]
    assert "Unknown-Secret" not in " ".join(details.values())
    assert "; it holds 'Person  search' (1 row)." in details["type_known"]


def test_a_file_filed_under_a_quarter_s_middle_month_is_told_how_quarters_are_named(tmp_path):
    """The Public Attitude Survey for April to June 2025 filed under its last month."""
    pas = _contract("public_attitude_survey")
    root = tmp_path / "dz"
    (root / pas.name / "2025-06").mkdir(parents=True)
    (root / pas.name / "2025-06" / "PAS_borough_2025-06.csv").write_text(f"{PAS_HEADER}\n")
    periods = {pas.name: scheduled_periods(pas, date(2025, 12, 1))}
    assert "2025-04" in periods[pas.name] and "2025-06" not in periods[pas.name]
    files = FolderDropZone(root, settle_seconds=0).files({pas.name})
    ((_, why),) = plan_intake(files, set(), periods).unfiled
    assert why == (
        "is for 2025-06, not one of the agreed delivery periods: each period is named by its "
        "first month, so 2025-06 lies in the period 2025-04 (the next one is 2025-07); file it "
        "under 2025-04"
    )


# Column names as any export writes them; not "None" or quotes, which EMPTY would take for
# a missing value.
_NAME = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=";\t|,\"'\r\n"
    ),
    min_size=1,
    max_size=20,
).filter(lambda name: name.strip() and "None" not in name)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(_NAME, min_size=2, max_size=30), separator=st.sampled_from(";\t|"))
def test_any_header_split_by_another_separator_is_named_with_its_column_count(
    tmp_path, names, separator
):
    source = tmp_path / "d.csv"
    source.write_text(separator.join(names) + "\n" + separator.join("1" * len(names)) + "\n")
    with pytest.raises(UnreadableFile) as caught:
        open_delivery(source)
    reason = caught.value.reason
    assert reason.startswith(f"The file is separated by {OTHER_SEPARATORS[separator]}, not commas")
    assert f"its first line names {len(names)} columns ({quoted(names[0])}" in reason
    assert not EMPTY.search(reason), reason


@given(st.text(max_size=200))
def test_a_quoted_value_is_one_short_line(value):
    shown = quoted(value)
    assert len(shown) <= 40 * 6 + 8  # at most 40 characters, each escaped to at most \\UXXXXXXXX
    assert not any(c in shown for c in "\n\r\t\x00\x1b\u2028")
    assert shown[0] in "'\"" and shown[-1] in "'\""


def test_a_parquet_file_of_one_column_says_so(stop_and_search, tmp_path):
    source = tmp_path / "d.parquet"
    pq.write_table(pa.table({"Type": ["Person search"]}), source)
    rejected = _reject_file(stop_and_search, source)
    assert rejected.reason == (
        "The Parquet file has one column, named 'Type'; the agreement asks for a table with "
        "the agreed columns."
    )


def _reject_file(contract, source: Path) -> DeliveryRejected:
    with pytest.raises(DeliveryRejected) as caught:
        validate_delivery(contract, source, "2022-06", "d1", FolderLake(source.parent / "lake"))
    return caught.value
