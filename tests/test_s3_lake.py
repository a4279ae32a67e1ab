"""The lake on S3 (`DATASHARE_LAKE=s3://bucket/prefix`) against a real S3 server (SeaweedFS
on 127.0.0.1), with the same code as a folder lake."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

import pipelines.lake.register as register_module
from pipelines.cli.main import main
from pipelines.demo.synthetic import write_delivery
from pipelines.home.settings import Settings, load_settings
from pipelines.lake.register import DELIVERY_EVENT_SCHEMA, DeliveryEvent, Register
from pipelines.lake.retention import enforce_retention
from pipelines.lake.store import FolderLake, Lake, S3Lake, open_lake
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import load_contracts
from tests.conftest import SharedGreatExpectations, aws_env, drop, make_home
from tests.s3_server import LAKE_BUCKET

REPO_ROOT = Path(__file__).resolve().parents[1]

# Each runs the whole pipeline: `pytest -m 'not slow'` leaves them out. Runs in this process
# use the worker's great-expectations helper (tests/conftest.py), not one each.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ge_helper")]

ROW = pa.schema([("n", pa.int64())])


def _keys(client, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=LAKE_BUCKET, Prefix=f"{prefix}/"
    ):
        keys += [o["Key"].removeprefix(f"{prefix}/") for o in page.get("Contents", [])]
    return sorted(keys)


def _query(settings, sql: str) -> list[tuple]:
    with connect(settings.warehouse) as con:
        return con.execute(sql).fetchall()


@dataclass(frozen=True)
class JuneOnS3:
    """A home whose `datashare run` took the real June 2022 file and a PDF sent as July with
    the lake on S3, made once for the module: never written to (`_copy_of` gives a test a
    copy to go on from)."""

    settings: Settings
    prefix: str  # the lake is s3://lake/<prefix>
    out: str  # what the run printed
    pdf: bytes  # the bytes sent as July


def _datashare(home: Settings, *args: str) -> subprocess.Popen:
    """`datashare` started as the program on `home`, in a process group of its own (for the
    kill), inheriting this process's environment (the lake on S3, the AWS settings)."""
    env = {**os.environ, "DATASHARE_HOME": str(home.home), "DAGSTER_HOME": str(home.dagster_home)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli.main", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def _june_on_s3(
    seaweed, tmp_path_factory, real_stop_and_search, ge_helper_process: SharedGreatExpectations
) -> JuneOnS3:
    # The run costs seconds and three tests start from it; a copy of its lake costs a fraction.
    folder = tmp_path_factory.mktemp("june-on-s3")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch, ge_helper_process.installed():
        aws_env(patch, seaweed)
        (make_home(folder, patch).home / "lake").rmdir()  # made empty before the lake moved
        patch.setenv("DATASHARE_LAKE", f"s3://{LAKE_BUCKET}/{prefix}")
        settings = load_settings()
        settings.ensure_folders()
        drop(settings, "stop_and_search", "2022-06", real_stop_and_search)
        pdf = settings.dropzone / "stop_and_search" / "2022-07" / "july.csv"
        pdf.parent.mkdir(parents=True)
        pdf.write_bytes(b"%PDF-1.7\n" + bytes(range(256)))
        with redirect_stdout(io.StringIO()) as out:
            code = main(["run"])
        assert code == 0, out.getvalue()
    return JuneOnS3(settings, prefix, out.getvalue(), pdf.read_bytes())


def _copy_of(
    june: JuneOnS3, s3, tmp_path: Path, monkeypatch, rebuild: bool = True
) -> tuple[Settings, object, str]:
    """This test's own copy of the module's June home: its folder, and its lake under the
    fresh prefix `s3` gives (copied object by object in the server), the warehouse rebuilt
    over that copy (unless `rebuild` is false: the copied warehouse still reads the module's
    lake, for a test that builds its own). Returns (settings, client, prefix)."""
    server, prefix = s3
    client = server.client()
    shutil.copytree(june.settings.home, tmp_path / "home", symlinks=True)
    make_home(tmp_path, monkeypatch)
    monkeypatch.setenv("DATASHARE_LAKE", f"s3://{LAKE_BUCKET}/{prefix}")

    def copy(key: str) -> None:
        source = {"Bucket": LAKE_BUCKET, "Key": f"{june.prefix}/{key}"}
        client.copy_object(CopySource=source, Bucket=LAKE_BUCKET, Key=f"{prefix}/{key}")

    # Some fifty objects, each a request the server answers while the next is sent.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(copy, _keys(client, june.prefix)))
    settings = load_settings()
    settings.ensure_folders()
    if rebuild:
        with redirect_stdout(io.StringIO()) as out:
            code = main(["warehouse", "rebuild"])
        assert code == 0, out.getvalue()
    return settings, client, prefix


def test_run_puts_the_lake_on_s3_and_the_warehouse_reads_it(
    _june_on_s3, s3, real_stop_and_search, tmp_path, monkeypatch, capsys
):
    # What the run left, looked at in the module's home (read only) ...
    settings, prefix, out = _june_on_s3.settings, _june_on_s3.prefix, _june_on_s3.out
    client = s3[0].client()
    assert "rows published:     16,332" in out

    keys = _keys(client, prefix)
    assert "curated/contract=stop_and_search/period=2022-06/data.parquet" in keys
    areas = {k.split("/")[0] for k in keys}
    assert {"landing", "quarantine", "quarantine_masked", "governance", "docs"} <= areas
    assert not [k for k in keys if k.startswith("staging/")]  # published: nothing left staged
    # No delivery data in the local home (besides the drop zone, here a folder): only the
    # catalog and Dagster's own records.
    assert not (settings.home / "lake").exists()
    local = [
        p
        for p in settings.home.rglob("*")
        if p.suffix in (".csv", ".parquet") and settings.dropzone not in p.parents
    ]
    assert local == []

    # The analysts' catalog reads the S3 lake; it says where from.
    assert _query(settings, "SELECT lake FROM governance.catalog") == [
        (f"s3://{LAKE_BUCKET}/{prefix}",)
    ]
    assert _query(settings, "SELECT count(*) FROM curated.stop_and_search") == [(16_332,)]
    with connect(settings.warehouse) as con:  # as the README shows an analyst
        assert con.sql("SELECT count(*) FROM curated.stop_and_search").fetchall() == [(16_332,)]
    statuses = dict(_query(settings, "SELECT period, status FROM governance.deliveries"))
    assert statuses == {"2022-06": "published", "2022-07": "rejected"}
    # The unreadable file is kept, byte for byte, in the landing prefix.
    (landing,) = _query(
        settings, "SELECT landing_path FROM governance.deliveries WHERE period = '2022-07'"
    )[0]
    kept = client.get_object(Bucket=LAKE_BUCKET, Key=f"{prefix}/{landing}")["Body"].read()
    assert landing.startswith("landing/") and kept == _june_on_s3.pdf

    # ... then in this test's own copy of it: a restated month replaces the old one whole.
    # The copy's warehouse is left reading the module's lake: the run below must build the
    # catalog of the lake it runs on (a catalog of another lake is not current), or the
    # count of the restated month below reads June's 16,332 rows from the module's lake.
    settings, client, prefix = _copy_of(_june_on_s3, s3, tmp_path, monkeypatch, rebuild=False)
    restated = tmp_path / "restated.csv"
    lines = real_stop_and_search.read_text(encoding="utf-8").splitlines(keepends=True)
    restated.write_text("".join(lines[:101]), encoding="utf-8")
    drop(settings, "stop_and_search", "2022-06", restated)
    assert main(["run"]) == 0
    assert _query(settings, "SELECT count(*) FROM curated.stop_and_search") == [(100,)]
    statuses = dict(
        _query(
            settings,
            "SELECT source_path, status FROM governance.deliveries WHERE period = '2022-06'",
        )
    )
    assert statuses["stop_and_search/2022-06/restated.csv"] == "published"
    assert statuses[f"stop_and_search/2022-06/{real_stop_and_search.name}"] == "superseded"

    # Nothing new: nothing written.
    before = _keys(client, prefix)
    assert main(["run"]) == 0
    assert "Nothing new in the drop zone" in capsys.readouterr().out
    assert _keys(client, prefix) == before


def test_warehouse_rebuild_report_and_retention_work_from_an_s3_lake(
    _june_on_s3, s3, tmp_path, monkeypatch, capsys
):
    # The copy's warehouse is removed unread: the rebuild below is the one under test.
    settings, client, prefix = _copy_of(_june_on_s3, s3, tmp_path, monkeypatch, rebuild=False)
    settings.warehouse.unlink()
    assert main(["warehouse", "rebuild"]) == 0
    assert _query(settings, "SELECT count(*) FROM curated.stop_and_search") == [(16_332,)]
    marts = _query(settings, "SELECT count(*) FROM oversight.stop_search_disproportionality")
    assert marts[0][0] > 0
    assert any(k.startswith("oversight/") for k in _keys(client, prefix))

    lake = open_lake(settings.lake)
    erased = enforce_retention(lake, load_contracts(), apply=True, by="dpo", today=date(2028, 7, 1))
    assert {e.area for e in erased} >= {"landing", "curated"}
    left = _keys(client, prefix)
    assert not [e.path for e in erased if e.path in left]
    assert main(["warehouse", "rebuild"]) == 0
    assert _query(settings, "SELECT count(*) FROM curated.stop_and_search") == [(0,)]
    assert _query(settings, "SELECT count(*), min(erased_by) FROM governance.erasures") == [
        (len(erased), "dpo")
    ]


FEBRUARY_ROWS = 5_000  # the month the run is killed in


def test_a_killed_run_with_the_lake_on_s3_leaves_a_whole_month_and_the_next_run_finishes(
    _june_on_s3, s3, stop_and_search, tmp_path, monkeypatch
):
    # After the module's run that published June 2022 (a copy of it: a month already whole
    # in the lake, which the killed run must leave so).
    settings, client, prefix = _copy_of(_june_on_s3, s3, tmp_path, monkeypatch)
    february = settings.dropzone / "stop_and_search" / "2024-02" / "d.csv"
    write_delivery(stop_and_search, "2024-02", february, rows=FEBRUARY_ROWS, seed=2, defect_rate=0)

    # Killed (SIGKILL, as a machine dies) the moment February's passing rows are staged in
    # the lake, or at the latest once they are curated: mid-publish, where a half month
    # could be left, rather than after a fixed sleep that may land anywhere.
    process = _datashare(settings, "run")  # inherits DATASHARE_LAKE and the AWS settings
    publishing = ("staging/contract=stop_and_search/period=2024-02/",
                  "curated/contract=stop_and_search/period=2024-02/")  # fmt: skip
    deadline = time.monotonic() + 300
    # Asked of the server's filer (tests/s3_server.py `has_objects`): a plain GET every
    # 50 ms, where a signed S3 listing cost ten times the CPU through the run's whole start.
    server = s3[0]
    while not any(server.has_objects(LAKE_BUCKET, f"{prefix}/{folder}") for folder in publishing):
        assert process.poll() is None, "the run ended before February was staged"
        assert time.monotonic() < deadline, "February was never staged"
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    months = dict(
        _query(settings, "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1")
    )
    assert months["2022-06"] == 16_332
    assert months.get("2024-02", 0) in (0, FEBRUARY_ROWS)  # absent or whole, never half

    with redirect_stdout(io.StringIO()) as out:
        assert main(["run"]) == 0, out.getvalue()
    months = dict(
        _query(settings, "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1")
    )
    assert months == {"2022-06": 16_332, "2024-02": FEBRUARY_ROWS}
    assert not [k for k in _keys(client, prefix) if k.startswith("staging/")]


def test_the_standard_aws_retry_settings_reach_the_lakes_client(monkeypatch):
    """Five retries by default; `AWS_MAX_ATTEMPTS` when set, as every AWS tool reads it: a
    store that is down is given up on after that many attempts."""
    from botocore.exceptions import EndpointConnectionError

    from pipelines.lake.object_store import s3_client

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert s3_client().meta.config.retries == {"mode": "standard", "total_max_attempts": 6}

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    client = s3_client()
    attempts = []
    client.meta.events.register("before-send.s3.*", lambda **_: attempts.append(1))
    with pytest.raises(EndpointConnectionError):
        client.list_objects_v2(Bucket=LAKE_BUCKET)
    assert len(attempts) == 2
    assert client.meta.config.retries["mode"] == "standard"


# -- the Lake interface, the same on both kinds ----------------------------------------------


@pytest.fixture(params=["folder", "s3"])
def lake(request, tmp_path) -> Lake:
    if request.param == "folder":
        return FolderLake(tmp_path / "lake")
    _, prefix = request.getfixturevalue("s3")
    found = open_lake(f"s3://{LAKE_BUCKET}/{prefix}")
    assert isinstance(found, S3Lake)
    return found


def _table(n: int) -> pa.Table:
    return pa.Table.from_pylist([{"n": n}], ROW)


def test_lake_reads_what_it_wrote_and_lists_only_finished_files(lake: Lake):
    lake.write_table("governance/x/contract=a/1.parquet", _table(1))
    lake.write_table("governance/x/contract=b/2.parquet", _table(2))
    lake.write_bytes("governance/x/contract=b/.partial.parquet", b"not yet")
    lake.write_bytes("governance/x/contract=b/notes.txt", b"hello")
    keys = lake.glob("governance/x/contract=*/*.parquet")
    assert keys == ["governance/x/contract=a/1.parquet", "governance/x/contract=b/2.parquet"]
    assert lake.read_all(keys, ROW).column("n").to_pylist() == [1, 2]
    assert lake.read_text("governance/x/contract=b/notes.txt") == "hello"
    assert lake.exists("governance/x/contract=b/notes.txt")
    assert not lake.exists("governance/x/contract=c/3.parquet")
    assert lake.glob("nothing/here/*.parquet") == []
    assert lake.glob_below("governance/x/contract=*") == [
        "governance/x/contract=a/1.parquet",
        "governance/x/contract=b/2.parquet",
        "governance/x/contract=b/notes.txt",
    ]


def test_a_failed_write_leaves_the_previous_file_whole(lake: Lake):
    key = "curated/contract=a/period=2024-01/data.parquet"
    lake.write_table(key, _table(1))
    with pytest.raises(RuntimeError), lake.writing(key) as tmp:
        tmp.write_bytes(b"PAR1 half a file")
        raise RuntimeError("killed mid-write")
    assert lake.read_table(key).column("n").to_pylist() == [1]


def test_write_once_lets_exactly_one_of_many_racing_writers_win(lake: Lake):
    key = "governance/deliveries/contract=a/received-abc.parquet"
    results: list[bool] = []
    start = threading.Barrier(8)

    def write(n: int) -> None:
        start.wait()
        results.append(lake.write_table_once(key, _table(n)))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert len(lake.read_table(key)) == 1


def test_promote_swaps_a_staged_month_in_and_clears_staging(lake: Lake):
    staged = lake.staging_path("a", "2024-01", "d2")
    target = lake.curated_path("a", "2024-01")
    lake.write_table(target, _table(1))
    lake.write_table(staged, _table(2))
    lake.promote(staged, target)
    assert lake.read_table(target).column("n").to_pylist() == [2]
    assert not lake.exists(staged)


def test_a_rewritten_folder_keeps_only_the_new_files(lake: Lake):
    folder = lake.docs_dir("a", "2024-01", "d1")
    with lake.writing_folder(folder) as site:
        (site / "index.html").write_text("one")
        (site / "old").mkdir()
        (site / "old" / "page.html").write_text("old")
    assert lake.glob_below(folder) == [f"{folder}/index.html", f"{folder}/old/page.html"]
    with lake.writing_folder(folder) as site:
        (site / "index.html").write_text("two")
    assert lake.glob_below(folder) == [f"{folder}/index.html"]
    assert lake.read_text(f"{folder}/index.html") == "two"
    with lake.local_copy(f"{folder}/index.html") as copy:
        assert Path(copy).read_text() == "two"
    lake.delete(f"{folder}/index.html")
    assert lake.glob_below(folder) == []


def test_event_files_are_folded_and_every_event_is_read_once(lake: Lake, monkeypatch, tmp_path):
    monkeypatch.setattr(register_module, "COMPACT_AT", 8)
    register = Register(lake)
    received = DeliveryEvent("a", "2024-01", "d0", "received")
    assert register.record_once(received, "received-d0")
    for n in range(1, 11):
        register.record(DeliveryEvent("a", "2024-01", f"d{n}", "validated", rows_delivered=n))
    folder = lake.delivery_events_dir("a")
    files = [k.rsplit("/", 1)[1] for k in lake.glob(f"{folder}/*.parquet")]
    # The eighth timed event folded itself and the seven before; two came after.
    assert "received-d0.parquet" in files
    assert sum(f.startswith("compacted-") for f in files) == 1
    assert len(files) == 1 + 1 + 2
    events = register.events("a")
    assert [e["delivery_id"] for e in events] == [f"d{n}" for n in range(11)]
    assert not register.record_once(received, "received-d0")  # still write-once

    # A fold written but not yet cleaned up (a compaction killed midway): each event once,
    # in the register and in the warehouse.
    everything = lake.read_all(lake.glob(f"{folder}/*.parquet"), DELIVERY_EVENT_SCHEMA)
    lake.write_table(f"{folder}/compacted-29991231T000000000000-killed.parquet", everything)
    assert len(register.events("a")) == 11
    build_warehouse(lake, {}, tmp_path / "warehouse.duckdb")
    with connect(tmp_path / "warehouse.duckdb") as con:
        assert con.sql("SELECT count(*) FROM governance.delivery_events").fetchall() == [(11,)]
    # The next fold takes up the leftovers.
    assert register.compact("a") == 2 + 1 + 1
    assert len(lake.glob(f"{folder}/*.parquet")) == 2  # the fold and the received marker
    assert len(register.events("a")) == 11
    # A write-once record is folded too once a day old (no intake races it any more).
    old = DeliveryEvent(
        "a", "2023-12", "dold", "received", event_at=datetime(2024, 1, 2, tzinfo=UTC)
    )
    assert register.record_once(old, "received-dold")
    assert register.compact("a") == 2  # the earlier fold and the old record
    assert [k.rsplit("/", 1)[1][:9] for k in lake.glob(f"{folder}/*.parquet")] == [
        "compacted",
        "received-",
    ]
    assert [e["delivery_id"] for e in register.events("a")][0] == "dold"


def test_reads_and_folds_running_at_once_lose_nothing_and_raise_nothing(lake: Lake, monkeypatch):
    register = Register(lake)
    monkeypatch.setattr(register_module, "COMPACT_AT", 10_000)  # fold only when told below
    for n in range(40):
        register.record(DeliveryEvent("a", "2024-01", f"d{n}", "validated"))
    monkeypatch.setattr(register_module, "COMPACT_AT", 8)
    errors: list[BaseException] = []
    counts: list[int] = []
    start = threading.Barrier(6)

    def fold() -> None:
        start.wait()
        try:
            register._compact_if_due("a")
        except BaseException as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    def read() -> None:
        start.wait()
        try:
            for _ in range(5):
                counts.append(len(register.events("a")))
        except BaseException as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    threads = [threading.Thread(target=fold) for _ in range(2)]
    threads += [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(counts) == {40}
    assert len(register.events("a")) == 40
