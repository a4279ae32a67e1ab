"""Each oversight mart a folder of its own (`oversight/<mart>/data.parquet`), and a home an
earlier version wrote (one file per mart, `oversight/<mart>.parquet`) moved to it in place.

The earlier version's home is made by that version's own code (`git archive` of the commit
before marts moved into folders), which computes every mart over a demo home's lake and
builds its warehouse. What a user would notice is checked: the first warehouse build or
`datashare run` of this version moves every mart, byte for byte, the warehouse shows the
same rows as before, nothing is recomputed, and until the move every reader sees each mart
exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.cli.main import main
from pipelines.lake.mart_files import mart_key, mart_keys, migrate_mart_files, previous_mart_key
from pipelines.lake.store import FolderLake, Lake, S3Lake, open_lake
from pipelines.oversight.mart_runner import MARTS
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import load_contracts
from tests.conftest import copy_home
from tests.previous_version import previous_version_code
from tests.s3_server import LAKE_BUCKET

ROOT = Path(__file__).resolve().parents[1]
# main just before the marts moved into folders: each mart one file, oversight/<mart>.parquet.
PREVIOUS_VERSION = "3bbe134"


# -- a home the previous version wrote --------------------------------------------------------


def _previous_version(scratch: Path) -> Path:
    """The previous version's code and contracts, from git (`git archive`)."""
    return previous_version_code(PREVIOUS_VERSION, scratch / "previous-version")


# Run by the previous version: its warehouse, every mart written where it wrote them, and
# the warehouse again so that its views read them.
PREVIOUS_MARTS = """
import sys
from pathlib import Path
from pipelines.lake.store import open_lake
from pipelines.oversight.mart_runner import write_marts
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts
lake, warehouse, contracts = open_lake(sys.argv[1]), Path(sys.argv[2]), load_contracts()
build_warehouse(lake, contracts, warehouse)
write_marts(warehouse, lake, contracts=contracts)
build_warehouse(lake, contracts, warehouse)
"""


@pytest.fixture(scope="module")
def previous_home(shared_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo home whose marts and warehouse the previous version wrote (never written in:
    each test copies it)."""
    scratch = tmp_path_factory.mktemp("previous-marts")
    home = copy_home(shared_demo, scratch / "home")
    shutil.rmtree(home / "lake" / "oversight")  # this version's marts: the old code's instead
    old = _previous_version(scratch)
    done = subprocess.run(
        [sys.executable, "-c", PREVIOUS_MARTS, str(home / "lake"), str(home / "warehouse.duckdb")],
        cwd=old, env={**os.environ, "PYTHONPATH": str(old)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # What the previous version left: one file per mart, straight under oversight/.
    assert sorted(p.name for p in (home / "lake" / "oversight").iterdir()) == sorted(
        f"{m}.parquet" for m in MARTS
    )
    return home


def _home(previous_home: Path, tmp_path: Path) -> Path:
    return copy_home(previous_home.parent, tmp_path / "home")


def _digests(lake: Path) -> dict[str, str]:
    """Each mart file under `lake/oversight`, by mart: the SHA-256 of its bytes."""
    found = {}
    for path in (lake / "oversight").rglob("*.parquet"):
        mart = path.stem if path.parent.name == "oversight" else path.parent.name
        found[mart] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _rows(warehouse: Path) -> dict[str, pa.Table]:
    """Every oversight view's rows, as an analyst's connection reads them."""
    with connect(warehouse) as con:
        found = "SELECT view_name FROM duckdb_views() WHERE schema_name = 'oversight'"
        views = [v for (v,) in con.execute(found).fetchall()]
        return {v: con.sql(f"SELECT * FROM oversight.{v}").to_arrow_table() for v in views}


def _same(a: pa.Table, b: pa.Table) -> bool:
    """The same columns and the same rows, in any order (NaN equal to NaN, as in DuckDB)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    con = duckdb.connect()
    con.register("a", a)
    con.register("b", b)
    differing = con.execute(
        "SELECT count(*) FROM ((SELECT * FROM a EXCEPT ALL SELECT * FROM b) "
        "UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM a))"
    ).fetchone()[0]
    return differing == 0


def _comments(warehouse: Path) -> set[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return set(con.execute(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            "WHERE schema_name = 'oversight'").fetchall())  # fmt: skip


def _datashare(home: Path, *args: str) -> subprocess.CompletedProcess:
    """`datashare --home HOME ARGS...` through the command's own entry point in this process
    (nothing the environment names besides): its exit status and output. A `datashare`
    process of its own cost two seconds of imports, and these tests look only at what it
    prints and returns."""
    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        for name in [k for k in os.environ if k.startswith(("DATASHARE_", "DAGSTER_"))]:
            patch.delenv(name)
        patch.setenv("DATASHARE_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))  # main sets it: undone after
        status = main(["--home", str(home), *args])
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


@pytest.mark.slow
def test_the_first_rebuild_moves_a_previous_versions_marts_into_folders(
    previous_home: Path, tmp_path: Path
):
    home = _home(previous_home, tmp_path)
    lake = home / "lake"
    before, rows_before = _digests(lake), _rows(home / "warehouse.duckdb")
    comments_before = _comments(home / "warehouse.duckdb")
    assert set(rows_before) == set(MARTS) and all(t.num_rows for t in rows_before.values())

    # Until it is moved, `datashare lake ddl` says which marts are not in their folders yet.
    ddl = _datashare(home, "lake", "ddl", "--engine", "trino")
    assert ddl.returncode == 0, ddl.stderr
    header = [line for line in ddl.stdout.splitlines() if line.startswith("--")]
    assert "datashare warehouse rebuild" in "\n".join(header)
    assert all(f"oversight.{m}" in "\n".join(header) for m in MARTS)

    done = _datashare(home, "warehouse", "rebuild")
    assert done.returncode == 0, done.stderr[-3000:]
    # Every mart in its folder, the same bytes; nothing left where the old version wrote.
    assert sorted(p.name for p in (lake / "oversight").iterdir()) == sorted(MARTS)
    assert all(
        [p.name for p in (lake / "oversight" / m).iterdir()] == ["data.parquet"] for m in MARTS
    )
    assert _digests(lake) == before
    # The warehouse shows the same rows and comments, now read from the folders.
    rows_after = _rows(home / "warehouse.duckdb")
    assert set(rows_after) == set(rows_before)
    for mart, table in rows_before.items():
        assert _same(rows_after[mart], table), mart
    assert _comments(home / "warehouse.duckdb") == comments_before
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        sql = con.execute(
            "SELECT sql FROM duckdb_views() WHERE schema_name = 'oversight' "
            "AND view_name = 'crime_trends'"
        ).fetchone()[0]
    assert "oversight/crime_trends/data.parquet" in sql

    ddl = _datashare(home, "lake", "ddl", "--engine", "trino")
    assert "datashare warehouse rebuild" not in ddl.stdout
    # Moved once: again, nothing to do.
    assert migrate_mart_files(FolderLake(lake)) == []


@pytest.mark.slow
def test_a_run_with_nothing_new_moves_them_and_recomputes_nothing(
    previous_home: Path, tmp_path: Path
):
    home = _home(previous_home, tmp_path)
    lake = home / "lake"
    before, rows_before = _digests(lake), _rows(home / "warehouse.duckdb")
    sources = sorted((lake / "governance" / "mart_sources").rglob("*.parquet"))

    done = _datashare(home, "run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not list((lake / "oversight").glob("*.parquet"))
    assert _digests(lake) == before
    # No mart was computed again (each computation records its sources).
    assert sorted((lake / "governance" / "mart_sources").rglob("*.parquet")) == sources
    rows_after = _rows(home / "warehouse.duckdb")
    assert set(rows_after) == set(MARTS)
    assert all(_same(rows_after[m], t) for m, t in rows_before.items())


@pytest.mark.slow
def test_an_s3_lake_the_previous_version_wrote_is_moved_too(
    previous_home: Path, s3, tmp_path: Path
):
    # The previous version's marts, as they were in its S3 lake; the warehouse's first build
    # by this version moves them, and its views read them.
    server, prefix = s3
    client = server.client()
    old = previous_home / "lake" / "oversight"
    for path in old.iterdir():
        client.upload_file(str(path), LAKE_BUCKET, f"{prefix}/oversight/{path.name}")
    lake = open_lake(f"s3://{LAKE_BUCKET}/{prefix}")
    assert isinstance(lake, S3Lake)
    assert mart_keys(lake) == {m: previous_mart_key(m) for m in sorted(MARTS)}

    build_warehouse(lake, load_contracts(), tmp_path / "warehouse.duckdb")
    listed = client.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"{prefix}/oversight/")
    keys = sorted(o["Key"].removeprefix(f"{prefix}/") for o in listed["Contents"])
    assert keys == sorted(mart_key(m) for m in MARTS)
    for mart in MARTS:
        body = client.get_object(Bucket=LAKE_BUCKET, Key=f"{prefix}/{mart_key(mart)}")["Body"]
        assert body.read() == (old / f"{mart}.parquet").read_bytes(), mart
    rows = _rows(tmp_path / "warehouse.duckdb")
    previous = _rows(previous_home / "warehouse.duckdb")
    assert set(rows) == set(MARTS)
    assert all(_same(rows[m], previous[m]) for m in MARTS)


# -- each mart once, whatever state the lake is in ----------------------------------------


@pytest.fixture(params=["folder", "s3"])
def lake(request, tmp_path) -> Lake:
    if request.param == "folder":
        return FolderLake(tmp_path / "lake")
    _, prefix = request.getfixturevalue("s3")
    return open_lake(f"s3://{LAKE_BUCKET}/{prefix}")


def test_a_move_keeps_a_file_already_there_and_removes_the_old_one(lake: Lake):
    lake.write_bytes("oversight/a.parquet", b"old a")
    lake.write_bytes("oversight/b.parquet", b"old b")
    lake.write_bytes("oversight/b/data.parquet", b"new b")  # written by this version since
    assert lake.move_once("oversight/a.parquet", "oversight/a/data.parquet") is True
    assert lake.move_once("oversight/b.parquet", "oversight/b/data.parquet") is False
    assert lake.move_once("oversight/a.parquet", "oversight/a/data.parquet") is False  # gone
    assert lake.glob("oversight/*.parquet") == []
    assert lake.read_bytes("oversight/a/data.parquet") == b"old a"
    assert lake.read_bytes("oversight/b/data.parquet") == b"new b"


STATES = st.sampled_from(["old", "folder", "both", "none"])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(MARTS)), STATES, max_size=len(MARTS)))
def test_every_mart_is_read_once_before_and_after_the_move(states: dict[str, str]):
    root = Path(tempfile.mkdtemp(prefix="mart-folders-"))  # one per example
    lake = FolderLake(root)
    try:
        for mart, state in states.items():
            if state in ("old", "both"):
                lake.write_bytes(previous_mart_key(mart), f"old {mart}".encode())
            if state in ("folder", "both"):
                lake.write_bytes(mart_key(mart), f"new {mart}".encode())
        present = {m for m, s in states.items() if s != "none"}
        # Before: each mart once, from its folder if it has one (the newer), else the old file.
        expected = {
            m: mart_key(m) if states[m] in ("folder", "both") else previous_mart_key(m)
            for m in sorted(present)
        }
        assert mart_keys(lake) == expected
        moved = migrate_mart_files(lake)
        assert sorted(moved) == sorted(m for m in present if states[m] == "old")
        # After: every mart in its folder, the newer bytes kept, no old file left.
        assert mart_keys(lake) == {m: mart_key(m) for m in sorted(present)}
        assert lake.glob("oversight/*.parquet") == []
        for mart in present:
            kept = "old" if states[mart] == "old" else "new"
            assert lake.read_bytes(mart_key(mart)) == f"{kept} {mart}".encode()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_readers_see_every_mart_exactly_once_while_another_process_moves_them(tmp_path: Path):
    # The move runs in a process of its own (a `datashare run` on another terminal) while
    # this one lists the marts as the warehouse build and the pending-run check do.
    lake = FolderLake(tmp_path / "lake")
    marts = [f"mart_{i:04d}" for i in range(1000)]
    for mart in marts:
        lake.write_bytes(previous_mart_key(mart), mart.encode())
    mover = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom pipelines.lake.mart_files import migrate_mart_files\n"
         "from pipelines.lake.store import FolderLake\n"
         "print(len(migrate_mart_files(FolderLake(sys.argv[1]))))", str(lake.root)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = 0
    while mover.poll() is None or seen == 0:
        assert sorted(mart_keys(lake)) == marts
        seen += 1
    assert mover.stdout.read().strip() == str(len(marts))
    assert mart_keys(lake) == {m: mart_key(m) for m in marts}
    print(f"{seen} listings during the move, each with every mart once")


def test_an_old_file_written_after_the_move_is_not_read_twice(tmp_path: Path):
    # A process of the previous version still running writes its old file after the move:
    # the folder's (this version's) is read, and the next move removes the stale one.
    lake = FolderLake(tmp_path / "lake")
    lake.write_bytes(mart_key("crime_trends"), b"new")
    lake.write_bytes(previous_mart_key("crime_trends"), b"stale")
    assert mart_keys(lake) == {"crime_trends": mart_key("crime_trends")}
    assert migrate_mart_files(lake) == []
    assert lake.glob("oversight/*.parquet") == []
