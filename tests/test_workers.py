"""Runs spread over workers, for real: Dagster's celery executor over a real Redis broker
(`tests/redis_server.py`), two `datashare worker` processes with working folders of their
own, sharing only what two machines would share: the S3 drop zone and lake (SeaweedFS), the
PostgreSQL instance and the broker. The workers and the daemon are started with the commands
their units in `deploy/` run; the daemon's sensor asks for the runs.

The force's real June 2022 stop-and-search file and a synthetic month of complaints (whose
officer keys are pseudonymised) go through the workers; the worker running a step of the
stop-and-search run is killed (SIGKILL, its whole process group, as a machine dies) in the
middle of it. The step is handed to the other worker, and afterwards nothing is lost or
taken twice: the register, the lake and a warehouse built from the lake alone (where the
analysts read it) hold each delivery once. The pseudonymisation key reaches the workers
only as owner-only files in their folders: everything that went through Redis is read back
and holds no trace of it, nor does any run's configuration.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pipelines.cli.doctor import step_logs_findings
from pipelines.cli.main import main
from pipelines.cli.worker import key_file_problems
from pipelines.demo.synthetic import write_delivery
from pipelines.home.executor import BROKER_ENV, CELERY, EXECUTOR_ENV
from pipelines.home.instance_config import (
    POSTGRES,
    POSTGRES_ENV,
    SQLITE,
    dagster_yaml,
    step_logs_location,
    written_by_datashare,
)
from pipelines.home.settings import load_settings
from pipelines.intake.pseudonymise import TOKEN_PREFIX, load_key, token
from pipelines.lake.store import open_lake
from pipelines.orchestration.instance import instance_health
from pipelines.orchestration.job_names import delivery_job_name
from pipelines.orchestration.worker_celery import VISIBILITY_ENV, broker_shown
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import load_contracts
from tests.conftest import drop
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer, require_redis, running_redis
from tests.s3_server import BUCKET, LAKE_BUCKET
from tests.test_deployment import (
    ENV_FILE,
    INSTALL_ROOT,
    QUICKER_DAEMON_ENV,
    UNITS,
    _kill_group,
    _live_in_group,
    quicker_daemon,
    read_unit,
    unit_command,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REAL_PERIOD = "2022-06"
REAL_ROWS = 16_332  # the June 2022 stop-and-search file's rows (all pass the contract)
COMPLAINTS_PERIOD = "2024-01"
COMPLAINTS_ROWS = 3000
# The month whose validating worker is killed: synthetic, nine times the real June file's
# rows, so that its step lasts long enough to be seen and killed mid-way: a warm worker
# validated the real file (16,332 rows) in a fraction of a second, and CI runs found the step
# done before the kill came; at 60,000 rows one quiet run in three still did. At 150,000 the
# step takes ~1 s on a quiet machine (the kill landed mid-step in 3 runs of 3), well inside
# VISIBILITY_SECONDS. Its curated month has several row groups, so the analysts' query below
# also reads one S3 object on several DuckDB threads (tests/test_s3_reads.py).
KILLED_ROWS = 150_000
# How soon Redis gives a dead worker's step to another. Redis cannot tell a dead worker from
# a slow one: a step still running after this long is handed out again, so it must outlast
# the slowest step on a loaded machine. A worker loads the code location and
# great-expectations before it says "ready." (`load_for_steps`), so a step is only its own
# work: at load 22 each step here took 1.2 to 5.3 s (printed at the end), at load 18 0.7 to
# 3.3 s, the slowest seen 6.8 s (load 27), and a whole Celery task 1.6 to 5.9 s at load 12-17.
# 12 s was tried (3 s less waiting after the kill) and set back to 15: a step that outlasts it
# runs twice and fails the test, and CI's machine is as loaded as these. Before, a worker's
# first step also loaded them, 16 to 27 s at load 19-22, and this was 30. Those steps were
# of 16,332 rows; the killed month's is now 150,000 (about 1 s a step on a quiet machine, a
# few times that loaded), and a third xdist worker shares the two cores: 20 s for margin.
VISIBILITY_SECONDS = 20
TIMEOUT = 600.0  # a loaded 2-core machine


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    require_redis()
    with running_redis() as server:
        yield server


def test_a_worker_refuses_a_key_it_would_have_to_make_or_others_can_read(tmp_path: Path):
    """Without the key file, `load_key` would make a new key and this worker's tokens would
    differ from every other machine's: the worker refuses instead, and refuses a key in its
    environment or one others can read."""
    assert "no pseudonymisation key" in key_file_problems(tmp_path, {})[0]
    key = tmp_path / "pseudonym.key"
    key.write_text("k" * 64)
    key.chmod(0o644)
    assert "can be read by others" in key_file_problems(tmp_path, {})[0]
    key.chmod(0o600)
    assert key_file_problems(tmp_path, {}) == []
    assert (
        "never from its environment"
        in key_file_problems(tmp_path, {"DATASHARE_PSEUDONYM_KEY": "x"})[0]
    )
    assert not (tmp_path / "other").exists()


WORKER_UNIT = "datashare-worker.service"


def test_the_worker_unit_runs_datashare_worker_in_a_folder_of_its_own():
    service = read_unit(WORKER_UNIT)["Service"]
    assert service["EnvironmentFile"] == [ENV_FILE]  # the same settings as the daemon's machine
    assert service["User"] == ["datashare"] and service["UMask"] == ["0077"]
    assert service["WorkingDirectory"] == [INSTALL_ROOT]
    assert unit_command(WORKER_UNIT, {}) == [
        str(BIN / "datashare"), "--home", "/var/lib/datashare-worker", "worker",
    ]  # fmt: skip
    assert unit_command(WORKER_UNIT, {"DATASHARE_WORKER_HOME": "/srv/w"})[2] == "/srv/w"


def test_worker_check_says_what_a_machine_lacks_to_be_a_worker(tmp_path: Path):
    """A home with a folder lake and drop zone, SQLite, no key, and a broker nobody listens
    on: `datashare worker --check` names each, and the worker refuses to start."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATASHARE_", "DAGSTER_"))},
        EXECUTOR_ENV: CELERY,
        BROKER_ENV: "redis://127.0.0.1:9/0",  # the discard port: nothing answers
    }
    argv = [str(BIN / "datashare"), "--home", str(tmp_path / "w"), "worker"]
    check = subprocess.run([*argv, "--check"], env=env, capture_output=True, text=True)
    assert check.returncode == 1, check.stdout + check.stderr
    out = check.stdout
    assert "FAIL  worker: DATASHARE_LAKE is a folder" in out
    assert "FAIL  worker: DATASHARE_DROP_ZONE is a folder" in out
    assert "FAIL  worker: DATASHARE_POSTGRES_HOST is not set" in out
    assert "FAIL  worker: the broker redis://127.0.0.1:9/0 does not answer" in out
    assert "FAIL  worker: no pseudonymisation key at" in out
    started = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 2 and "cannot be a worker yet" in started.stderr
    assert not (tmp_path / "w" / "pseudonym.key").exists()  # it made no key of its own


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    user=st.text(alphabet=string.ascii_letters + string.digits, max_size=12),
    password=st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=1),
    port=st.integers(min_value=1, max_value=65535),
)
def test_a_broker_password_is_never_shown(user: str, password: str, port: int):
    url = f"redis://{user}:{password}@broker.internal:{port}/0"
    shown = broker_shown(url)
    assert shown == f"redis://{user}:***@broker.internal:{port}/0"
    assert broker_shown("redis://broker.internal:6379/0") == "redis://broker.internal:6379/0"


# -- Step logs: a step's stdout and stderr, wherever it ran, readable on the daemon's machine --


def _workers_env(monkeypatch: pytest.MonkeyPatch, home: Path, lake: str) -> None:
    for name in [n for n in os.environ if n.startswith(("DATASHARE_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATASHARE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("DATASHARE_LAKE", lake)
    monkeypatch.setenv(EXECUTOR_ENV, CELERY)


@contextmanager
def _sigterm_as_a_worker_has_it() -> Iterator[None]:
    """SIGTERM at its default for the block, as in a worker's process. Dagster captures a
    step's log through a `tail -F` it ends with SIGTERM; a test process that ran Dagster
    in-process before has SIGTERM set to SIGINT's handler (Dagster's interrupt handling), and
    in a pytest-xdist worker that is "ignore", which `tail` inherits: it then outlives
    SIGTERM and Dagster gives up on it after 30 s (a fresh-clone run failed so)."""
    kept = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, kept)


def test_steps_on_workers_log_to_the_lake_and_the_daemon_reads_a_workers_step_log(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With workers and an S3 lake, the instance's dagster.yaml sends step logs to the lake's
    bucket (boto3's settings, as the lake's: no credential in the file). A step log written on
    one machine (its own temporary folder) is read on another (an empty one) from S3."""
    server, prefix = s3
    home = tmp_path / "daemon"
    _workers_env(monkeypatch, home, f"s3://{LAKE_BUCKET}/{prefix}")
    settings = load_settings()
    assert settings.step_logs == f"s3://{LAKE_BUCKET}/{prefix}/_step_logs"
    settings.ensure_folders()
    text = (settings.dagster_home / "dagster.yaml").read_text()
    assert "class: S3ComputeLogManager" in text and written_by_datashare(text)
    assert "datashare-test" not in text  # the credentials stay boto3's (the environment)

    log_key = ["run-1", "compute_logs", "validated_stop_and_search"]
    worker_tmp, daemon_tmp = tmp_path / "worker-tmp", tmp_path / "daemon-tmp"
    for folder in (worker_tmp, daemon_tmp):
        folder.mkdir()
    # The worker: the instance as a step's message carries it (its reference), its own /tmp.
    monkeypatch.setattr(tempfile, "tempdir", str(worker_tmp))
    with dg.DagsterInstance.get() as daemon_instance:
        ref = daemon_instance.get_ref()
    with dg.DagsterInstance.from_ref(ref) as worker:
        manager = worker.compute_log_manager
        assert type(manager).__name__ == "S3ComputeLogManager"
        with _sigterm_as_a_worker_has_it(), manager.capture_logs(log_key):
            print("rows checked: 16,332", flush=True)
            print("a warning on stderr", file=sys.stderr, flush=True)
    listed = server.client().list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"{prefix}/_step_logs/")
    names = sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"])
    assert names == ["validated_stop_and_search.err", "validated_stop_and_search.out"], listed

    # The daemon's machine: nothing of the step on its disk, yet its instance shows the log.
    assert not list(daemon_tmp.iterdir()) and not list(home.rglob("*.out"))
    monkeypatch.setattr(tempfile, "tempdir", str(daemon_tmp))
    with dg.DagsterInstance.get() as daemon_instance:
        data = daemon_instance.compute_log_manager.get_log_data(log_key)
    assert data.stdout is not None and b"rows checked: 16,332" in data.stdout
    assert data.stderr is not None and b"a warning on stderr" in data.stderr

    # ... and the doctor says where step logs go.
    from pipelines.cli.doctor import diagnose

    said = [f for f in diagnose(settings) if f.check == "step logs"]
    assert [f.level for f in said] == ["ok"], said
    assert f"s3://{LAKE_BUCKET}/{prefix}/_step_logs" in said[0].words


def test_a_home_made_before_step_logs_gains_them_and_an_edited_one_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A dagster.yaml today's main wrote (storage and runs, no step logs) is rewritten with the
    S3 step logs when steps go to workers against an S3 lake; one someone edited stays theirs,
    and without workers nothing changes."""
    lake = "s3://mopac-lake/prod"
    before = dagster_yaml(POSTGRES, 2)  # what the previous version wrote for this home
    assert "compute_logs" not in before
    home = tmp_path / "home"
    config = home / "dagster" / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(before)
    _workers_env(monkeypatch, home, lake)
    monkeypatch.setenv(POSTGRES_ENV["hostname"], "127.0.0.1")
    load_settings().ensure_folders()
    after = config.read_text()
    assert after == dagster_yaml(POSTGRES, 2, f"{lake}/_step_logs") and written_by_datashare(after)
    assert after.startswith(before.rpartition("# datashare: sha256=")[0])  # all else as it was
    assert '    bucket: "mopac-lake"\n    prefix: "prod/_step_logs"\n' in after

    edited = before.replace("max_concurrent_runs: 2", "max_concurrent_runs: 4")
    config.write_text(edited)
    load_settings().ensure_folders()
    assert config.read_text() == edited

    config.write_text(before)
    monkeypatch.setenv(EXECUTOR_ENV, "in_process")
    load_settings().ensure_folders()
    assert config.read_text() == before  # no workers: Dagster's default, on this machine


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper, not a run's own
def test_datashare_run_still_runs_its_steps_itself_when_runs_go_to_workers(
    home, real_stop_and_search, monkeypatch: pytest.MonkeyPatch, capsys
):
    """What doctor and `worker --check` say: `datashare run` executes its steps in its own
    process whatever DATASHARE_EXECUTOR says, so it works with no broker at all."""
    monkeypatch.setenv(EXECUTOR_ENV, CELERY)
    monkeypatch.setenv(BROKER_ENV, "redis://127.0.0.1:9/0")  # nothing listens there
    drop(home, "stop_and_search", REAL_PERIOD, real_stop_and_search)
    assert main(["run"]) == 0
    assert "rows published:     16,332" in capsys.readouterr().out
    with connect(home.warehouse) as con:
        assert con.execute("SELECT count(*) FROM curated.stop_and_search").fetchone() == (
            REAL_ROWS,
        )


def _wait_for(
    what: str, ready: Callable[[], object], timeout: float, logs: list[Path], every: float = 0.5
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := ready():
            return value
        time.sleep(every)
    tails = "\n".join(f"--- {p}:\n{p.read_text(errors='replace')[-4000:]}" for p in logs)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{tails}")


def _start(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _in_process(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`datashare <argv>` run in this process with `env` as its whole environment, as the
    command would see it, and what it printed: the same entry point without a second
    process's import of Dagster and Celery."""
    kept = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with redirect_stdout(io.StringIO()) as out:
            code = main(argv)
    finally:
        os.environ.clear()
        os.environ.update(kept)
    return code, out.getvalue()


def _peak_rss_mb(pgid: int) -> list[int]:
    """Each live process of a process group: its peak resident memory, in MB."""
    peaks = []
    for pid in _live_in_group(pgid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        peaks.append(int(found.group(1)) // 1024 if found else 0)
    return sorted(peaks, reverse=True)


def _engine_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Step key: the celery workers that were handed it, in order (Dagster's engine event
    'Executing steps ... in celery worker')."""
    handed: dict[str, list[str]] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event else {}
        worker = metadata.get("Celery worker")
        if worker is not None and event.step_key:
            handed.setdefault(event.step_key, []).append(worker.value)
    return handed


def _step_events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [r.dagster_event.step_key for r in instance.all_logs(run_id, of_type=kind)]


def _step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Step key: seconds from its last start to its success (the step's own work, on the
    worker that finished it): what the broker's visibility must outlast."""
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            took[event.step_key] = record.timestamp - started[event.step_key]
    return took


def _broker_bodies(monitor_log: Path) -> list[bytes]:
    """Every Celery message body that went through Redis (kombu sends them base64)."""
    text = monitor_log.read_text(errors="replace").replace('\\"', '"')
    return [base64.b64decode(b) for b in re.findall(r'"body": "([A-Za-z0-9+/=]+)"', text)]


@pytest.mark.slow
def test_two_workers_take_deliveries_and_a_killed_worker_loses_and_repeats_nothing(
    postgres: PostgresServer,
    redis: RedisServer,
    s3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop_and_search,
):
    server, prefix = s3
    began = time.monotonic()
    timings: dict[str, float] = {}
    database = "workers"
    postgres.create_database(database)
    pg_env = {
        POSTGRES_ENV["hostname"]: postgres.host,
        POSTGRES_ENV["port"]: str(postgres.port),
        POSTGRES_ENV["db_name"]: database,
        POSTGRES_ENV["username"]: postgres.user,
        "PGPASSFILE": str(postgres.write_pgpass(tmp_path / "pgpass")),
    }
    home = tmp_path / "home"  # the machine that starts runs (the daemon's, in production)
    shared = {
        **pg_env,
        "DATASHARE_DROP_ZONE": f"s3://{BUCKET}/{prefix}",
        "DATASHARE_LAKE": f"s3://{LAKE_BUCKET}/{prefix}",
        "DATASHARE_SETTLE_SECONDS": "0",
        EXECUTOR_ENV: CELERY,
        BROKER_ENV: redis.url(),
        VISIBILITY_ENV: str(VISIBILITY_SECONDS),
        "DATASHARE_LEASE_WAIT_SECONDS": "120",
    }
    for name, value in {**shared, "DATASHARE_HOME": str(home),
                        "DAGSTER_HOME": str(home / "dagster")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("DATASHARE_PSEUDONYM_KEY", raising=False)
    settings = load_settings()
    assert settings.executor == CELERY and settings.instance_storage == POSTGRES
    settings.ensure_folders()
    assert settings.step_logs == f"s3://{LAKE_BUCKET}/{prefix}/_step_logs"
    assert instance_health(settings).ok  # ... and the instance's tables are made
    key = load_key(home)  # the deployment's key, made once on the first machine

    # Two worker machines: a working folder each, with the key copied in, owner-only.
    workers: dict[str, subprocess.Popen] = {}
    logs = []
    base_env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    for name in ("w1", "w2"):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copyfile(home / "pseudonym.key", folder / "pseudonym.key")
        (folder / "pseudonym.key").chmod(0o600)
        logs.append(tmp_path / f"{name}.log")
        # As the unit starts it (its --home, the worker's own folder), named for the test,
        # with a temporary folder of its own, as another machine's /tmp.
        (folder / "tmp").mkdir()
        env = {**base_env, "DATASHARE_WORKER_HOME": str(folder), "TMPDIR": str(folder / "tmp")}
        argv = [*unit_command(WORKER_UNIT, env), "--name", name]
        workers[name] = _start(argv, env, logs[-1], folder)
    monitor_log = tmp_path / "redis-monitor.log"
    monitor = redis.monitor(monitor_log)
    runs: list[subprocess.Popen] = []  # the daemon
    worker_logs = list(logs)
    try:
        # The daemon, as its unit starts it, while the workers start (it waits for nothing
        # of theirs): once the force's files are there, its sensor asks for a run per
        # contract, the queue launches them, and each run sends its steps through the broker.
        logs.append(tmp_path / "daemon.log")
        quicker_daemon(settings.dagster_home)
        daemon_env = {**os.environ, "DATASHARE_SENSOR_INTERVAL_SECONDS": "2", **QUICKER_DAEMON_ENV}
        runs.append(
            _start(unit_command(UNITS["daemon"], daemon_env), daemon_env, logs[-1], REPO_ROOT)
        )
        # The force drops the real June 2022 file at once: the stop-and-search run is the
        # one whose step is killed, and what follows the kill (the broker's visibility wait,
        # the step again, the curated step) is the test's longest path, so its run is asked
        # for first (the queue launches one run at a time), on the sensor's first tick.
        client = server.client()
        contracts = load_contracts()
        killed_file = write_delivery(
            contracts["stop_and_search"],
            REAL_PERIOD,
            tmp_path / "stop-and-search.csv",
            rows=KILLED_ROWS,
            seed=2,
            defect_rate=0,
        )
        client.upload_file(
            str(killed_file), BUCKET, f"{prefix}/stop_and_search/{REAL_PERIOD}/{killed_file.name}"
        )
        complaints_file = write_delivery(
            contracts["complaints"],
            COMPLAINTS_PERIOD,
            tmp_path / "complaints.csv",
            rows=COMPLAINTS_ROWS,
            seed=3,
            defect_rate=0,
        )
        _wait_for(
            "both workers ready",
            lambda: all("ready." in p.read_text(errors="replace") for p in worker_logs),
            120,
            logs,
        )
        timings["workers up"] = time.monotonic() - began
        # Each loaded what its steps need before it said it was ready to take any.
        for log in worker_logs:
            said = log.read_text(errors="replace")
            loaded = said.find("code location and great-expectations loaded")
            assert -1 < loaded < said.find("ready."), said[-3000:]
        # Both machines' checks see the broker and both workers (the daemon's: the doctor),
        # while the daemon starts. (The worker's own command, in this process: its exit
        # codes as a process are test_worker_check_says_what_a_machine_lacks_to_be_a_worker's.)
        code, out = _in_process([*argv[1:], "--check"], env)
        assert code == 0, out
        assert f"ok    worker: the broker {redis.url()} answers" in out
        assert "ok    worker: 2 worker(s) answer: w1@" in out, out
        from pipelines.cli.doctor import diagnose

        said = [str(f) for f in diagnose(settings) if f.check == "workers"]
        assert any("2 worker(s) answer" in w for w in said), said

        instance = dg.DagsterInstance.get()
        job = delivery_job_name("stop_and_search")
        # ... and a month of complaints once the sensor has asked for the stop-and-search
        # run (a run per contract still: the complaints' comes at a later tick), which the
        # queue then launches beside it.
        [run] = _wait_for(
            "the stop-and-search run asked for",
            lambda: instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=1),
            TIMEOUT,
            logs,
        )
        run_id = run.run_id
        client.upload_file(
            str(complaints_file), BUCKET, f"{prefix}/complaints/{COMPLAINTS_PERIOD}/c.csv"
        )

        # Kill the worker that runs the stop-and-search validation, once it has started it.
        def validating() -> tuple[str, str] | None:
            started = _step_events(instance, run_id, dg.DagsterEventType.STEP_START)
            step = next((s for s in started if s.startswith("validated")), None)
            handed = _engine_workers(instance, run_id).get(step or "", [])
            return (step, handed[0]) if step and handed else None

        # Looked for often once the landing step has started, every half second before: each
        # look is queries of the instance (a PostgreSQL connection each), and ten looks a
        # second while the run was launched took CPU its start needed. The validation is
        # sent at the run's next look at its steps, and a worker that has loaded everything
        # validates the month in a second or two: the kill must come while it does (so the
        # quick looks begin before the landing step ends, not up to half a second after).
        _wait_for(
            "the landing step started",
            lambda: any(
                s.startswith("landing")
                for s in _step_events(instance, run_id, dg.DagsterEventType.STEP_START)
            ),
            TIMEOUT,
            logs,
        )
        # Every 20 ms: since the row engine checks a batch in two polars calls (04968b5), a
        # warm worker validates this month in well under a second, and at every=0.1 a CI run
        # beside other work found the step already done when the kill came.
        step, first = _wait_for(
            "the validation step started", validating, TIMEOUT, logs, every=0.02
        )
        victim = first.split("@")[0]
        _kill_group(workers[victim])  # the worker and the step's process with it
        killed_at = time.monotonic()
        timings["validation started, worker killed"] = killed_at - began
        if step in _step_events(instance, run_id, dg.DagsterEventType.STEP_SUCCESS):
            # The race this test runs was lost: the step ended between the look that saw it
            # start and the kill, so no step was killed mid-way and there is nothing to
            # judge. Said as a skip, not passed: it happened in 1 of 3 quiet runs at 60,000
            # rows, and in most CI runs with the real June file.
            pytest.skip("the step finished before its worker was killed: not a kill mid-step")

        jobs = {job, delivery_job_name("complaints")}

        def finished() -> bool:
            found = [r for r in instance.get_runs() if r.job_name in jobs]
            return {r.job_name for r in found} == jobs and all(r.is_finished for r in found)

        _wait_for("the runs finished", finished, TIMEOUT, logs)

        # The warehouse where analysts read, in the daemon's home, shows both months: the
        # curated steps ran on the workers, and the daemon's sensor caught its catalog up.
        def analysts_see() -> bool:
            if not settings.warehouse.exists():
                return False
            with connect(settings.warehouse) as con:
                counts = [
                    con.execute(f"SELECT count(*) FROM curated.{name}").fetchone()[0]
                    for name in ("stop_and_search", "complaints")
                ]
            return counts == [KILLED_ROWS, COMPLAINTS_ROWS]

        _wait_for("the analysts' warehouse shows the months", analysts_see, 120, logs)
        survivor_group = next(p for n, p in workers.items() if p.poll() is None).pid
        peaks = _peak_rss_mb(survivor_group)
        timings["runs done after the kill"] = time.monotonic() - killed_at
    finally:
        for process in [*runs, *workers.values()]:
            _stop(process)
        monitor.terminate()
        monitor.wait(timeout=30)

    # Both runs succeeded; the killed step was handed to the other worker and finished there.
    found = [r for r in instance.get_runs() if r.job_name in jobs]
    by_job = {r.job_name: r for r in found}
    assert len(found) == 2, [(r.job_name, r.status, r.tags) for r in found]  # no retry needed
    for run in found:  # asked for by the sensor, launched through the run queue
        assert run.tags.get("dagster/sensor_name") == "new_deliveries", run.tags
        assert instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
    assert {j: r.status for j, r in by_job.items()} == {
        job: dg.DagsterRunStatus.SUCCESS,
        delivery_job_name("complaints"): dg.DagsterRunStatus.SUCCESS,
    }, [p.read_text(errors="replace")[-3000:] for p in logs]
    handed = _engine_workers(instance, run_id)[step]
    assert handed[0].startswith(victim) and len(handed) == 2, handed
    survivor = handed[1].split("@")[0]
    assert survivor != victim
    all_handed = {
        w.split("@")[0]
        for r in by_job.values()
        for ws in _engine_workers(instance, r.run_id).values()
        for w in ws
    }
    assert all_handed == {"w1", "w2"}, "both workers ran steps"

    # Nothing lost or taken twice: the register, and a warehouse the analysts build from the
    # lake alone, hold each delivery once, validated once and published once.
    analysts = tmp_path / "analysts" / "warehouse.duckdb"
    analysts.parent.mkdir()
    build_warehouse(open_lake(settings.lake), contracts, analysts)
    with connect(analysts) as con:
        curated = con.execute(
            "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1"
        ).fetchall()
        complaints_rows = con.execute("SELECT count(*) FROM curated.complaints").fetchone()[0]
        deliveries = con.execute(
            "SELECT contract, period, status FROM governance.deliveries ORDER BY 1"
        ).fetchall()
        events = con.execute(
            "SELECT delivery_id, count(*) FILTER (WHERE event = 'validated'), "
            "count(*) FILTER (WHERE event = 'published'), "
            "count(*) FILTER (WHERE event = 'received') FROM governance.delivery_events "
            "GROUP BY 1"
        ).fetchall()
        tokens = {
            row[0]
            for row in con.execute(
                "SELECT DISTINCT subject_officer_key FROM curated.complaints "
                "WHERE subject_officer_key IS NOT NULL"
            ).fetchall()
        }
    assert curated == [(REAL_PERIOD, KILLED_ROWS)]
    assert complaints_rows == COMPLAINTS_ROWS
    assert deliveries == [
        ("complaints", COMPLAINTS_PERIOD, "published"),
        ("stop_and_search", REAL_PERIOD, "published"),
    ]
    assert len(events) == 2 and all(e[1:] == (1, 1, 1) for e in events), events
    # ... and the lake holds one landing copy and one curated month of each, nothing staged.
    lake = open_lake(settings.lake)
    landed = lake.glob("landing/*/*/*")
    assert [k.rsplit("/", 1)[0] for k in landed] == [
        f"landing/contract=complaints/period={COMPLAINTS_PERIOD}",
        f"landing/contract=stop_and_search/period={REAL_PERIOD}",
    ], landed
    assert lake.glob("curated/*/*/*") == [
        f"curated/contract=complaints/period={COMPLAINTS_PERIOD}/data.parquet",
        f"curated/contract=stop_and_search/period={REAL_PERIOD}/data.parquet",
    ]
    assert lake.glob("staging/*/*/*") == []

    # The workers pseudonymised with the deployment's key, which they read from their files.
    with complaints_file.open(newline="") as fh:
        cells = {cell for row in csv.reader(fh) for cell in row if cell}
    assert tokens and all(t.startswith(TOKEN_PREFIX) for t in tokens)
    assert tokens <= {token(key, cell) for cell in cells}

    # ... and the key never went through the broker or into a run's configuration: every
    # message Redis carried is read back (they do carry the runs' steps).
    bodies = _broker_bodies(monitor_log)
    assert any(run_id.encode() in b and b"execute_step_args" in b for b in bodies), (
        f"no step message seen in {monitor_log}"
    )
    raw = monitor_log.read_bytes()
    for form in (key, key.decode().upper().encode()):
        assert form not in raw and not any(form in b for b in bodies)
    for run in by_job.values():
        assert key.decode() not in json.dumps(run.run_config)
    # Nor did PostgreSQL's password: the instance's reference in each message names the
    # variables libpq reads, never their values.
    secret = postgres.password.encode()
    assert secret not in raw and not any(secret in b for b in bodies)
    # Each step's log (its stdout and stderr) was written on the worker that ran it, which
    # sent it to the lake: the daemon's machine has none of it on disk, yet its instance
    # (what the UI reads) shows the surviving worker's log of the step it took over.
    assert not list((home / "dagster").rglob("compute_logs"))
    captured = [
        r.dagster_event.logs_captured_data
        for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.LOGS_CAPTURED)
    ]
    file_keys = [c.file_key for c in captured if step in c.step_keys]
    assert len(file_keys) == 2, captured  # one per worker handed the step
    logs_read = [
        instance.compute_log_manager.get_log_data(
            instance.compute_log_manager.build_log_key_for_run(run_id, file_key)
        )
        for file_key in file_keys
    ]
    finished = [d.stderr.decode() for d in logs_read if d.stderr and b"STEP_SUCCESS" in d.stderr]
    assert len(finished) == 1 and step in finished[0], [d.stderr for d in logs_read]
    print("workers timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    steps = {
        k: round(v, 1)
        for r in by_job.values()
        for k, v in _step_seconds(instance, r.run_id).items()
    }
    print(f"steps (s, visibility {VISIBILITY_SECONDS}): {steps}")
    print(f"surviving worker's processes, peak RSS (MB): {peaks}")
    instance.dispose()


def test_the_doctor_warns_when_steps_on_workers_would_keep_their_logs_to_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A dagster.yaml edited by hand without a compute_logs section, on a deployment whose
    steps run on workers: the UI could not show their logs, and the doctor says so; without
    workers, Dagster's default is where the UI reads."""
    home = tmp_path / "home"
    _workers_env(monkeypatch, home, "s3://mopac-lake/prod")
    settings = load_settings()
    config = settings.dagster_home / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        dagster_yaml(SQLITE).replace("max_concurrent_runs: 2", "max_concurrent_runs: 3")
    )
    [finding] = step_logs_findings(settings)
    assert finding.level == "warn" and "cannot show their logs" in finding.words, finding
    monkeypatch.setenv(EXECUTOR_ENV, "in_process")
    [finding] = step_logs_findings(load_settings())
    assert finding.level == "ok" and "Dagster's default" in finding.words, finding


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    bucket=st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True),
    prefix=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
        min_size=1,
        max_size=40,
    ),
)
def test_the_step_logs_section_names_the_lakes_bucket_and_prefix_whatever_they_are(
    bucket: str, prefix: str
):
    """Any bucket and lake prefix reach Dagster as written: the section's values are quoted."""
    import yaml

    lake = f"s3://{bucket}/{prefix}"
    location = step_logs_location(lake, CELERY)
    text = dagster_yaml(POSTGRES, 2, location)
    config = yaml.safe_load(text)["compute_logs"]["config"]
    assert (config["bucket"], config["prefix"]) == (bucket, f"{prefix}/_step_logs")
    assert written_by_datashare(text)
    assert step_logs_location(lake, "in_process") is None
    assert step_logs_location(Path("/srv/lake"), CELERY) is None
