"""Property-based fuzzing (Hypothesis) of what the force may send, over several contracts.

Deliveries are made from real published rows (stop and search, street crime) and from the
synthetic generator for a contract with a pseudonymised field (use of force), then
mutated: cells (quotes, separators, newlines, markup, formulas, any script, huge), field
counts, header edits (renamed, dropped, repeated, unagreed columns), encodings, line ends,
separators, NUL bytes, truncation, compression. What a user relies on must hold for every
one of them:

- `datashare run` exits 0, and every file is in `governance.deliveries` with a final
  status and, unless published, a reason;
- every row of every readable file is curated or quarantined exactly once, numbered as in
  the file (checked against Python's own CSV reader);
- nothing outside the agreed columns, and no pseudonymised value in clear, reaches
  anything analysts read (the warehouse, the lake's shared areas, Data Docs, profiles,
  Dagster's own records, the oversight pack, a notice), and markup arrives escaped.

`make test` runs a fixed seed and a few examples (the `ci` profile: 2 full runs, 100
engine examples); the `soak` profile runs many more, with fresh random inputs, outside CI:
`benchmarks/fault_matrix.py --fuzz-examples N`, or
`DATASHARE_FUZZ_PROFILE=soak DATASHARE_FUZZ_EXAMPLES=N pytest tests/test_fuzz.py`.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sys
import tempfile
from contextlib import redirect_stdout
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipelines.cli.main import main
from pipelines.demo.synthetic import write_delivery
from pipelines.intake.pseudonymise import load_key
from pipelines.lake.store import FolderLake
from pipelines.validation.row_validation import DeliveryRejected, curated_schema, validate_delivery
from schemas.contract import load_contracts
from tests.conftest import REAL_DATA, build_template, restore_template

# Each runs the whole pipeline: `pytest -m 'not slow'` leaves them out.
pytestmark = pytest.mark.slow

SECRET = "OFFICERSECRET"  # every clear officer key starts so; no token or value does
UNAGREED = "UNAGREEDVALUE"  # the values of a column no contract lists
MARKUP = '<b id="fuzz">'  # must arrive escaped in every HTML page

csv.field_size_limit(sys.maxsize)  # the oracle reads huge cells too

# A full run (Dagster, great-expectations, marts, the pack) takes tens of seconds an
# example; the row engine a few milliseconds. `DATASHARE_FUZZ_EXAMPLES` sets the full runs;
# the engine gets fifty times as many.
PROFILE = os.environ.get("DATASHARE_FUZZ_PROFILE", "ci")
FULL_RUNS = int(os.environ.get("DATASHARE_FUZZ_EXAMPLES", 2 if PROFILE == "ci" else 50))
common = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "ci", max_examples=50 * FULL_RUNS, derandomize=True, database=None, **common
)
settings.register_profile("soak", max_examples=50 * FULL_RUNS, **common)
settings.load_profile(PROFILE)


@dataclass(frozen=True)
class Source:
    """Real (or, for a pseudonymised contract, synthetic) rows of one contract's month."""

    contract: str
    period: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _read_rows(path: Path, limit: int) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = tuple(next(reader))
        rows = []
        for row in reader:
            rows.append(tuple(row))
            if len(rows) == limit:
                break
    return header, tuple(rows)


@cache
def sources() -> tuple[Source, ...]:
    found = []
    real = {
        "stop_and_search": ("2022-06", "stop_and_search/2022-06-metropolitan-stop-and-search.csv"),
        "street_crime": ("2023-01", "street_crime/2023-01-city-of-london-street.csv"),
    }
    for contract, (period, relative) in real.items():
        header, rows = _read_rows(REAL_DATA / relative, 400)
        found.append(Source(contract, period, header, rows))
    contract = load_contracts()["use_of_force"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "uof.csv"
        write_delivery(contract, "2024-03", path, rows=200, seed=7, defect_rate=0)
        header, rows = _read_rows(path, 200)
    key = header.index(contract.column("officer_key").source_name)
    marked = tuple(
        tuple(f"{SECRET}{i:05d}" if j == key else v for j, v in enumerate(row))
        for i, row in enumerate(rows)
    )
    found.append(Source("use_of_force", "2024-03", header, marked))
    return tuple(found)


# -- how a delivery is mangled -------------------------------------------------------------

CELL = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ['"', '""', 'a"b', ",", "\n", "\r\n", "x,y", MARKUP, "=HYPERLINK(\"x\")", "+1-2",
         "NA", "null", " ", "\t", "Łódź ✓ 東京", "\u202e", "\x00", "\ufeff"]
    ),
    st.just("x" * 150_000),  # a huge cell
)  # fmt: skip


class Delivery:
    """One generated file (a plain class: a shrunk failure prints its short repr)."""

    def __init__(
        self, source: Source, name: str, data: bytes, readable_text: str | None, unagreed: bool
    ) -> None:
        self.source, self.name, self.data = source, name, data
        self.readable_text = readable_text  # the text Python's CSV reader counts, if intact
        self.unagreed = unagreed

    def __repr__(self) -> str:  # what a shrunk failure prints: short, but enough to rebuild
        head = self.data[:300] + (b"..." if len(self.data) > 300 else b"")
        return (
            f"Delivery({self.source.contract}, {self.name!r}, {len(self.data):,} bytes: {head!r})"
        )


@st.composite
def deliveries(draw) -> Delivery:
    source = draw(st.sampled_from(sources()))
    header = list(source.header)
    count = draw(st.integers(1, 60))
    start = draw(st.integers(0, len(source.rows) - count))
    rows = [list(r) for r in source.rows[start : start + count]]

    for _ in range(draw(st.integers(0, 6))):
        i, j = draw(st.integers(0, count - 1)), draw(st.integers(0, len(header) - 1))
        kind = draw(st.sampled_from(["cell", "blank", "drop field", "add field", "repeat row"]))
        row = rows[i]
        if kind == "cell" and j < len(row):
            row[j] = draw(CELL)
        elif kind == "blank" and j < len(row):
            row[j] = ""
        elif kind == "drop field" and row:
            row.pop(min(j, len(row) - 1))
        elif kind == "add field":
            row.insert(min(j, len(row)), draw(CELL))
        elif kind == "repeat row":
            rows.insert(i, list(row))

    unagreed = False
    edit = draw(st.sampled_from(["none", "none", "unagreed", "rename", "drop", "repeat"]))
    j = draw(st.integers(0, len(header) - 1))
    if edit == "unagreed":
        header.append("Notes")
        for n, row in enumerate(rows):
            row.append(f"{UNAGREED}{n}")
        unagreed = True
    elif edit == "rename":
        header[j] = header[j] + " (renamed)"
    elif edit == "drop":
        header.pop(j)
        for row in rows:
            if j < len(row):
                row.pop(j)
    elif edit == "repeat":
        header.append(header[j])
        for row in rows:
            row.append("x")

    out = io.StringIO()
    csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([header, *rows])
    text = out.getvalue()
    if draw(st.booleans()) and draw(st.booleans()):  # another export's separator on a line
        lines = text.split("\n")
        k = draw(st.integers(0, len(lines) - 1))
        lines[k] = lines[k].replace(",", ";")
        text = "\n".join(lines)
    intact = True
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "windows-1252", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    if encoding == "windows-1252":
        text = data.decode(encoding)  # what Python reads back
    byte_edit = draw(st.sampled_from(["none"] * 6 + ["truncate", "nul", "empty"]))
    if byte_edit == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
        intact = False
    elif byte_edit == "nul":
        k = draw(st.integers(0, len(data)))
        data = data[:k] + b"\x00" + data[k:]
        intact = False
    elif byte_edit == "empty":
        data, intact = b"", False
    suffix = ".csv"
    compression = draw(st.sampled_from(["none"] * 4 + ["gzip", "gzip", "cut gzip", "wrong name"]))
    if compression in ("gzip", "cut gzip"):
        data, suffix = gzip.compress(data), ".csv.gz"
        if compression == "cut gzip":
            data, intact = data[: draw(st.integers(0, len(data)))], False
    elif compression == "wrong name":
        suffix = ".txt"
    name = f"{draw(st.text('abcdef-_ ', min_size=1, max_size=8))}{suffix}"
    readable = text if intact and encoding != "utf-16" else None
    return Delivery(source, name.strip() or "x.csv", data, readable, unagreed)


def records_in(text: str) -> int:
    """Data rows in a CSV text as Python's CSV reader sees them (blank lines are no rows)."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    next(reader, None)
    return sum(1 for row in reader if row)


# -- what analysts can read ----------------------------------------------------------------

PRIVATE = ("landing", "staging", "quarantine", ".leases")


def analyst_text(home) -> str:
    """Everything an analyst (or an engineer in the Dagster UI) can read, as text."""
    parts = []
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        views = con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
        for schema, view in views:
            for row in con.execute(f"SELECT * FROM {schema}.{view}").fetchall():
                parts.append(repr(row))
    for path in home.lake.rglob("*"):
        relative = path.relative_to(home.lake)
        if relative.parts[0] in PRIVATE or not path.is_file():
            continue
        if path.suffix == ".parquet":
            parts.append(repr(pq.read_table(path).to_pylist()))
        else:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    for folder in (home.dagster_home, home.home / "reports", home.home / "notices"):
        for path in folder.rglob("*"):
            if path.is_file():
                parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def html_pages(home) -> list[Path]:
    return [
        p for folder in (home.lake / "docs", home.home / "reports") for p in folder.rglob("*.html")
    ]


# -- the properties ------------------------------------------------------------------------


def _first_run(settings) -> None:
    with redirect_stdout(io.StringIO()) as out:
        assert main(["run"]) == 0, out.getvalue()


@pytest.fixture
def started_home(tmp_path_factory) -> Path:
    """A home after its first `datashare run`, with nothing to take (Dagster's storage, the
    warehouse and the empty marts made), kept pristine by `build_template`: each example
    starts from it, put back at the same path, rather than from nothing. The first run's
    making of a home costs more than a small example's own work, and is the same for every
    example; the example's files are then all its run takes."""
    folder, _ = build_template(tmp_path_factory, "fuzz", _first_run)
    return folder


# Every example's runs use the worker's great-expectations helper (tests/conftest.py).
@pytest.mark.usefixtures("ge_helper")
@given(st.lists(deliveries(), min_size=1, max_size=4))
@settings(
    max_examples=FULL_RUNS,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_whatever_arrives_every_file_ends_final_every_row_counted_nothing_unagreed_leaks(
    started_home, monkeypatch, batch: list[Delivery]
):
    home = restore_template(started_home, monkeypatch)  # each example's own, as first run left it
    dropped = {}
    for n, delivery in enumerate(batch):
        relative = f"{delivery.source.contract}/{delivery.source.period}/{n}-{delivery.name}"
        path = home.dropzone / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(delivery.data)
        dropped[relative] = delivery

    assert main(["run"]) == 0
    assert main(["report"]) == 0
    for contract, period in {(d.source.contract, d.source.period) for d in batch}:
        # The notice to the force (a month with nothing readable may have none to write).
        main(["breaches", "notice", "--contract", contract, "--period", period])
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT source_path, delivery_id, status, reason, rows_delivered "
            "FROM governance.deliveries"
        ).fetchall()
        assert sorted(r[0] for r in rows) == sorted(dropped)
        for source_path, delivery_id, status, reason, delivered in rows:
            assert status in ("published", "superseded", "held", "rejected", "duplicate")
            assert status == "published" or (reason and len(reason) > 20), (status, reason)
            if status in ("rejected", "duplicate"):
                continue
            table = f"curated.{dropped[source_path].source.contract}"
            curated = {
                r
                for (r,) in con.execute(
                    f"SELECT DISTINCT _source_row FROM {table} WHERE _delivery_id = ?",
                    [delivery_id],
                ).fetchall()
            }
            quarantined = [
                r
                for (r,) in con.execute(
                    "SELECT _source_row FROM governance.quarantine_history WHERE _delivery_id = ?",
                    [delivery_id],
                ).fetchall()
            ]
            if status == "published":
                assert not curated & set(quarantined)
                assert sorted(curated | set(quarantined)) == list(range(1, delivered + 1))
                assert len(quarantined) == len(set(quarantined))
            text = dropped[source_path].readable_text
            if text is not None:
                assert delivered == records_in(text), source_path

    # Nothing unagreed, and no officer key in clear, reaches anything analysts read.
    readable = analyst_text(home)
    assert SECRET not in readable
    assert UNAGREED not in readable
    for page in html_pages(home):
        assert MARKUP not in page.read_text(errors="replace"), page
    contracts = load_contracts()
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        for name, contract in contracts.items():
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'curated' "
                "AND table_name = ? ORDER BY column_index", [name]).fetchall()]  # fmt: skip
            # The contract's columns, then `_month` (the delivery's month as a DATE).
            assert columns == [*curated_schema(contract).names, "_month"]


@given(deliveries())
def test_the_row_engine_accounts_for_every_row_and_tokenises_before_anything_leaves(
    delivery: Delivery,
):
    contract = load_contracts()[delivery.source.contract]
    with tempfile.TemporaryDirectory() as tmp:
        landed = Path(tmp) / delivery.name
        landed.write_bytes(delivery.data)
        lake = FolderLake(Path(tmp) / "lake")
        key = load_key(Path(tmp)) if contract.pseudonymised else None
        delivery_id = "f" * 64
        try:
            outcome = validate_delivery(
                contract, landed, delivery.source.period, delivery_id, lake, key
            )
        except DeliveryRejected as rejected:
            event(f"rejected: {rejected.rule}")
            assert rejected.rule.startswith("file.") and len(rejected.reason) > 20
            return
        event("validated" + (", some rows quarantined" if outcome.rows_quarantined else ""))
        staged = lake.path(lake.staging_path(contract.name, delivery.source.period, delivery_id))
        held = lake.path(lake.quarantine_path(contract.name, delivery.source.period, delivery_id))
        curated = pq.read_table(staged)
        quarantined = pq.read_table(held)
        assert curated.schema.names == curated_schema(contract).names
        numbers = set(curated.column("_source_row").to_pylist())
        failed = quarantined.column("_source_row").to_pylist()
        assert not numbers & set(failed) and len(failed) == len(set(failed))
        assert sorted(numbers | set(failed)) == list(range(1, outcome.rows_delivered + 1))
        assert outcome.rows_curated + outcome.rows_quarantined == outcome.rows_delivered
        if delivery.readable_text is not None:
            assert outcome.rows_delivered == records_in(delivery.readable_text)
        # Tokenised before anything leaves the landing area, quarantine included.
        everything = repr(curated.to_pylist()) + repr(quarantined.to_pylist())
        assert SECRET not in everything
        assert UNAGREED not in repr(curated.to_pylist())
        for breach in outcome.breaches:
            assert SECRET not in breach.detail and UNAGREED not in breach.detail
