"""Validation engine: every source row accounted for, reasons given, bad files rejected."""

import csv
import io
import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.lake.store import FolderLake
from pipelines.validation.row_validation import DeliveryRejected, validate_delivery

PERIOD = "2022-06"


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    query = f"SELECT * FROM read_parquet('{path}') ORDER BY _source_row"
    return duckdb.sql(query).to_arrow_table().to_pylist()


def _validate(contract, tmp_path: Path, text: str | bytes, name: str = "d.csv"):
    source = tmp_path / name
    source.write_bytes(text.encode() if isinstance(text, str) else text)
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(contract, source, PERIOD, "delivery1", lake)
    curated = _rows(lake.path(lake.staging_path(contract.name, PERIOD, "delivery1")))
    quarantined = _rows(lake.path(lake.quarantine_path(contract.name, PERIOD, "delivery1")))
    return outcome, curated, quarantined


def _good_row(**overrides) -> dict:
    row = {
        "Type": "Person search",
        "Date": "2022-06-03T10:00:00+00:00",
        "Part of a policing operation": "False",
        "Policing operation": "",
        "Latitude": "51.5",
        "Longitude": "-0.1",
        "Gender": "Male",
        "Age range": "25-34",
        "Self-defined ethnicity": "White - Irish",
        "Officer-defined ethnicity": "White",
        "Legislation": "Misuse of Drugs Act 1971 (section 23)",
        "Object of search": "Controlled drugs",
        "Outcome": "Arrest",
        "Outcome linked to object of search": "",
        "Removal of more than just outer clothing": "",
    }
    row.update(overrides)
    return row


def _csv(
    rows: list[dict], header: list[str] | None = None, quoting: int = csv.QUOTE_MINIMAL
) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=header or list(rows[0]), lineterminator="\n", quoting=quoting
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_real_june_2022_file_every_row_accounted_for(
    stop_and_search, real_stop_and_search, tmp_path
):
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(stop_and_search, real_stop_and_search, PERIOD, "real", lake)
    curated = lake.path(lake.staging_path("stop_and_search", PERIOD, "real"))
    quarantine = lake.path(lake.quarantine_path("stop_and_search", PERIOD, "real"))
    numbers = duckdb.sql(
        f"SELECT _source_row FROM read_parquet('{curated}') "
        f"UNION ALL SELECT _source_row FROM read_parquet('{quarantine}')"
    ).fetchall()
    assert outcome.rows_delivered == 16_332
    assert outcome.rows_curated + outcome.rows_quarantined == 16_332
    assert sorted(n for (n,) in numbers) == list(range(1, 16_333))
    # The real file's known gap, in words a data-sharing lead understands.
    completeness = [b for b in outcome.breaches if b.rule == "self_defined_ethnicity_completeness"]
    assert len(completeness) == 1
    assert "4,963 of 16,332 rows (30.4%) have no Self-defined ethnicity" in completeness[0].detail
    # The first row, 23:00 UTC on 31 May, is 00:00 on 1 June in London: inside the month.
    first = duckdb.sql(f"SELECT date, type FROM read_parquet('{curated}') WHERE _source_row = 1")
    assert str(first.fetchall()[0][0]).startswith("2022-05-31 23:00:00")


def test_identical_rows_are_both_kept(stop_and_search, tmp_path):
    outcome, curated, _ = _validate(stop_and_search, tmp_path, _csv([_good_row(), _good_row()]))
    assert outcome.rows_curated == 2
    assert [r["_source_row"] for r in curated] == [1, 2]
    assert outcome.breaches == []


def test_failing_row_is_quarantined_with_every_reason(stop_and_search, tmp_path):
    rows = [
        _good_row(),
        _good_row(Date="2022-06-31T10:00:00+00:00", Latitude="151.5"),
        _good_row(Type=""),
        _good_row(Date="2022-05-03T10:00:00+00:00", **{"Officer-defined ethnicity": "NA"}),
    ]
    outcome, curated, quarantined = _validate(stop_and_search, tmp_path, _csv(rows))
    assert [r["_source_row"] for r in curated] == [1]
    by_row = {r["_source_row"]: r for r in quarantined}
    assert set(by_row) == {2, 3, 4}
    assert by_row[2]["rules"] == ["date.type", "latitude.range"]
    assert by_row[3]["rules"] == ["type.required"]
    # "NA" is a value the force sent, not a blank: it breaks the allowed-values rule.
    assert by_row[4]["rules"] == ["date_in_period", "officer_defined_ethnicity_known"]
    assert json.loads(by_row[4]["record"])["Officer-defined ethnicity"] == "NA"
    assert all(r["reasons"] and r["_delivery_id"] == "delivery1" for r in quarantined)
    breaches = {b.rule: b for b in outcome.breaches}
    assert breaches["type.required"].sample_rows == [3]
    assert breaches["type.required"].failing_rows == 1
    assert "Type is blank, but the agreement requires it" in breaches["type.required"].detail


def test_unknown_value_the_contract_keeps_is_published_with_a_breach(stop_and_search, tmp_path):
    rows = [_good_row(**{"Self-defined ethnicity": "White - Irish "}), _good_row()]
    outcome, curated, quarantined = _validate(stop_and_search, tmp_path, _csv(rows))
    assert len(curated) == 2 and not quarantined
    # Kept exactly as sent: nothing is trimmed or coerced.
    assert curated[0]["self_defined_ethnicity"] == "White - Irish "
    (breach,) = outcome.breaches
    assert (breach.rule, breach.severity, breach.action) == (
        "self_defined_ethnicity_known",
        "minor",
        "rows kept",
    )
    assert "White - Irish " not in breach.detail  # breaches never print classified values


def test_broken_rows_keep_the_numbering_of_the_rows_after_them(stop_and_search, tmp_path):
    text = _csv([_good_row(), _good_row(**{"Policing operation": "Op\nTwo lines"})])
    text += "Person search,2022-06-03T10:00:00+00:00,False\n"  # a row cut short
    text += _csv([_good_row()]).split("\n", 1)[1]
    outcome, curated, quarantined = _validate(stop_and_search, tmp_path, text)
    assert [r["_source_row"] for r in curated] == [1, 2, 4]
    assert curated[1]["policing_operation"] == "Op\nTwo lines"
    assert [(r["_source_row"], r["rules"]) for r in quarantined] == [(3, ["file.row_shape"])]
    assert outcome.rows_delivered == 4
    assert any(b.rule == "file.row_shape" and b.sample_rows == [3] for b in outcome.breaches)


def test_unagreed_column_never_reaches_curated_and_is_named_in_a_breach(stop_and_search, tmp_path):
    rows = [_good_row(**{"Officer badge": "PC 1234"})]
    outcome, curated, _ = _validate(stop_and_search, tmp_path, _csv(rows))
    assert "Officer badge" not in curated[0] and "officer_badge" not in curated[0]
    (breach,) = [b for b in outcome.breaches if b.rule == "file.unagreed_columns"]
    assert "Officer badge" in breach.detail and "PC 1234" not in breach.detail


@pytest.mark.parametrize("extra", ["rule", "rules", "reasons", "\x1frules", "_source_row"])
def test_an_unagreed_column_named_like_the_engines_own_is_published_with_its_breach(
    stop_and_search, tmp_path, extra
):
    # The engine adds the rules each quarantined row broke beside the delivered columns: a
    # delivered column of the same name must neither stop the file nor change what the
    # quarantine says (a header `rule` once made every batch fail: the month stuck at
    # "received").
    rows = [_good_row(**{extra: "x"}), _good_row(**{"Type": "Nonsense type", extra: "y"})]
    outcome, curated, quarantined = _validate(stop_and_search, tmp_path, _csv(rows))
    assert outcome.rows_delivered == 2 and outcome.rows_curated == 1
    assert [r["_source_row"] for r in curated] == [1]
    assert extra not in curated[0] or extra == "_source_row"
    assert [(r["_source_row"], r["rules"]) for r in quarantined] == [(2, ["type_known"])]
    assert sorted(b.rule for b in outcome.breaches) == ["file.unagreed_columns", "type_known"]
    (breach,) = [b for b in outcome.breaches if b.rule == "file.unagreed_columns"]
    assert repr(extra) in breach.detail


def test_utf8_bom_and_crlf_are_read(stop_and_search, tmp_path):
    text = _csv([_good_row()]).replace("\n", "\r\n")
    outcome, curated, _ = _validate(stop_and_search, tmp_path, b"\xef\xbb\xbf" + text.encode())
    assert outcome.rows_curated == 1 and curated[0]["type"] == "Person search"
    assert curated[0]["removal_of_more_than_just_outer_clothing"] is None


WINDOWS_1252 = _csv([_good_row()]).replace("White - Irish", "Caf\xe9").encode("cp1252")


@pytest.mark.parametrize(
    ("content", "rule", "words"),
    [
        (b"", "file.empty", "empty"),
        (",".join(_good_row()).encode() + b"\n", "file.empty", "no data rows"),
        (b"PK\x03\x04\x14\x00" + bytes(range(256)), "file.format", "zip archive"),
        (b"just one line of prose\n", "file.format", "not a comma-separated table"),
        (b"Type,Date\nPerson search,2022-06-03\n", "file.columns", "lacks 13 agreed"),
        # Windows-1252 is read (tests/test_intake.py); bytes neither encoding has are not.
        (WINDOWS_1252.replace(b"\xe9", b"\x81"), "file.encoding", "not UTF-8"),
    ],
)
def test_unreadable_or_off_contract_file_is_rejected_with_a_reason(
    stop_and_search, tmp_path, content, rule, words
):
    with pytest.raises(DeliveryRejected) as rejected:
        _validate(stop_and_search, tmp_path, content)
    assert rejected.value.rule == rule
    assert words in rejected.value.reason


def test_renamed_column_is_a_missing_column(stop_and_search, tmp_path):
    text = _csv([_good_row()]).replace("Officer-defined ethnicity", "Officer defined ethnicity", 1)
    with pytest.raises(DeliveryRejected, match="Officer-defined ethnicity"):
        _validate(stop_and_search, tmp_path, text)


def _counted_by_duckdb(contract, path: Path) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Blank cells per completeness rule and values per categorical column, counted over the
    whole file at once by DuckDB (every cell text; only an empty cell is blank)."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW d AS SELECT * FROM read_csv('{path}', all_varchar = true)")
    missing = {}
    for rule in contract.completeness_rules:
        src = contract.column(rule.column).source_name
        blanks = [v for v in rule.missing_values if v is not None]
        where = f'"{src}" IS NULL' + "".join(f' OR "{src}" = ?' for _ in blanks)
        missing[rule.name] = con.execute(
            f"SELECT count(*) FROM d WHERE {where}", blanks
        ).fetchone()[0]
    values = {}
    for column in (c for c in contract.columns if c.value_rules):
        rows = con.execute(
            f'SELECT "{column.source_name}", count(*) FROM d '
            f'WHERE "{column.source_name}" IS NOT NULL GROUP BY 1'
        ).fetchall()
        values[column.name] = dict(rows)
    return missing, values


def test_the_profile_counts_every_batch_of_the_real_file_once(
    stop_and_search, real_stop_and_search, tmp_path, monkeypatch
):
    """The dataset checks judge a delivery by counts the row pass keeps batch by batch (in
    the same query as the row checks): read in many small batches, the real file's blank
    cells and category counts are those of the whole file counted at once."""
    import pipelines.validation.row_validation as engine

    monkeypatch.setattr(engine, "READ_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(engine, "BATCH_BYTES", 256 << 10)  # the 5 MB file in ~20 batches
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(stop_and_search, real_stop_and_search, PERIOD, "real", lake)
    missing, values = _counted_by_duckdb(stop_and_search, real_stop_and_search)
    by_column = {r.name: r.column for r in stop_and_search.completeness_rules}
    assert outcome.profile.missing == {by_column[rule]: n for rule, n in missing.items()}
    assert outcome.profile.value_counts == values
    assert outcome.profile.rows_delivered == 16_332
    assert missing["self_defined_ethnicity_completeness"] == 4_963  # the breach's figure


_CELLS = st.one_of(
    st.sampled_from(["Male", "Female", "Other", "", "NA", "null", " Male", "male"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
            max_size=6),
)  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    genders=st.lists(_CELLS, min_size=1, max_size=30),
    ages=st.lists(_CELLS, min_size=1, max_size=30),
)
def test_for_any_cells_the_profile_counts_what_the_file_holds(
    stop_and_search, tmp_path, genders, ages
):
    """Whatever a force puts in a categorical or completeness-checked cell, the profile
    counts each value as written (a blank is no value) and each blank the rule names."""
    rows = [
        _good_row(**{"Gender": g, "Age range": a})
        for g, a in zip(genders, (ages * len(genders))[: len(genders)], strict=True)
    ]
    folder = tmp_path / f"case-{abs(hash((tuple(genders), tuple(ages))))}"
    folder.mkdir(exist_ok=True)
    # Every cell quoted: Python's writer leaves a lone carriage return bare, which a CSV
    # reader rightly takes for the end of a line (a broken row, not a value).
    text = _csv(rows, quoting=csv.QUOTE_ALL)
    outcome, _, _ = _validate(stop_and_search, folder, text)
    written = [r["Gender"] for r in rows if r["Gender"] != ""]
    expected = {v: written.count(v) for v in written}
    assert outcome.profile.value_counts.get("gender", {}) == expected
    age_rule = next(r for r in stop_and_search.completeness_rules if r.column == "age_range")
    blanks = {v for v in age_rule.missing_values if v is not None} | {""}
    assert outcome.profile.missing["age_range"] == sum(r["Age range"] in blanks for r in rows)


def test_each_batch_reaches_the_checks_as_one_chunk_per_column(real_stop_and_search, monkeypatch):
    """The batches the checks read are joined from several reader blocks into one chunk per
    column, once: polars would otherwise copy them into one on every operation that reads
    them (a few milliseconds each, several times a batch). Rows and numbers are unchanged."""
    import pipelines.validation.row_validation as engine
    from pipelines.intake.delivery_formats import open_delivery

    monkeypatch.setattr(engine, "READ_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(engine, "BATCH_BYTES", 256 << 10)
    delivery = open_delivery(real_stop_and_search)
    batches = list(engine._batches(delivery, list(delivery.header), engine._SourceRowNumbers()))
    assert len(batches) > 4
    assert all(set(b.n_chunks("all")) == {1} for b in batches)
    numbers = [n for b in batches for n in b["_source_row"].to_list()]
    assert numbers == list(range(1, 16_333))


def test_the_curated_file_stores_row_numbers_without_a_dictionary(
    stop_and_search, real_stop_and_search, tmp_path
):
    """Every row's number is its own value: a dictionary for it is work for nothing and a
    larger file. The other columns keep theirs, and the rows read back the same as from the
    file written with Arrow's defaults (a dictionary for every column) before."""
    lake = FolderLake(tmp_path / "lake")
    validate_delivery(stop_and_search, real_stop_and_search, PERIOD, "real", lake)
    curated = lake.path(lake.staging_path("stop_and_search", PERIOD, "real"))
    file = pq.ParquetFile(curated)
    names = file.schema_arrow.names
    for group in range(file.metadata.num_row_groups):
        chunks = file.metadata.row_group(group)
        encodings = {names[i]: set(chunks.column(i).encodings) for i in range(len(names))}
        assert not encodings["_source_row"] & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
        assert "RLE_DICTIONARY" in encodings["type"]
    table = file.read()
    with_defaults = tmp_path / "defaults.parquet"
    pq.write_table(table, with_defaults, compression="zstd", row_group_size=1 << 20)
    assert pq.read_table(with_defaults).equals(table)
    assert curated.stat().st_size < with_defaults.stat().st_size


_FIELDS = st.sampled_from(["a", "", "NA", "x y", '"q,1"', '"two\nlines"', '"say ""hi"""'])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(_FIELDS, min_size=1, max_size=4), min_size=1, max_size=60),
    block=st.integers(min_value=128, max_value=512),  # a block holds whole rows
    joined=st.integers(min_value=1, max_value=5),
)
def test_joined_batches_hold_the_rows_and_broken_rows_of_one_block_at_a_time(
    tmp_path_factory, rows, block, joined
):
    """However many reader blocks a batch joins, it holds the same rows, in one chunk per
    column, and the reader reports the same broken rows (wrong number of fields)."""
    import polars as pl

    from pipelines.intake.delivery_formats import open_delivery, text_batches

    path = tmp_path_factory.mktemp("joined") / "d.csv"
    path.write_text("A,B,C\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    delivery = open_delivery(path)

    def read(blocks: int) -> tuple[list[pl.DataFrame], list[int]]:
        broken: list[int] = []

        def on_invalid_row(row) -> str:
            broken.append(row.number)
            return "skip"

        batches = text_batches(delivery, on_invalid_row, block_size=block, joined=blocks)
        return list(batches), broken

    one, broken_one = read(1)
    many, broken_many = read(joined)
    assert broken_many == broken_one
    both = [pl.concat(f) if f else pl.DataFrame() for f in (one, many)]
    assert both[1].equals(both[0])
    assert all(set(f.n_chunks("all")) == {1} for f in many)
    assert len(many) == -(-len(one) // joined)  # each batch joins `joined` blocks, the last fewer
