"""Intake from a folder drop zone: identity, duplicates, restatements, races, formats,
manifests, files outside the layout, the delivery sensor and late deliveries.

(The same engine against a real S3 server is in test_s3_dropzone.py.)
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import gzip
import hashlib
import io
import json
import mmap
import os
import shutil
import stat
import tempfile
import threading
import time
from datetime import date
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.resources import DropZoneResource, LakeResource
from assets.validation import conformance_result
from pipelines.demo.synthetic import write_delivery
from pipelines.governance.delivery_schedule import check_schedule, deadlines, late_periods
from pipelines.home.settings import load_settings
from pipelines.intake.delivery_intake import LandingCopyMismatch, plan_intake, take_deliveries
from pipelines.intake.dropzone import FolderDropZone, open_dropzone
from pipelines.lake.publishing import awaiting_publication, publish_delivery, published
from pipelines.lake.register import Register
from pipelines.lake.store import FolderLake
from pipelines.orchestration.delivery_sensor import (
    UNFILED_JOB,
    build_delivery_sensor,
    load_cursor,
)
from pipelines.validation.delivery_verdicts import validate_pending
from pipelines.validation.row_validation import DeliveryRejected, validate_delivery
from schemas.contract import load_contracts

CONTRACT = "stop_and_search"


@cache
def delivery_bytes(period: str, rows: int = 30, seed: int = 0) -> bytes:
    """A small, fully valid stop-and-search delivery for `period`, as CSV bytes."""
    contract = load_contracts()[CONTRACT]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        write_delivery(contract, period, path, rows=rows, seed=seed, defect_rate=0)
        return path.read_bytes()


def data_rows(content: bytes) -> int:
    return len(content.decode("utf-8").splitlines()) - 1


def manifest_for(content: bytes, **overrides) -> bytes:
    doc = {"rows": data_rows(content), "sha256": hashlib.sha256(content).hexdigest()}
    return json.dumps({**doc, **overrides}).encode()


def put(root: Path, relative: str, content: bytes, mtime: float | None = None) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


class Engine:
    """The intake, validation and publication engine on a tmp drop zone and lake."""

    def __init__(self, tmp_path: Path, zone=None) -> None:
        self.contract = load_contracts()[CONTRACT]
        self.root = tmp_path / "dropzone"
        self.root.mkdir(exist_ok=True)
        self.zone = zone or FolderDropZone(self.root, settle_seconds=0)
        self.lake = FolderLake(tmp_path / "lake")
        self.register = Register(self.lake)

    def take(self, period: str):
        return take_deliveries(CONTRACT, period, self.zone, self.lake, self.register, "test")

    def process(self, period: str):
        taken = self.take(period)
        verdicts = validate_pending(self.contract, period, self.lake, self.register, "test")
        candidate = awaiting_publication(self.register, CONTRACT, period)
        if candidate:
            publish_delivery(self.lake, self.register, candidate, "test")
        return taken, verdicts

    def status(self, period: str) -> dict[str, str]:
        """source path -> current status, for one period."""
        return {
            d["source_path"]: d["event"]
            for d in self.register.deliveries(CONTRACT).values()
            if d["period"] == period
        }

    def landing_files(self) -> list[Path]:
        return sorted(
            p
            for p in (self.lake.root / "landing").rglob("*")
            if p.is_file() and not p.name.startswith(".") and ".incoming" not in p.parts
        )


# -- the drop zone ---------------------------------------------------------------------


def test_folder_listing_places_each_file_or_says_why_not(tmp_path):
    root = tmp_path / "dz"
    good = delivery_bytes("2025-01")
    put(root, "stop_and_search/2025-01/a.csv", good)
    put(root, "stop_and_search/2025-01/a.csv.manifest.json", manifest_for(good))
    put(root, "stop_and_search/2025-01/.a.csv.part", b"half")
    put(root, "stop_and_search/june.csv", b"Type\n")
    put(root, "stop_and_serch/2025-01/x.csv", good)
    put(root, "stop_and_search/25-01/x.csv", good)
    put(root, "stop_and_search/2025-01/extra/x.csv", good)
    put(root, "stop_and_search/2025-01/orphan.csv.manifest.json", b"{}")

    files = {f.relative: f for f in open_dropzone(root, settle_seconds=0).files({CONTRACT})}
    assert sorted(files) == [
        "stop_and_search/2025-01/a.csv",
        "stop_and_search/2025-01/extra/x.csv",
        "stop_and_search/25-01/x.csv",
        "stop_and_search/june.csv",
        "stop_and_serch/2025-01/x.csv",
    ]
    a = files["stop_and_search/2025-01/a.csv"]
    assert (a.contract, a.period, a.problem) == (CONTRACT, "2025-01", None)
    assert a.manifest.relative == "stop_and_search/2025-01/a.csv.manifest.json"
    assert "not in the agreed layout" in files["stop_and_search/june.csv"].problem
    assert "not in the agreed layout" in files["stop_and_search/2025-01/extra/x.csv"].problem
    assert "names no agreed contract" in files["stop_and_serch/2025-01/x.csv"].problem
    assert "not YYYY-MM" in files["stop_and_search/25-01/x.csv"].problem
    # Only the direct children of a period folder are its deliveries.
    (delivery,) = FolderDropZone(root, settle_seconds=0).deliveries(CONTRACT, "2025-01")
    assert delivery.relative == a.relative and delivery.manifest is not None


def test_plan_sorts_new_files_into_deliveries_unfiled_and_waiting(tmp_path):
    root = tmp_path / "dz"
    for rel in (
        "stop_and_search/2025-01/a.csv",
        "stop_and_search/2018-12/old.csv",
        "stop_and_search/2031-01/early.csv",
        "nobody/2025-01/x.csv",
    ):
        put(root, rel, b"x")
    files = FolderDropZone(root, settle_seconds=0).files({CONTRACT})
    plan = plan_intake(files, set(), {CONTRACT: ["2019-01", "2025-01", "2025-02"]})
    assert list(plan.pending) == [(CONTRACT, "2025-01")]
    assert {f.relative: why for f, why in plan.unfiled} == {
        "nobody/2025-01/x.csv": "names no agreed contract ('nobody')",
        "stop_and_search/2018-12/old.csv": "is for 2018-12, before the agreement's first "
        "period 2019-01",
    }
    (waiting,) = plan.waiting
    assert "not yet closed" in waiting[1]
    # Files already taken (path and version) are not planned again.
    taken = {(f.relative, f.version) for f in files}
    assert not plan_intake(files, taken, {CONTRACT: ["2025-01"]}).pending


# -- identity: duplicates, restatements, versions ---------------------------------------


@pytest.mark.slow
def test_duplicates_restatements_and_resends_under_the_same_name(tmp_path):
    engine = Engine(tmp_path)
    first = delivery_bytes("2025-01", rows=30)
    put(engine.root, "stop_and_search/2025-01/jan.csv", first)
    taken, _ = engine.process("2025-01")
    assert len(taken.received) == 1
    assert engine.status("2025-01") == {"stop_and_search/2025-01/jan.csv": "published"}

    # The same bytes under another name: a duplicate, recorded, not processed.
    put(engine.root, "stop_and_search/2025-01/jan-again.csv", first)
    taken, verdicts = engine.process("2025-01")
    (dup,) = taken.duplicates
    assert not taken.received and not verdicts
    assert "Same bytes as the delivery already taken from stop_and_search/2025-01/jan.csv" in (
        dup.reason
    )

    # New bytes under the same name, with an OLDER modification time: still new, and a
    # restatement that replaces the month as a whole.
    second = delivery_bytes("2025-01", rows=12, seed=5)
    put(engine.root, "stop_and_search/2025-01/jan.csv", second, mtime=946684800)  # 2000-01-01
    taken, _ = engine.process("2025-01")
    assert [e.delivery_id for e in taken.received] == [hashlib.sha256(second).hexdigest()]
    history = [
        (e["delivery_id"][:8], e["event"])
        for e in engine.register.events(CONTRACT)
        if e["event"] in ("published", "superseded")
    ]
    old, new = hashlib.sha256(first).hexdigest()[:8], hashlib.sha256(second).hexdigest()[:8]
    assert history == [(old, "published"), (new, "published"), (old, "superseded")]
    curated = pq.read_table(engine.lake.path(engine.lake.curated_path(CONTRACT, "2025-01")))
    assert curated.num_rows == 12

    # Nothing changed since: nothing is taken again.
    taken = engine.take("2025-01")
    assert not taken.received and not taken.duplicates


def test_landing_copy_is_read_only_and_hashes_to_the_delivery_id(tmp_path):
    engine = Engine(tmp_path)
    content = delivery_bytes("2025-01")
    put(engine.root, "stop_and_search/2025-01/jan.csv", content)
    (event,) = engine.take("2025-01").received
    landing = engine.lake.root / event.landing_path
    assert landing.read_bytes() == content
    assert hashlib.sha256(landing.read_bytes()).hexdigest() == event.delivery_id
    assert stat.S_IMODE(landing.stat().st_mode) == 0o400
    assert (
        event.source_version
        == f"{len(content)}:{(engine.root / event.source_path).stat().st_mtime_ns}"
    )


def test_a_copy_that_does_not_match_its_hash_is_never_landed(tmp_path):
    class Corrupting(FolderDropZone):
        def fetch(self, drop, dest):
            fetched = super().fetch(drop, dest)
            with open(dest, "ab") as fh:
                fh.write(b"bit rot")  # the bytes on disk no longer hash to what was read
            return fetched

    engine = Engine(tmp_path, zone=Corrupting(tmp_path / "dropzone", settle_seconds=0))
    put(engine.root, "stop_and_search/2025-01/jan.csv", delivery_bytes("2025-01"))
    with pytest.raises(LandingCopyMismatch):
        engine.take("2025-01")
    assert engine.landing_files() == []
    assert engine.register.events() == []


def test_a_copy_overwritten_in_place_after_it_was_hashed_is_never_landed(tmp_path):
    """Same size, same name: bytes changed where they lie are still seen, by the inode
    change time any write moves (and which no writer can set back)."""

    class Overwriting(FolderDropZone):
        def fetch(self, drop, dest):
            fetched = super().fetch(drop, dest)
            # Past the coarsest clock tick a file system stamps times with (10 ms).
            time.sleep(0.02)
            with open(dest, "r+b") as fh:
                fh.seek(100)
                fh.write(b"X")
            return fetched

    engine = Engine(tmp_path, zone=Overwriting(tmp_path / "dropzone", settle_seconds=0))
    put(engine.root, "stop_and_search/2025-01/jan.csv", delivery_bytes("2025-01"))
    with pytest.raises(LandingCopyMismatch):
        engine.take("2025-01")
    assert engine.landing_files() == []
    assert engine.register.events() == []


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (its `rchar`)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="Linux's /proc/self/io")
def test_a_new_file_is_read_once_to_be_landed(tmp_path):
    """Taking a delivery reads its bytes once: hashed as they are copied, the copy shown
    unchanged by its stamp rather than hashed again (a 2M-row month is 436 MB)."""
    engine = Engine(tmp_path)
    content = delivery_bytes("2025-01")
    content += content.split(b"\n", 1)[1] * max(1, (24 << 20) // len(content))  # ~24 MB
    put(engine.root, "stop_and_search/2025-01/jan.csv", content)
    before = _bytes_read()
    (event,) = engine.take("2025-01").received
    read = _bytes_read() - before
    landed = engine.lake.root / event.landing_path
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == event.delivery_id
    assert len(content) <= read < 1.5 * len(content)


def test_two_intakes_racing_over_the_same_new_file_record_one_delivery(tmp_path):
    both_fetched = threading.Barrier(2, timeout=30)

    class Racing(FolderDropZone):
        def fetch(self, drop, dest):
            result = super().fetch(drop, dest)
            both_fetched.wait()  # both runs have hashed the file before either records it
            return result

    engine = Engine(tmp_path, zone=Racing(tmp_path / "dropzone", settle_seconds=0))
    put(engine.root, "stop_and_search/2025-01/jan.csv", delivery_bytes("2025-01"))
    results, errors = [], []

    def intake():
        try:
            results.append(engine.take("2025-01"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=intake) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(len(r.received) for r in results) == [0, 1]
    assert sorted(len(r.duplicates) for r in results) == [0, 1]
    assert len(engine.register.deliveries(CONTRACT)) == 1
    assert len(engine.landing_files()) == 1
    validate_pending(engine.contract, "2025-01", engine.lake, engine.register)
    assert engine.status("2025-01") == {"stop_and_search/2025-01/jan.csv": "validated"}


# -- formats ---------------------------------------------------------------------------


EXCEL_VALUE = "Caf\u00e9 \u2013 \u20ac"  # three characters Windows-1252 has, UTF-8 spells otherwise


def _as_excel_windows_1252(content: bytes) -> bytes:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    rows[1][rows[0].index("Self-defined ethnicity")] = EXCEL_VALUE
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("cp1252")


def _as_parquet(content: bytes, typed: bool) -> bytes:
    frame = pl.read_csv(io.BytesIO(content), infer_schema=False)
    if typed:
        frame = frame.with_columns(
            pl.col("Date").str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", time_zone="UTC"),
            pl.col("Part of a policing operation").replace_strict(
                {"True": True, "False": False}, default=None
            ),
            pl.col("Latitude").cast(pl.Float64),
            pl.col("Longitude").cast(pl.Float64),
        )
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


def _validate(tmp_path: Path, name: str, content: bytes):
    contract = load_contracts()[CONTRACT]
    source = tmp_path / name
    source.write_bytes(content)
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(contract, source, "2025-01", "d1", lake)
    curated = pl.read_parquet(lake.path(lake.staging_path(CONTRACT, "2025-01", "d1")))
    return outcome, curated.drop("_delivery_id")


@pytest.mark.parametrize(
    ("name", "convert"),
    [
        ("d.csv", lambda b: b),
        ("d.csv", lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n")),  # Excel "CSV UTF-8"
        ("d.csv.gz", gzip.compress),
        ("d.parquet", lambda b: _as_parquet(b, typed=False)),
        ("d.parquet", lambda b: _as_parquet(b, typed=True)),
    ],
    ids=["utf8", "utf8-bom-crlf", "gzip", "parquet-text", "parquet-typed"],
)
def test_every_agreed_format_gives_the_same_curated_rows(tmp_path, name, convert):
    content = delivery_bytes("2025-01")
    base = tmp_path / "base"
    base.mkdir()
    baseline, expected = _validate(base, "d.csv", content)
    outcome, curated = _validate(tmp_path, name, convert(content))
    assert outcome.rows_curated == data_rows(content) and outcome.rows_quarantined == 0
    assert curated.equals(expected)
    assert [b.rule for b in outcome.breaches] == [b.rule for b in baseline.breaches]
    assert "file.encoding" not in [b.rule for b in outcome.breaches]


def test_what_the_hash_saw_spares_validation_a_pass_and_nothing_else(tmp_path, monkeypatch):
    """Intake sees whether every byte is ASCII as it hashes the copy: validation in the same
    process then takes the landed file as UTF-8 without reading it all again. A file with
    other bytes, or a landed file touched since, is read for its encoding as before."""
    from pipelines.intake import delivery_formats as formats

    passes = []
    encoding = formats._encoding
    monkeypatch.setattr(
        formats, "_encoding", lambda *args: passes.append(args[0]) or encoding(*args)
    )
    engine = Engine(tmp_path)
    put(engine.root, "stop_and_search/2025-01/jan.csv", delivery_bytes("2025-01"))
    excel = _as_excel_windows_1252(delivery_bytes("2025-02"))
    put(engine.root, "stop_and_search/2025-02/feb.csv", excel)
    (plain,) = engine.take("2025-01").received
    (accented,) = engine.take("2025-02").received

    landed = engine.lake.root / plain.landing_path
    assert formats.open_delivery(landed).encoding == formats.UTF8
    assert passes == []
    other = engine.lake.root / accented.landing_path
    assert formats.open_delivery(other).encoding == formats.WINDOWS_1252
    assert passes == [other]
    # Touched since it landed (its times moved): looked at again, whatever it holds.
    os.utime(landed, ns=(time.time_ns(), time.time_ns()))
    assert formats.open_delivery(landed).encoding == formats.UTF8
    assert passes == [other, landed]


@pytest.mark.parametrize("last", [b"\n", b"\xe9\n", b"\x80"])
def test_the_hash_pass_says_whether_every_byte_is_ascii_in_every_window(
    tmp_path, monkeypatch, last
):
    from pipelines.intake import dropzone

    monkeypatch.setattr(dropzone, "HASH_WINDOW", mmap.ALLOCATIONGRANULARITY)
    content = b"a,b\n1,2\n" * (3 * mmap.ALLOCATIONGRANULARITY // 8) + last  # four windows
    path = put(tmp_path, "f.csv", content)
    with open(path, "rb") as fh:
        digest, ascii = dropzone._sha256_of(fh.fileno())
    assert digest == hashlib.sha256(content).hexdigest()
    assert ascii == content.isascii()


def test_windows_1252_from_excel_is_read_with_a_minor_breach(tmp_path):
    content = _as_excel_windows_1252(delivery_bytes("2025-01"))
    outcome, curated = _validate(tmp_path, "d.csv", content)
    assert outcome.rows_curated == data_rows(delivery_bytes("2025-01"))
    assert curated["self_defined_ethnicity"][0] == EXCEL_VALUE
    encoding = [b for b in outcome.breaches if b.rule == "file.encoding"]
    (breach,) = encoding
    assert breach.severity == "minor" and "Windows-1252" in breach.detail
    assert "CSV UTF-8" in breach.detail


def test_a_contract_that_agrees_windows_1252_raises_no_encoding_breach(tmp_path):
    contract = load_contracts()[CONTRACT]
    agreed = dataclasses.replace(
        contract, file_format={**contract.file_format, "encoding": ["utf-8", "windows-1252"]}
    )
    source = tmp_path / "d.csv"
    source.write_bytes(_as_excel_windows_1252(delivery_bytes("2025-01")))
    outcome = validate_delivery(agreed, source, "2025-01", "d1", FolderLake(tmp_path / "lake"))
    assert not [b for b in outcome.breaches if b.rule == "file.encoding"]


def _truncated_gzip() -> bytes:
    whole = gzip.compress(delivery_bytes("2025-01") * 20)
    return whole[: len(whole) // 2]


@pytest.mark.parametrize(
    ("name", "content", "rule", "words"),
    [
        ("d.csv.gz", _truncated_gzip(), "file.compression", "is truncated"),
        ("d.csv.gz", b"Type,Date\nx,y\n", "file.format", "not gzip-compressed"),
        ("d.csv.gz", gzip.compress(b""), "file.empty", "empty"),
        ("d.parquet", b"PAR1 this is not really parquet", "file.format", "not a readable Parquet"),
        ("d.parquet", b"", "file.empty", "empty"),
        ("d.csv", b"", "file.empty", "empty"),
        ("d.xlsx", b"PK\x03\x04\x14\x00" + bytes(range(256)), "file.format", "zip archive"),
        ("d.txt", b"Type,Date\nx,y\n", "file.format", "the agreement accepts CSV (.csv)"),
        ("d.csv", b"\xff\xfeT\x00y\x00p\x00e\x00", "file.format", "UTF-16"),
    ],
    ids=[
        "truncated-gzip",
        "gz-not-gzip",
        "empty-gzip",
        "corrupt-parquet",
        "empty-parquet",
        "empty-csv",
        "xlsx",
        "txt",
        "utf16",
    ],
)
def test_unreadable_files_are_rejected_with_a_clear_reason(tmp_path, name, content, rule, words):
    with pytest.raises(DeliveryRejected) as rejected:
        _validate(tmp_path, name, content)
    assert rejected.value.rule == rule
    assert words in rejected.value.reason


# -- manifests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "held", "words"),
    [
        (lambda c: manifest_for(c), False, None),
        (lambda c: manifest_for(c, rows=data_rows(c) + 1), True, "but the manifest says"),
        (lambda c: manifest_for(c, sha256="0" * 64), True, "not the bytes sent"),
        (lambda c: b"{not json", True, "not valid JSON"),
    ],
    ids=["matches", "rows", "sha256", "broken"],
)
def test_manifest_mismatch_holds_the_delivery(tmp_path, manifest, held, words):
    engine = Engine(tmp_path)
    content = delivery_bytes("2025-01")
    put(engine.root, "stop_and_search/2025-01/jan.csv", content)
    put(engine.root, "stop_and_search/2025-01/jan.csv.manifest.json", manifest(content))
    taken, (verdict,) = engine.process("2025-01")
    assert len(taken.received) == 1  # the manifest is not a delivery of its own
    breaches = [b for b in verdict.outcome.breaches if b.rule == "file.manifest"]
    check = conformance_result([b.__dict__ for b in verdict.outcome.breaches], "x")
    if not held:
        assert verdict.status == "validated" and not breaches
        assert check.passed
        assert published(engine.register, CONTRACT, "2025-01")
        return
    assert verdict.status == "held"
    (breach,) = breaches
    assert breach.severity == "critical" and words in breach.detail
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert published(engine.register, CONTRACT, "2025-01") is None
    assert not engine.lake.path(engine.lake.curated_path(CONTRACT, "2025-01")).exists()
    stored = engine.register.breaches(CONTRACT)
    assert any(b["rule"] == "file.manifest" for b in stored)


# -- the sensor ------------------------------------------------------------------------


def _tick(root: Path, lake: Path, cursor: str | None):
    contracts = {CONTRACT: load_contracts()[CONTRACT]}
    jobs = [
        dg.define_asset_job(f"{CONTRACT}_delivery", selection=dg.AssetSelection.all()),
        dg.define_asset_job(UNFILED_JOB, selection=dg.AssetSelection.all()),
    ]
    sensor = build_delivery_sensor(contracts, jobs)  # a fresh sensor: as after a restart
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={
            "dropzone": DropZoneResource(root=str(root), settle_seconds=0),
            "lake": LakeResource(root=str(lake)),
        },
    )
    return sensor(context)


def test_sensor_cursor_catches_old_mtimes_and_resends_and_survives_restarts(tmp_path):
    engine = Engine(tmp_path)
    lake = tmp_path / "lake"
    put(engine.root, "stop_and_search/2025-01/jan.csv", delivery_bytes("2025-01"))
    put(engine.root, "stop_and_search/2031-01/early.csv", b"not yet")  # period not closed
    put(engine.root, "misc/notes.csv", b"Type\n")

    first = _tick(engine.root, lake, None)
    by_job = {r.job_name: r for r in first.run_requests}
    assert sorted(by_job) == [f"{CONTRACT}_delivery", UNFILED_JOB]
    jan = by_job[f"{CONTRACT}_delivery"]
    assert jan.partition_key == "2025-01"
    assert jan.run_key.startswith("stop_and_search:2025-01:stop_and_search/2025-01/jan.csv@")
    assert jan.tags["datashare/partition"] == "stop_and_search.2025-01"

    # Two ticks racing over the same new file ask with the same run key: one run.
    racing = _tick(engine.root, lake, None)
    assert {r.run_key for r in racing.run_requests} == {r.run_key for r in first.run_requests}

    # After a restart, the stored cursor asks for nothing twice.
    again = _tick(engine.root, lake, first.cursor)
    assert not again.run_requests and "Nothing new" in again.skip_reason.skip_message

    # A file that arrives with an older modification time is still new.
    put(engine.root, "stop_and_search/2025-02/feb.csv", delivery_bytes("2025-02"), mtime=1e9)
    older = _tick(engine.root, lake, again.cursor)
    (feb,) = older.run_requests
    assert feb.partition_key == "2025-02"

    # The run takes January; the cursor forgets what the register now has.
    engine.take("2025-01")
    after = _tick(engine.root, lake, older.cursor)
    assert not after.run_requests
    remembered = load_cursor(after.cursor)
    assert not any("jan.csv" in i for i in remembered) and any("feb.csv" in i for i in remembered)

    # January re-sent under the same name with new bytes: a new run.
    put(engine.root, "stop_and_search/2025-01/jan.csv", delivery_bytes("2025-01", rows=7))
    resent = _tick(engine.root, lake, after.cursor)
    (request,) = resent.run_requests
    assert request.partition_key == "2025-01" and request.run_key != jan.run_key


# -- late deliveries -------------------------------------------------------------------


def test_late_periods_are_those_past_due_with_no_delivery():
    contract = load_contracts()[CONTRACT]
    delivered = {"2025-01", "2025-02", "2025-04"}
    start, late = late_periods(contract, delivered, date(2025, 6, 10))
    assert start == "2025-01"  # watched from the first period delivered, not 2019-01
    assert [p.period for p in late] == ["2025-03"]
    assert (late[0].due, late[0].late_after) == (date(2025, 4, 20), date(2025, 4, 25))
    # Not yet late on the last day of grace; late the day after.
    assert late_periods(contract, delivered, date(2025, 4, 25))[1] == []
    assert [p.period for p in late_periods(contract, delivered, date(2025, 4, 26))[1]] == [
        "2025-03"
    ]
    # After the last delivery, only what became late while we were watching: a new
    # install sent January alone in April flags March and April, not February.
    since = date(2025, 4, 1)
    assert [
        p.period for p in late_periods(contract, {"2025-01"}, date(2025, 6, 10), (), since)[1]
    ] == [
        "2025-03",
        "2025-04",
    ]
    # A file waiting in the drop zone is not late.
    assert late_periods(contract, delivered, date(2025, 6, 10), waiting={"2025-03"})[1] == []
    # Nothing delivered: nothing watched, unless the contract says from when.
    assert late_periods(contract, set(), date(2025, 6, 10)) == (None, [])
    watched = dataclasses.replace(
        contract, schedule=dataclasses.replace(contract.schedule, late_checks_from="2025-03")
    )
    assert [p.period for p in late_periods(watched, set(), date(2025, 6, 10))[1]] == [
        "2025-03",
        "2025-04",
    ]
    quarterly = dataclasses.replace(
        contract, schedule=dataclasses.replace(contract.schedule, period="quarterly")
    )
    assert deadlines(quarterly, "2025-01") == (date(2025, 4, 20), date(2025, 4, 25))


def test_late_breach_is_raised_once_and_stays_after_the_delivery_arrives(tmp_path):
    engine = Engine(tmp_path)
    for period in ("2025-01", "2025-02", "2025-04"):
        put(engine.root, f"stop_and_search/{period}/d.csv", delivery_bytes(period))
        engine.take(period)
    report = check_schedule(engine.contract, engine.lake, engine.register, date(2025, 6, 10))
    (breach,) = report.raised
    assert (breach.rule, breach.period, breach.severity, breach.delivery_id) == (
        "delivery.late",
        "2025-03",
        "major",
        None,
    )
    assert "No delivery for March 2025 had arrived by 25 April 2025" in breach.detail
    again = check_schedule(engine.contract, engine.lake, engine.register, date(2025, 6, 11))
    assert [p.period for p in again.late] == ["2025-03"] and again.raised == []
    stored = [b for b in engine.register.breaches(CONTRACT) if b["rule"] == "delivery.late"]
    assert len(stored) == 1 and stored[0]["breach_id"] == breach.breach_id

    put(engine.root, "stop_and_search/2025-03/d.csv", delivery_bytes("2025-03"))
    engine.take("2025-03")
    done = check_schedule(engine.contract, engine.lake, engine.register, date(2025, 6, 12))
    assert done.late == [] and done.raised == []
    assert len([b for b in engine.register.breaches(CONTRACT) if b["rule"] == "delivery.late"]) == 1


def test_a_month_sent_only_as_an_unreadable_file_is_still_late(tmp_path):
    engine = Engine(tmp_path)
    put(engine.root, "stop_and_search/2025-01/d.csv", b"%PDF-1.7\n" + bytes(range(256)))
    put(engine.root, "stop_and_search/2025-02/d.csv", delivery_bytes("2025-02"))
    for period in ("2025-01", "2025-02"):
        engine.process(period)
    assert engine.status("2025-01") == {"stop_and_search/2025-01/d.csv": "rejected"}

    report = check_schedule(engine.contract, engine.lake, engine.register, date(2025, 3, 10))
    # Watched from January (something was sent for it), and January is missing still.
    assert report.watched_from == "2025-01"
    (breach,) = report.raised
    assert breach.period == "2025-01"
    assert "No usable delivery for January 2025 had arrived by 25 February 2025" in breach.detail
    assert "was rejected" in breach.detail

    # A readable re-send closes the gap (the late breach stays as the record).
    put(engine.root, "stop_and_search/2025-01/d-again.csv", delivery_bytes("2025-01"))
    engine.process("2025-01")
    done = check_schedule(engine.contract, engine.lake, engine.register, date(2025, 3, 11))
    assert done.late == [] and done.raised == []


# -- the whole pipeline: `datashare run` -----------------------------------------------


def _query(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper
def test_run_records_off_layout_files_once_and_flags_a_missed_month(home, capsys):
    from pipelines.cli.main import main

    root = home.dropzone
    jan = delivery_bytes("2025-01")
    put(root, "stop_and_search/2025-01/jan.csv", jan)
    put(root, "stop_and_search/2025-01/jan.csv.manifest.json", manifest_for(jan))
    feb = delivery_bytes("2025-02")
    put(root, "stop_and_search/2025-02/feb.csv.gz", gzip.compress(feb))
    put(root, "stop_and_search/2025-02/feb.csv.gz.manifest.json", manifest_for(feb, rows=1))
    put(root, "stop_and_search/2025-04/apr.csv", delivery_bytes("2025-04"))  # March is missing
    # A run killed after taking April but before validating it: the next run finishes it.
    lake = FolderLake(home.lake)
    take_deliveries(
        CONTRACT, "2025-04", FolderDropZone(root, settle_seconds=0), lake, Register(lake), "killed"
    )
    misfiled = delivery_bytes("2025-05")
    put(root, "stop_and_search/may.csv", misfiled)
    put(root, "stop_and_serch/2025-05/may.csv", b"Type,Date\nPerson search,2025-05-01\n")
    put(root, "stop_and_search/2018-12/old.csv", b"Type,Date\nPerson search,2018-12-01\n")

    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "Ran 3 contract-month(s) through Dagster." in out
    assert "stop_and_search/may.csv is not in the agreed layout" in out
    assert "stop_and_serch/2025-05/may.csv names no agreed contract" in out
    assert "stop_and_search/2018-12/old.csv is for 2018-12, before the agreement's first" in out
    assert "stop_and_search: no usable delivery for 2025-03" in out

    statuses = dict(_query(home, "SELECT source_path, status FROM governance.deliveries"))
    assert statuses == {
        "stop_and_search/2025-01/jan.csv": "published",
        "stop_and_search/2025-02/feb.csv.gz": "held",
        "stop_and_search/2025-04/apr.csv": "published",
        "stop_and_search/may.csv": "rejected",
        "stop_and_serch/2025-05/may.csv": "rejected",
        "stop_and_search/2018-12/old.csv": "rejected",
    }
    unfiled = _query(
        home,
        "SELECT d.source_path, d.landing_path, b.severity, b.rule FROM governance.deliveries d "
        "JOIN governance.breaches b USING (delivery_id) WHERE d.contract = 'unfiled' ORDER BY 1",
    )
    assert [(u[0], u[2], u[3]) for u in unfiled] == [
        ("stop_and_search/2018-12/old.csv", "critical", "file.period"),
        ("stop_and_search/may.csv", "critical", "file.layout"),
        ("stop_and_serch/2025-05/may.csv", "critical", "file.contract"),
    ]
    kept = home.lake / unfiled[1][1]
    assert kept.parent.name == "unfiled" and kept.read_bytes() == misfiled
    late = _query(
        home, "SELECT period FROM governance.breaches WHERE rule = 'delivery.late' ORDER BY 1"
    )
    assert late[0] == ("2025-03",)
    held = _query(home, "SELECT detail FROM governance.breaches WHERE rule = 'file.manifest'")
    assert "but the manifest says 1" in held[0][0]
    assert _query(home, "SELECT DISTINCT _period FROM curated.stop_and_search ORDER BY 1") == [
        ("2025-01",),
        ("2025-04",),
    ]

    # Once, not every run: a second run records nothing and changes nothing in the lake.
    before = sorted(str(p) for p in home.lake.rglob("*"))
    assert main(["run"]) == 0
    assert "Nothing new in the drop zone" in capsys.readouterr().out
    assert sorted(str(p) for p in home.lake.rglob("*")) == before

    # The force moves the misfiled file to where it belongs: now it is a delivery.
    (root / "stop_and_search/2025-05").mkdir()
    shutil.move(root / "stop_and_search/may.csv", root / "stop_and_search/2025-05/may.csv")
    assert main(["run"]) == 0
    capsys.readouterr()
    assert (
        "stop_and_search/2025-05/may.csv",
        "published",
    ) in _query(home, "SELECT source_path, status FROM governance.deliveries")


def test_settings_keep_an_s3_drop_zone_as_a_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASHARE_DROP_ZONE", "s3://drops/mps/")
    settings = load_settings()
    assert settings.dropzone == "s3://drops/mps" and settings.dropzone_is_s3
    settings.ensure_folders()
    assert not (tmp_path / "home" / "dropzone").exists()
    assert "datashare/contract" in (settings.dagster_home / "dagster.yaml").read_text()
    zone = open_dropzone(settings.dropzone)
    assert (zone.bucket, zone.prefix, str(zone)) == ("drops", "mps", "s3://drops/mps")


@settings(max_examples=30, deadline=None)
@given(
    content=st.binary(max_size=3000),
    chunk=st.integers(min_value=1, max_value=700),
    how=st.sampled_from(
        [
            "streamed",
            "kernel copy",
            "no kernel copy",
            "no copy_file_range",
            "short kernel copy",
            "no mmap",
        ]
    ),  # fmt: skip
)
def test_a_fetched_copy_and_its_hash_are_the_bytes_in_order_however_they_are_chunked(
    content, chunk, how
):
    """However a copy is made, the copy and its SHA-256 are those of the file's bytes in
    order: streamed (an S3 drop zone's way: each chunk hashed in a second thread while it
    is written, whatever the chunk size), copied by the kernel and hashed a window at a
    time where it lies (a folder's), or by a folder where the kernel or the system cannot copy,
    where the kernel's copy stops short (a 0 before the end, as some file systems give), or
    where the file system refuses to map the copy (some FUSE mounts)."""
    import pipelines.intake.dropzone as dropzone

    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.setattr(dropzone, "CHUNK", chunk)
        mp.setattr(dropzone, "HASH_WINDOW", mmap.ALLOCATIONGRANULARITY)  # several windows
        if how == "no kernel copy":  # a file system that cannot
            mp.setattr(os, "copy_file_range", _no_copy_file_range)
        elif how == "no copy_file_range":  # a system without it (macOS)
            mp.delattr(os, "copy_file_range")
        elif how == "short kernel copy":  # a few bytes, then "the end"
            mp.setattr(os, "copy_file_range", _short_copy_file_range(os.copy_file_range))
        elif how == "no mmap":
            mp.setattr(dropzone.mmap, "mmap", _no_mmap)
        root = Path(folder) / "dropzone"
        put(root, "stop_and_search/2025-01/jan.csv", content * 4)
        zone = FolderDropZone(root, settle_seconds=0)
        (drop,) = zone.deliveries("stop_and_search", "2025-01")
        dest = Path(folder) / "copy"
        fetch = dropzone.DropZone.fetch if how == "streamed" else FolderDropZone.fetch
        fetched = fetch(zone, drop, dest)
        assert dest.read_bytes() == content * 4
        assert fetched.sha256 == hashlib.sha256(content * 4).hexdigest()
        assert fetched.copy_unchanged(dest)


def _no_copy_file_range(*args, **kwargs):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def _short_copy_file_range(real):
    calls = []

    def short(source, dest, count, *args, **kwargs):
        calls.append(count)
        return real(source, dest, 7, *args, **kwargs) if len(calls) == 1 else 0

    return short


def _no_mmap(*args, **kwargs):
    raise OSError(errno.ENODEV, "No such device")


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_a_file_that_grows_while_the_kernel_copies_it_is_left_for_later(
    tmp_path, monkeypatch, kernel_copy
):
    """A folder's file is copied by the kernel (or, where it cannot, read here): one that
    changes meanwhile is not landed but left until it settles, both ways."""
    source = tmp_path / "dropzone" / "stop_and_search/2025-01/jan.csv"
    real, calls = os.copy_file_range, []

    def growing(*args, **kwargs):
        if not calls:
            with open(source, "ab") as fh:  # the force's copy goes on
                fh.write(b"more,rows\n")
        calls.append(args)
        if not kernel_copy:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(*args, **kwargs)

    engine = Engine(tmp_path)
    put(engine.root, "stop_and_search/2025-01/jan.csv", delivery_bytes("2025-01"))
    monkeypatch.setattr(os, "copy_file_range", growing)
    result = engine.take("2025-01")
    assert not result.received and not result.rejected
    assert "changed while it was being read" in result.waiting[0]
    assert engine.landing_files() == [] and engine.register.events() == []
