"""What the force's drop zone may hold that nobody agreed: broken siblings of a good file,
links out of the drop zone, pipes, files still being copied, compressed files that expand
without limit, and rows broken by the million. Each gets a clear message and a final
status; nothing is lost and nothing outside the drop zone is read."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import time
from collections.abc import Iterator
from contextlib import redirect_stdout

import duckdb
import pytest

from pipelines.cli.main import main
from pipelines.intake.delivery_formats import DecompressionLimits
from pipelines.intake.dropzone import FolderDropZone
from pipelines.lake.store import FolderLake
from pipelines.validation.row_validation import DeliveryRejected, validate_delivery
from tests.conftest import SharedGreatExpectations, drop, make_home
from tests.test_intake import CONTRACT, Engine, delivery_bytes, put

SECRET = "MARKER-9f3c-OUTSIDE-THE-DROP-ZONE"


def _query(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def _statuses(settings, period: str | None = None) -> dict[str, str]:
    where = f"WHERE period = '{period}'" if period else ""
    return dict(_query(settings, f"SELECT source_path, status FROM governance.deliveries {where}"))


def _everything_written(settings) -> bytes:
    """Every byte the pipeline wrote outside the drop zone (lake, warehouse, Dagster)."""
    out = bytearray()
    for path in settings.home.rglob("*"):
        if settings.dropzone in path.parents or path.is_symlink() or not path.is_file():
            continue
        out += path.read_bytes()
    return bytes(out)


# -- a good delivery is never held back by a broken sibling ------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper
def test_a_good_file_beside_broken_ones_is_published_and_every_file_ends_final(
    home, real_stop_and_search, tmp_path, capsys
):
    month = "stop_and_search/2022-06"
    drop(home, CONTRACT, "2022-06", real_stop_and_search, "a.csv")
    drop(home, CONTRACT, "2022-06", real_stop_and_search, "b.csv")  # the same bytes
    cut = gzip.compress(real_stop_and_search.read_bytes())[:20_000]
    put(home.dropzone, f"{month}/c.csv.gz", cut)  # an upload cut short
    put(home.dropzone, f"{month}/d.csv", b"")

    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "rows published:     16,332" in out
    assert _statuses(home) == {
        f"{month}/a.csv": "published",
        f"{month}/b.csv": "duplicate",
        f"{month}/c.csv.gz": "rejected",
        f"{month}/d.csv": "rejected",
    }
    assert _query(home, "SELECT count(*) FROM curated.stop_and_search") == [(16_332,)]
    reasons = dict(_query(home, "SELECT source_path, reason FROM governance.deliveries"))
    assert "truncated" in reasons[f"{month}/c.csv.gz"]
    assert "send it again" in reasons[f"{month}/c.csv.gz"]

    # Two new readable files for the month at once: the newer is published, the older one
    # can never be and says so; the month published before is superseded too.
    lines = real_stop_and_search.read_text(encoding="utf-8").splitlines(keepends=True)
    first, second = tmp_path / "e.csv", tmp_path / "f.csv"
    first.write_text("".join(lines[:201]), encoding="utf-8")
    second.write_text("".join(lines[:101]), encoding="utf-8")
    drop(home, CONTRACT, "2022-06", first)
    drop(home, CONTRACT, "2022-06", second)
    os.utime(home.dropzone / month / "f.csv", ns=(time.time_ns() + 10**9,) * 2)  # sent later
    assert main(["run"]) == 0
    statuses = _statuses(home)
    assert statuses[f"{month}/f.csv"] == "published"
    assert statuses[f"{month}/e.csv"] == "superseded"
    assert statuses[f"{month}/a.csv"] == "superseded"
    assert _query(home, "SELECT count(*) FROM curated.stop_and_search") == [(100,)]
    unfinished = _query(
        home, "SELECT count(*) FROM governance.deliveries WHERE status IN ('received', 'validated')"
    )
    assert unfinished == [(0,)]
    reasons = dict(_query(home, "SELECT source_path, reason FROM governance.deliveries"))
    assert "Not published" in reasons[f"{month}/e.csv"] and "f.csv" in reasons[f"{month}/e.csv"]


# -- links, pipes, hard links and decompression bombs: one home, one run -------------------
# The links' test and the decompression bomb's read one home: its drop zone holds what each
# sends (for stop and search: the links, a pipe and a good file for 2025-01 to 2025-05, and a
# linked contract; the bomb and a good file for 2025-06 and 2025-07), taken by one run, then
# a second run. A run in process is about 2.5 s of CPU, nearly all of it the same however
# many files it takes (each test ran its own: 6.2 s of CPU for the two, 3.9 s now). Each
# test asserts on what is not the other's: the same statuses, reasons and breaches as when
# it ran alone, and a refusal or a bomb let through still fails it (a hard link allowed and
# the ratio limit turned off, each tried: both tests failed).
BOMB_MONTH, BESIDE_THE_BOMB = "2025-06", "2025-07"


@dataclasses.dataclass(frozen=True)
class HostileHome:
    settings: object  # pipelines.home.settings.Settings
    first_run: str  # what the run that took them printed
    second_run: str  # and the run after it
    bomb: bytes


def _links_to_outside(home, outside) -> None:
    """The links' drop zone: a link to a file outside, a linked period folder, a linked
    contract, a pipe, a hard link to the file outside, and one good file (2025-05)."""
    outside.mkdir()
    # What an attacker would point at: a file the pipeline can read, shaped like a delivery.
    target = outside / "secret.csv"
    target.write_bytes(delivery_bytes("2025-01").replace(b"Person search", SECRET.encode(), 3))
    (outside / "2025-02").mkdir()
    (outside / "2025-02" / "feb.csv").write_bytes(target.read_bytes())
    (outside / "street").mkdir()
    (outside / "street" / "2025-01").mkdir()
    (outside / "street" / "2025-01" / "x.csv").write_bytes(target.read_bytes())

    zone = home.dropzone / CONTRACT
    (zone / "2025-01").mkdir(parents=True)
    (zone / "2025-01" / "jan.csv").symlink_to(target)  # a link to a file
    (zone / "2025-02").symlink_to(outside / "2025-02")  # a linked period folder
    (home.dropzone / "street_crime").symlink_to(outside / "street")  # a linked contract
    (zone / "2025-03").mkdir()
    os.mkfifo(zone / "2025-03" / "mar.csv")  # a pipe: reading it would wait for ever
    (zone / "2025-04").mkdir()
    os.link(target, zone / "2025-04" / "apr.csv")  # a hard link to the file outside
    put(home.dropzone, f"{CONTRACT}/2025-05/may.csv", delivery_bytes("2025-05"))


def _a_bomb_beside_a_good_file(home) -> bytes:
    """A gzip under a megabyte that expands to 72 MiB (BOMB_MONTH), and a good gzipped file
    (BESIDE_THE_BOMB): the bomb's bytes."""
    header = delivery_bytes(BOMB_MONTH).split(b"\n", 1)[0]
    bomb = gzip.compress(header + b"\n" + b"a,b,c\n" * (12 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20  # under a megabyte that expands to 72 MiB
    put(home.dropzone, f"{CONTRACT}/{BOMB_MONTH}/jun.csv.gz", bomb)
    put(
        home.dropzone,
        f"{CONTRACT}/{BESIDE_THE_BOMB}/jul.csv.gz",
        gzip.compress(delivery_bytes(BESIDE_THE_BOMB)),
    )
    return bomb


@pytest.fixture(scope="module")
def hostile_home(
    tmp_path_factory: pytest.TempPathFactory, ge_helper_process: SharedGreatExpectations
) -> Iterator[HostileHome]:
    """The links' and the bomb's home (above), run twice with `datashare run`, in process
    and with the worker's great-expectations helper: read only by the tests."""
    folder = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as patch:
        home = make_home(folder, patch)
        _links_to_outside(home, folder / "outside")
        bomb = _a_bomb_beside_a_good_file(home)
        runs = []
        with ge_helper_process.installed():
            for _ in range(2):
                out = io.StringIO()
                with redirect_stdout(out):
                    assert main(["run"]) == 0
                runs.append(out.getvalue())
        yield HostileHome(home, runs[0], runs[1], bomb)


def _sent_for(rows: dict[str, str], months: tuple[str, ...], *, but: bool = False):
    """The entries of `rows` (source path -> value) sent for one of `months`; with `but`,
    every other entry (the linked folders' too, which name no month of their own)."""
    return {
        path: value
        for path, value in rows.items()
        if any(f"/{month}/" in f"{path}/" for month in months) != but
    }


@pytest.mark.slow
def test_links_pipes_and_hard_links_are_refused_and_nothing_is_read_through_them(
    hostile_home: HostileHome,
):
    home, out = hostile_home.settings, hostile_home.first_run
    bombed = (BOMB_MONTH, BESIDE_THE_BOMB)  # the other test's months
    statuses = _sent_for(_statuses(home), bombed, but=True)
    assert statuses.pop(f"{CONTRACT}/2025-05/may.csv") == "published"
    assert statuses == {
        f"{CONTRACT}/2025-01/jan.csv": "rejected",
        f"{CONTRACT}/2025-02": "rejected",
        "street_crime": "rejected",
        f"{CONTRACT}/2025-03/mar.csv": "rejected",
        f"{CONTRACT}/2025-04/apr.csv": "rejected",
    }
    reasons = dict(_query(home, "SELECT source_path, reason FROM governance.deliveries"))
    reasons = _sent_for(reasons, bombed, but=True)
    assert "is a symbolic link (to a file" in reasons[f"{CONTRACT}/2025-01/jan.csv"]
    assert "is a symbolic link (to a folder" in reasons["street_crime"]
    assert "not a regular file" in reasons[f"{CONTRACT}/2025-03/mar.csv"]
    assert "hard link" in reasons[f"{CONTRACT}/2025-04/apr.csv"]
    assert all("nothing was read" in r.lower() for p, r in reasons.items() if "may" not in p)
    rules = _query(
        home,
        "SELECT rule, severity, count(*) FROM governance.breaches WHERE rule LIKE 'file.%' "
        f"AND period IS DISTINCT FROM '{BOMB_MONTH}' GROUP BY ALL ORDER BY 1",
    )
    assert rules == [
        ("file.hard_link", "critical", 1),
        ("file.link", "critical", 3),
        ("file.not_regular", "critical", 1),
    ]
    assert "rows published:" in out
    # Not one byte of what the links point at reached the lake, the warehouse or Dagster.
    assert SECRET.encode() not in _everything_written(home)
    assert (home.lake / "landing").exists()
    assert not list((home.lake / "landing").rglob("*secret*"))

    # Recorded once: a second run does not raise the same refusals again.
    assert "Nothing new in the drop zone" in hostile_home.second_run


def test_a_file_swapped_for_a_link_after_it_was_listed_is_refused_unread(tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_bytes(delivery_bytes("2025-01").replace(b"Person search", SECRET.encode(), 3))

    class Swapping(FolderDropZone):
        def deliveries(self, contract, period):
            listed = super().deliveries(contract, period)
            for f in listed:  # between listing and reading, the file becomes a link
                path = self.root / f.relative
                path.unlink()
                path.symlink_to(outside)
            return listed

    engine = Engine(tmp_path, zone=Swapping(tmp_path / "dropzone", settle_seconds=0))
    put(engine.root, f"{CONTRACT}/2025-01/jan.csv", delivery_bytes("2025-01"))
    result = engine.take("2025-01")
    (refused,) = result.rejected
    assert "symbolic link" in refused.reason and refused.landing_path is None
    assert engine.landing_files() == []
    assert engine.status("2025-01") == {f"{CONTRACT}/2025-01/jan.csv": "rejected"}


# -- files still being copied ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper
def test_a_file_is_taken_only_once_it_has_been_unchanged_for_the_settle_time(
    home, monkeypatch, capsys
):
    # One second: the run lists the drop zone within a fifth of a second of the write (0.02 s
    # in a warm process, 0.18 s in a cold one at a load of 26 on 2 cores), and the test waits
    # out only what is left of it.
    monkeypatch.setenv("DATASHARE_SETTLE_SECONDS", "1")
    put(home.dropzone, f"{CONTRACT}/2025-01/jan.csv", delivery_bytes("2025-01"))
    written = time.monotonic()
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "jan.csv was still changing" in out and "unchanged for 1 s" in out
    assert not _statuses(home)  # nothing taken, nothing rejected: it is not the force's fault

    # Past the settle time since the file was written (the run above took part of it).
    time.sleep(max(0.0, 1.2 - (time.monotonic() - written)))
    assert main(["run"]) == 0
    assert _statuses(home) == {f"{CONTRACT}/2025-01/jan.csv": "published"}
    # `--settle 0` takes what is there now, for a file known to be whole.
    put(home.dropzone, f"{CONTRACT}/2025-02/feb.csv", delivery_bytes("2025-02"))
    assert main(["run", "--settle", "0"]) == 0
    assert _statuses(home, "2025-02") == {f"{CONTRACT}/2025-02/feb.csv": "published"}


def test_a_file_that_changes_while_it_is_read_is_left_for_later_not_rejected(tmp_path, monkeypatch):
    engine = Engine(tmp_path, zone=FolderDropZone(tmp_path / "dropzone", settle_seconds=0))
    put(engine.root, f"{CONTRACT}/2025-01/jan.csv", delivery_bytes("2025-01"))
    source = engine.root / f"{CONTRACT}/2025-01/jan.csv"
    real, calls = os.copy_file_range, []

    # The folder's fetch has the kernel copy the file (falling back to reads where it
    # cannot): the file grows once the copy has begun, whichever way it is copied.
    def appending(*args, **kwargs):
        if not calls:
            with open(source, "ab") as fh:  # the copy goes on
                fh.write(b"more,rows\n")
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "copy_file_range", appending)
    result = engine.take("2025-01")
    assert calls  # (the copy was the kernel's, as the fetch makes it)
    assert not result.received and not result.rejected
    assert "changed while it was being read" in result.waiting[0]
    assert engine.landing_files() == [] and engine.register.events() == []


# -- compressed files that expand without limit ------------------------------------------


@pytest.mark.slow
def test_a_decompression_bomb_is_rejected_with_its_bytes_kept(hostile_home: HostileHome):
    home = hostile_home.settings
    bomb, good = f"{CONTRACT}/{BOMB_MONTH}/jun.csv.gz", f"{CONTRACT}/{BESIDE_THE_BOMB}/jul.csv.gz"
    assert _sent_for(_statuses(home), (BOMB_MONTH, BESIDE_THE_BOMB)) == {
        bomb: "rejected",
        good: "published",
    }
    ((reason, landing),) = _query(
        home,
        f"SELECT reason, landing_path FROM governance.deliveries WHERE period = '{BOMB_MONTH}'",
    )
    assert "100 times its compressed size" in reason and "decompression bomb" in reason
    assert (home.lake / landing).read_bytes() == hostile_home.bomb
    breaches = _query(
        home,
        "SELECT rule, severity FROM governance.breaches "
        f"WHERE period = '{BOMB_MONTH}' AND rule LIKE 'file.%'",
    )
    assert breaches == [("file.decompressed_size", "critical")]


def test_the_contract_sets_the_decompression_limits(tmp_path, stop_and_search):
    agreed = DecompressionLimits.agreed({"maxDecompressedBytes": 1000, "maxCompressionRatio": 3})
    assert (agreed.max_bytes, agreed.max_ratio) == (1000, 3.0)
    assert DecompressionLimits.agreed(None) == DecompressionLimits()
    strict = dataclasses.replace(
        stop_and_search, file_format={**stop_and_search.file_format, "maxDecompressedBytes": 1000}
    )
    landed = tmp_path / "d.csv.gz"
    landed.write_bytes(gzip.compress(delivery_bytes("2025-01")))
    with pytest.raises(DeliveryRejected) as rejected:
        validate_delivery(strict, landed, "2025-01", "d" * 64, FolderLake(tmp_path / "lake"))
    assert rejected.value.rule == "file.decompressed_size"
    assert "the agreed limit of 1,000 bytes" in rejected.value.reason
    # The same file under the default limits is read as usual.
    outcome = validate_delivery(
        stop_and_search, landed, "2025-01", "d" * 64, FolderLake(tmp_path / "lake2")
    )
    assert outcome.rows_curated == 30


# -- broken rows, by the thousand ---------------------------------------------------------


def test_broken_rows_are_quarantined_in_batches_and_every_row_keeps_its_number(
    tmp_path, stop_and_search, monkeypatch
):
    import pipelines.validation.row_validation as rv

    # Small blocks and flushes, so broken rows straddle many batches and flushes.
    monkeypatch.setattr(rv, "READ_BLOCK_BYTES", 16 << 10)
    monkeypatch.setattr(rv, "BATCH_BYTES", 64 << 10)
    monkeypatch.setattr(rv, "BROKEN_FLUSH_ROWS", 97)
    good = delivery_bytes("2025-01", rows=3000).decode().splitlines(keepends=True)
    header, rows = good[0], good[1:]
    lines, broken = [header], []
    for i, row in enumerate(rows, start=1):
        if i % 7 in (0, 3) or 1200 <= i < 1900:  # scattered, and one long run
            lines.append("broken," + row.replace(",", ";"))
            broken.append(i)
        else:
            lines.append(row)
    landed = tmp_path / "d.csv"
    landed.write_text("".join(lines), encoding="utf-8")
    lake = FolderLake(tmp_path / "lake")
    outcome = validate_delivery(stop_and_search, landed, "2025-01", "e" * 64, lake)

    assert outcome.rows_delivered == 3000
    assert outcome.rows_quarantined == len(broken)
    assert outcome.rows_curated == 3000 - len(broken)
    with duckdb.connect() as con:
        curated = con.execute(
            "SELECT _source_row FROM read_parquet(?)",
            [str(lake.path(lake.staging_path(CONTRACT, "2025-01", "e" * 64)))],
        ).fetchall()
        quarantined = con.execute(
            "SELECT _source_row, record FROM read_parquet(?) ORDER BY 1",
            [str(lake.path(lake.quarantine_path(CONTRACT, "2025-01", "e" * 64)))],
        ).fetchall()
    assert sorted(r for (r,) in curated) + [r for r, _ in quarantined] != []
    assert sorted([r for (r,) in curated] + [r for r, _ in quarantined]) == list(range(1, 3001))
    assert [r for r, _ in quarantined] == broken
    assert json.loads(quarantined[0][1])["raw_line"].startswith("broken,")
    (shape,) = [b for b in outcome.breaches if b.rule == "file.row_shape"]
    assert shape.failing_rows == len(broken) and shape.sample_rows == broken[:20]


def test_a_file_that_is_mostly_broken_rows_is_rejected_early_not_quarantined_for_hours(
    tmp_path, stop_and_search, monkeypatch
):
    import pipelines.validation.row_validation as rv

    monkeypatch.setattr(rv, "BROKEN_REJECT_ROWS", 200)
    header = delivery_bytes("2025-01").split(b"\n", 1)[0]
    landed = tmp_path / "d.csv"
    landed.write_bytes(header + b"\n" + b"a;b;c\n" * 5000)  # another export's delimiter
    with pytest.raises(DeliveryRejected) as rejected:
        validate_delivery(stop_and_search, landed, "2025-01", "f" * 64, FolderLake(tmp_path / "l"))
    assert rejected.value.rule == "file.row_shape"
    assert "Most rows do not have the header's 15 fields" in rejected.value.reason
    assert "(200 of the first 200 rows)" in rejected.value.reason
