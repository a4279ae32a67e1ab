"""A production deployment, for real where the machine allows: Dagster's instance on a real
PostgreSQL server (`tests/postgres_server.py`), the daemon and webserver started with the
commands the systemd units in `deploy/` run, the `new_deliveries` sensor taking real files
through the queued run coordinator, and the daemon killed mid-run and started again.

There is no systemd here: the units are parsed, and their `ExecStart` commands are run with
the checkout in place of `/opt/datashare`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import RunRecord

from pipelines.demo.synthetic import write_delivery
from pipelines.home.instance_config import (
    CONTRACT_TAG,
    DEFAULT_MAX_RUNS,
    PARTITION_TAG,
    POSTGRES,
    POSTGRES_ENV,
    SQLITE,
    dagster_yaml,
    write_dagster_yaml,
)
from pipelines.home.settings import Settings, load_settings
from pipelines.orchestration.instance import instance_health
from pipelines.warehouse.catalog import connect
from tests.conftest import REAL_STOP_AND_SEARCH
from tests.postgres_server import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
INSTALL_ROOT = "/opt/datashare"  # where the units expect the checkout and its .venv
ENV_FILE = "/etc/datashare/datashare.env"
UNITS = {"daemon": "datashare-daemon.service", "webserver": "datashare-webserver.service"}
CONTRACT = "stop_and_search"
REAL_PERIOD = "2022-06"
SYNTHETIC = {"2022-07": 2000}  # month: rows, every row good
REAL_ROWS = 16_332  # the June 2022 file's rows (all pass the contract)
SETTLE_TIMEOUT = (
    480.0  # a loaded 2-core machine (the whole suite beside it) runs a month in minutes
)
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


# -- the units, as systemd reads them --------------------------------------------------------


def read_unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and settings (a setting may be given more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in (DEPLOY / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{name}: {raw!r} outside a section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_command(name: str, env: Mapping[str, str]) -> list[str]:
    """The unit's ExecStart as this checkout runs it: the checkout in place of
    /opt/datashare, and `${VAR}` expanded as systemd does (the unit's Environment= first,
    then the environment file's values, here `env`)."""
    service = read_unit(name)["Service"]
    defaults = dict(
        assignment.split("=", 1)
        for line in service.get("Environment", [])
        for assignment in shlex.split(line)
    )
    values = {**defaults, **env}
    [exec_start] = service["ExecStart"]
    argv = []
    for word in shlex.split(exec_start):
        word = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], word)
        argv.append(word.replace(INSTALL_ROOT, str(REPO_ROOT)))
    return argv


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= and a shell's `set -a; .` read them."""
    pairs = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_the_units_run_the_commands_this_test_runs():
    venv = REPO_ROOT / ".venv" / "bin"
    env = {"DATASHARE_UI_HOST": "127.0.0.1", "DATASHARE_UI_PORT": "3000"}
    assert unit_command(UNITS["daemon"], env) == [
        str(venv / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml"),
    ]  # fmt: skip
    assert unit_command(UNITS["webserver"], env) == [
        str(venv / "dagster-webserver"), "-w", str(REPO_ROOT / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", "3000",
    ]  # fmt: skip
    # The unit's own defaults hold when the environment file does not say.
    assert unit_command(UNITS["webserver"], {})[-4:] == ["-h", "127.0.0.1", "-p", "3000"]
    for name in UNITS.values():
        service = read_unit(name)["Service"]
        assert service["EnvironmentFile"] == [ENV_FILE]
        assert service["WorkingDirectory"] == [INSTALL_ROOT]  # workspace.yaml loads from there
        assert service["User"] == ["datashare"]  # never root: PostgreSQL and the lake agree
        assert Path(unit_command(name, env)[0]).exists()  # the checkout has these programs


def test_the_example_environment_names_what_the_instance_reads_and_holds_no_secret():
    env = read_env_file(DEPLOY / "datashare.env.example")
    for var in [*POSTGRES_ENV.values(), "DATASHARE_HOME", "DAGSTER_HOME", "PGPASSFILE"]:
        assert env.get(var), var
    assert env["DAGSTER_HOME"] == env["DATASHARE_HOME"] + "/dagster"  # datashare's layout
    assert int(env["DATASHARE_MAX_RUNS"]) == DEFAULT_MAX_RUNS
    assert not {"PGPASSWORD", "DATASHARE_PSEUDONYM_KEY"} & set(env)
    assert not [k for k in env if re.search("PASSWORD|SECRET|TOKEN|KEY$", k)]
    # The reference instance configuration is what datashare writes for those settings.
    assert (DEPLOY / "dagster.yaml").read_text() == dagster_yaml(POSTGRES, DEFAULT_MAX_RUNS)


# -- the instance configuration datashare writes ---------------------------------------------


def _postgres_env(server: PostgresServer, database: str, folder: Path) -> dict[str, str]:
    return {
        POSTGRES_ENV["hostname"]: server.host,
        POSTGRES_ENV["port"]: str(server.port),
        POSTGRES_ENV["db_name"]: database,
        POSTGRES_ENV["username"]: server.user,
        "PGPASSFILE": str(server.write_pgpass(folder / "pgpass")),
    }


def _use_postgres(
    monkeypatch: pytest.MonkeyPatch, server: PostgresServer, database: str, folder: Path
) -> dict[str, str]:
    server.create_database(database)
    env = _postgres_env(server, database, folder)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return env


# The run launcher's module, and its name before `pipelines/` became packages.
LAUNCHER = "module: pipelines.orchestration.run_launcher\n"
OLD_LAUNCHER = "module: pipelines" + ".run_launcher\n"
# The module its header names as the writer.
WRITER, OLD_WRITER = "pipelines/home/instance_config.py", "pipelines" + "/instance_config.py"
# The sections the SQLite configuration gained after all of these versions: its event log
# kept open between events (tests/test_event_log_storage.py), then its run storage too
# (tests/test_run_storage.py).
RUNS_KEPT_OPEN = (
    "run_storage:\n  module: pipelines.home.run_storage\n  class: KeptOpenSqliteRunStorage\n"
)
KEPT_OPEN = (
    "event_log_storage:\n  module: pipelines.home.event_log_storage\n"
    "  class: KeptOpenSqliteEventLogStorage\n"
) + RUNS_KEPT_OPEN


def test_an_edited_instance_of_the_version_before_packages_opens(tmp_path: Path):
    """A home whose dagster.yaml someone edited, made before the run launcher moved, still
    opens: Dagster finds the launcher where it is now."""
    folder = tmp_path / "home" / "dagster"
    folder.mkdir(parents=True)
    edited = dagster_yaml(SQLITE).replace("max_concurrent_runs: 2", "max_concurrent_runs: 6")
    (folder / "dagster.yaml").write_text(edited.replace(LAUNCHER, OLD_LAUNCHER))
    load_settings(tmp_path / "home").ensure_folders()  # what every datashare command does
    with dg.DagsterInstance.from_config(str(folder)) as instance:
        assert type(instance.run_launcher).__module__ == "pipelines.orchestration.run_launcher"
    assert "max_concurrent_runs: 6" in (folder / "dagster.yaml").read_text()


def test_sqlite_stays_the_default_with_the_run_queue_and_monitoring(home: Settings):
    text = (home.dagster_home / "dagster.yaml").read_text()
    assert text == dagster_yaml(SQLITE, DEFAULT_MAX_RUNS)
    # Dagster's default storage, SQLite under DAGSTER_HOME (only its event log is ours:
    # `event_log_storage:`, tests/test_event_log_storage.py)
    assert "\nstorage:" not in "\n" + text
    health = instance_health(home)
    assert health.ok, health.problems
    assert health.summary.startswith(f"SQLite in {home.dagster_home}, schema current")
    assert "at most 2 at once, one per contract" in health.summary
    assert "run monitoring on, retries on" in health.summary


def test_the_configuration_follows_the_settings_but_an_edited_one_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "dagster"
    folder.mkdir()
    config = folder / "dagster.yaml"
    # A home made by an earlier version is upgraded.
    legacy = (
        "telemetry:\n  enabled: false\nnux:\n  enabled: false\nconcurrency:\n  runs:\n"
        "    tag_concurrency_limits:\n      - key: datashare/partition\n        value:\n"
        "          applyLimitPerUniqueValue: true\n        limit: 1\n"
    )
    config.write_text(legacy)
    assert write_dagster_yaml(folder, SQLITE, 2) and config.read_text() == dagster_yaml(SQLITE)
    # So is one the previous version wrote, whose queue allowed one run per contract-month
    # (its checksum is the one that version wrote): now one run per contract.
    previous = (
        (
            dagster_yaml(SQLITE)
            .replace(KEPT_OPEN, "")
            .replace("one per contract at a time", "one per contract-month at a time")
            .replace(f"key: {CONTRACT_TAG}", "key: datashare/partition")
            .replace(LAUNCHER, OLD_LAUNCHER)
            .replace(WRITER, OLD_WRITER)
            .rpartition("# datashare: sha256=")[0]
        )
        + "# datashare: sha256=fec06b0d749dd6b2\n"
    )
    config.write_text(previous)
    assert write_dagster_yaml(folder, SQLITE, 2) and config.read_text() == dagster_yaml(SQLITE)
    assert f"key: {CONTRACT_TAG}" in config.read_text()
    # And the one the version before `pipelines/` became packages wrote, naming the run
    # launcher's module by its old name.
    before_packages = dagster_yaml(SQLITE).replace(KEPT_OPEN, "").replace(LAUNCHER, OLD_LAUNCHER)
    before_packages = before_packages.replace(WRITER, OLD_WRITER)
    before_packages = before_packages.rpartition("# datashare: sha256=")[0]
    config.write_text(before_packages + "# datashare: sha256=e060dd3a5ae6baf6\n")
    assert write_dagster_yaml(folder, SQLITE, 2) and config.read_text() == dagster_yaml(SQLITE)
    # And the one the version before the event log was kept open wrote.
    before_kept_open = dagster_yaml(SQLITE).replace(KEPT_OPEN, "")
    before_kept_open = before_kept_open.rpartition("# datashare: sha256=")[0]
    config.write_text(before_kept_open + "# datashare: sha256=eb6ed7a77aeb4cf9\n")
    assert write_dagster_yaml(folder, SQLITE, 2) and config.read_text() == dagster_yaml(SQLITE)
    assert KEPT_OPEN in config.read_text()
    # And the one the version before the run storage was kept open wrote (9dc7ca0).
    before_runs_kept_open = dagster_yaml(SQLITE).replace(RUNS_KEPT_OPEN, "")
    before_runs_kept_open = before_runs_kept_open.rpartition("# datashare: sha256=")[0]
    config.write_text(before_runs_kept_open + "# datashare: sha256=ed7ef2376e4cf605\n")
    assert write_dagster_yaml(folder, SQLITE, 2) and config.read_text() == dagster_yaml(SQLITE)
    # Its settings change, and so does the file; SQLite moves to PostgreSQL.
    assert write_dagster_yaml(folder, SQLITE, 3) and "max_concurrent_runs: 3" in config.read_text()
    assert not write_dagster_yaml(folder, SQLITE, 3)  # nothing to change
    assert write_dagster_yaml(folder, POSTGRES, 3) and config.read_text() == dagster_yaml(
        POSTGRES, 3
    )
    # A shell without the PostgreSQL variables never moves it back to an empty SQLite one.
    assert not write_dagster_yaml(folder, SQLITE, 3)
    assert config.read_text() == dagster_yaml(POSTGRES, 3)
    # Edited by hand: theirs.
    edited = config.read_text().replace("max_concurrent_runs: 3", "max_concurrent_runs: 8")
    config.write_text(edited)
    assert not write_dagster_yaml(folder, POSTGRES, 2) and config.read_text() == edited
    # ... but one edited before the run launcher's module moved follows it there, and only
    # that line changes: Dagster imports the module by name and would stop every command.
    config.write_text(edited.replace(LAUNCHER, OLD_LAUNCHER))
    assert write_dagster_yaml(folder, POSTGRES, 2) and config.read_text() == edited
    assert not write_dagster_yaml(folder, POSTGRES, 2)
    # DATASHARE_MAX_RUNS reaches the file through the settings.
    monkeypatch.setenv("DATASHARE_MAX_RUNS", "5")
    assert load_settings(tmp_path / "home").max_runs == 5
    monkeypatch.setenv("DATASHARE_MAX_RUNS", "none")
    with pytest.raises(SystemExit, match="DATASHARE_MAX_RUNS"):
        load_settings(tmp_path / "home")


def test_datashare_writes_a_postgres_instance_naming_variables_and_it_is_healthy(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    env = _use_postgres(monkeypatch, postgres, "instance_config", tmp_path)
    settings = load_settings(tmp_path / "home")
    assert settings.instance_storage == POSTGRES
    settings.ensure_folders()
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    text = (settings.dagster_home / "dagster.yaml").read_text()
    assert text == dagster_yaml(POSTGRES, DEFAULT_MAX_RUNS)
    assert postgres.password not in text and str(postgres.port) not in text
    assert all(f"env: {var}" in text for var in POSTGRES_ENV.values())

    health = instance_health(settings)
    assert health.ok and not health.warnings, (health.problems, health.warnings)
    where = f"PostgreSQL ({postgres.user}@127.0.0.1:{postgres.port}/instance_config)"
    assert health.summary.startswith(f"{where}, schema current; queued runs, at most 2")
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled and instance.run_retries_max_retries > 0
    # The tables are in the database, not in the home.
    tables = postgres.psql("SELECT tablename FROM pg_tables", database="instance_config")
    assert {"runs", "event_logs", "jobs", "alembic_version"} <= set(tables.split())
    assert not list(settings.dagster_home.glob("**/*.db"))

    # Each thing that would stop the daemon, said in words.
    (tmp_path / "pgpass").write_text(f"127.0.0.1:{postgres.port}:*:{postgres.user}:wrong\n")
    [problem] = instance_health(settings).problems
    assert 'password authentication failed for user "datashare"' in problem
    (tmp_path / "pgpass").chmod(0o644)
    [problem] = instance_health(settings).problems
    assert "can be read by others, so libpq ignores it" in problem
    postgres.write_pgpass(tmp_path / "pgpass")
    monkeypatch.setenv(POSTGRES_ENV["port"], str(_closed_port()))
    [problem] = instance_health(settings).problems
    assert "Connection refused" in problem
    monkeypatch.delenv(POSTGRES_ENV["db_name"])
    assert instance_health(settings).problems[0].startswith("DATASHARE_POSTGRES_DB is not set")
    for var in env:
        monkeypatch.delenv(var, raising=False)
    plain = load_settings(tmp_path / "home")  # a shell without the environment file
    plain.ensure_folders()
    assert (settings.dagster_home / "dagster.yaml").read_text() == text  # not moved to SQLite
    assert (
        "keeps the instance in PostgreSQL but DATASHARE_POSTGRES_HOST is not set"
        in (instance_health(plain).problems[0])
    )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    assert any("the daemon would keep its runs in another instance" in p for p in (
        instance_health(plain).problems
    ))  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the run launcher's worker check ---------------------------------------------------------


def test_a_run_whose_code_server_is_gone_is_reported_failed_and_one_run_in_process_is_not(
    tmp_path: Path,
):
    from dagster._core.launcher import WorkerStatus
    from dagster._core.storage.tags import GRPC_INFO_TAG

    from pipelines.orchestration.run_launcher import LocalRunLauncher

    launcher = LocalRunLauncher()
    assert launcher.supports_check_run_worker_health

    def run(info: dict | None) -> dg.DagsterRun:
        tags = {GRPC_INFO_TAG: json.dumps(info)} if info else {}
        return dg.DagsterRun(job_name="stop_and_search_delivery", run_id="r1", tags=tags)

    # `datashare run` executes its runs in its own process: not the launcher's to judge.
    assert launcher.check_run_worker_health(run(None)).status == WorkerStatus.RUNNING
    # A code server whose socket or port no longer answers: its run workers are gone.
    for info in ({"host": "localhost", "socket": str(tmp_path / "gone.sock")},
                 {"host": "localhost", "port": _closed_port()}):  # fmt: skip
        health = launcher.check_run_worker_health(run(info))
        assert health.status == WorkerStatus.FAILED, health
        assert "is gone, and its run worker with it" in health.msg


def test_a_launched_runs_steps_are_forked_from_a_server_that_loaded_the_code_once(home: Settings):
    """A run the daemon launches runs each step in a process of its own, forked from a
    server that imported the code location once for the run (Dagster's `forkserver`
    start method, preloading the job's module), not spawned to import Dagster and the
    definitions again: about a quarter of a 3-month run's CPU (18.2-18.7 s -> 13.7-14.0 s,
    every process counted, tests/sensor_launch.py). `datashare run` is not affected: it
    executes its runs in its own process."""
    from pipelines.orchestration.definitions import build_definitions
    from pipelines.orchestration.job_names import delivery_job_name
    from schemas.contract import load_contracts

    defs = build_definitions(home)
    for contract in load_contracts():
        executor = defs.resolve_job_def(delivery_job_name(contract)).executor_def
        config = executor.config_schema.resolve_config({}).value["config"]
        assert executor.name == "multiprocess", executor.name
        # The code location's module preloaded by name: left unnamed, Dagster preloads only
        # its executor module, and each step imported the code location itself.
        assert config["start_method"] == {
            "forkserver": {"preload_modules": ["pipelines.orchestration.definitions"]}
        }, config
    # Steps are forked from the server after that import, so the import must start no
    # thread pool (a fork copies a pool's locks, not its threads: a step could deadlock on
    # them): no polars, tokio or Arrow worker threads, only idle allocator/cleanup ones.
    threads = subprocess.run(
        [sys.executable, "-c", "import os, pipelines.orchestration.definitions; "
         "print('\\n'.join(open(f'/proc/self/task/{t}/comm').read().strip() "
         "for t in os.listdir('/proc/self/task')))"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()  # fmt: skip
    pools = [t for t in threads if re.fullmatch(r"polars-\d+|tokio-rt-worker|Arrow.*", t)]
    assert pools == [], threads


# -- the daemon doing the work ---------------------------------------------------------------


def _live_in_group(pgid: int) -> list[int]:
    """Processes of a process group that are still alive (not zombies)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a service and everything it started (its process group), and wait for them."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _live_in_group(process.pid):
        assert time.monotonic() < deadline, f"still alive: {_live_in_group(process.pid)}"
        time.sleep(0.1)


@contextmanager
def _service(argv: list[str], env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A long-running process in its own process group, ended with it afterwards."""
    with log.open("a") as out:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        # Ended outright: the test's cleanup, nothing is asserted about how it stops. Asked
        # with SIGTERM, the daemon and the webserver (each stopping its code server) took
        # 21 s between them at load 21, this function's 20 s of grace used up, for nothing.
        if _live_in_group(process.pid):
            with suppress(ProcessLookupError):  # the last of them ended meanwhile
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def _tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _graphql(url: str, query: str) -> dict:
    body = json.dumps({"query": query}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
INSTANCE_QUERY = """
{
  instance {
    runQueuingSupported
    runLauncher { name }
    daemonHealth { allDaemonStatuses { daemonType required healthy } }
  }
  runsOrError(filter: {tags: [{key: "datashare/contract", value: "stop_and_search"}]}) {
    ... on Runs { results { runId status } }
  }
}
"""


def _wait_for(
    what: str, ready: Callable[[], object], timeout: float, logs: list[Path], every: float = 0.5
):
    """Poll `ready` every `every` seconds until it returns something true; fail with the
    services' logs. Each look at the instance is a PostgreSQL connection or more (Dagster's
    storage connects for every query): four a second took CPU the services needed."""
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: not after {timeout:.0f}s\n"
                + "\n".join(f"--- {log.name}\n{_tail(log)}" for log in logs)
            )
        time.sleep(every)


def _webserver_ready(url: str) -> bool:
    try:
        data = _graphql(url, LOCATION_QUERY)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    entries = data["workspaceOrError"].get("locationEntries", [])
    return any(e["name"] == "datashare" and e["loadStatus"] == "LOADED" for e in entries)


def _materialized(instance: dg.DagsterInstance, run_id: str) -> bool:
    return bool(
        instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1
        ).records
    )


def _months(tag: str) -> list[str]:
    """The months a run's `datashare/partition` tag names: `contract.2022-06`, or a range
    `contract.2022-06...2022-08`."""
    first, _, last = tag.split(".", 1)[1].partition("...")
    months, month = [], first
    while month <= (last or first):
        months.append(month)
        year, number = int(month[:4]), int(month[5:])
        month = f"{year + number // 12:04d}-{number % 12 + 1:02d}"
    return months


def _never_overlapping(records: list[RunRecord], limit: int) -> None:
    """At most `limit` runs in progress at any instant, never two of one contract."""
    spans = [(r.start_time, r.end_time, r.dagster_run.tags[CONTRACT_TAG]) for r in records]
    assert all(start and end for start, end, _ in spans), spans
    edges = sorted([(s, 1, p) for s, _, p in spans] + [(e, -1, p) for _, e, p in spans])
    running: dict[str, int] = {}
    for _, step, partition in edges:  # an end sorts before a start at the same instant
        running[partition] = running.get(partition, 0) + step
        assert running[partition] <= 1, f"two runs of {partition} at once: {spans}"
        assert sum(running.values()) <= limit, f"more than {limit} runs at once: {spans}"


# Run retries' event consumer looks for failed runs every second (Dagster's default: five).
QUICKER_DAEMON_ENV = {"DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1"}


def quicker_daemon(dagster_home: Path) -> None:
    """Shorten the daemon's waits with Dagster's own settings, so that a test waits for work
    rather than for timers: the run queue looked at every second rather than every five (an
    edit of the instance's dagster.yaml, which datashare then leaves alone). With
    QUICKER_DAEMON_ENV in the daemon's environment."""
    config = dagster_home / "dagster.yaml"
    coordinator = "  class: QueuedRunCoordinator\n"
    assert coordinator in config.read_text()
    config.write_text(
        config.read_text().replace(
            coordinator, coordinator + "  config:\n    dequeue_interval_seconds: 1\n"
        )
    )


@pytest.mark.slow
def test_the_daemon_takes_deliveries_through_the_queue_and_a_kill_loses_and_repeats_nothing(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop_and_search,
    real_stop_and_search,
):
    timings: dict[str, float] = {}
    began = time.monotonic()
    pg_env = _use_postgres(monkeypatch, postgres, "deployment", tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("DATASHARE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in ("DATASHARE_DROP_ZONE", "DATASHARE_LAKE", "DATASHARE_MAX_RUNS"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    settings.ensure_folders()  # what `datashare doctor` does first, before the units start
    health = instance_health(settings)  # ... and it makes the instance's tables
    assert health.ok, health.problems
    quicker_daemon(settings.dagster_home)
    port = _closed_port()
    env = {
        **os.environ,
        **pg_env,
        "DATASHARE_HOME": str(home),
        "DAGSTER_HOME": str(settings.dagster_home),
        "DATASHARE_SETTLE_SECONDS": "0",  # whole files, copied at once
        "DATASHARE_SENSOR_INTERVAL_SECONDS": "2",
        **QUICKER_DAEMON_ENV,
        "DATASHARE_UI_HOST": "127.0.0.1",
        "DATASHARE_UI_PORT": str(port),
    }
    daemon_argv = unit_command(UNITS["daemon"], env)
    logs = [tmp_path / "daemon.log", tmp_path / "webserver.log"]
    url = f"http://127.0.0.1:{port}"
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    with (
        _service(unit_command(UNITS["webserver"], env), env, logs[1]) as webserver,
        _service(daemon_argv, env, logs[0]) as daemon,
    ):
        # The force drops its files at once, while the webserver is still loading: the UI
        # is looked at only at the end, and its start-up need not hold up the runs.

        # The force drops June 2022 (the real file, then the same bytes again under another
        # name: two runs for one month) and two synthetic months.
        june = settings.dropzone / CONTRACT / REAL_PERIOD
        june.mkdir(parents=True)
        shutil.copyfile(real_stop_and_search, june / real_stop_and_search.name)
        shutil.copyfile(real_stop_and_search, june / "resent.csv")
        for i, (period, rows) in enumerate(SYNTHETIC.items()):
            target = settings.dropzone / CONTRACT / period / f"{period}.csv"
            write_delivery(stop_and_search, period, target, rows=rows, seed=i, defect_rate=0)
        dropped = time.monotonic()

        # Kill the daemon (and with it its code server and every run worker) once a run is
        # mid-way: past intake, not finished, and no other run is still starting.
        def mid_run() -> list[str]:
            records = instance.get_run_records()
            status = {r.dagster_run.run_id: r.dagster_run.status for r in records}
            if dg.DagsterRunStatus.STARTING in status.values():
                return []
            started = [i for i, s in status.items() if s == dg.DagsterRunStatus.STARTED]
            return started if any(_materialized(instance, i) for i in started) else []

        _wait_for("a run mid-way", mid_run, 240, logs)
        timings["first run mid-way"] = time.monotonic() - dropped
        _kill_group(daemon)
        killed = [
            r.dagster_run.run_id
            for r in instance.get_run_records(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            )
        ]
        assert killed, "every run had finished by the time the daemon was killed"
        # With no daemon, nothing fails them: they stay STARTED until the daemon is back and
        # its run monitoring fails them (each run's only failure is monitoring's, recorded
        # after this restart: asserted below), not for a sleep's worth of seconds.
        assert all(instance.get_run_by_id(i).status == dg.DagsterRunStatus.STARTED for i in killed)
        restarted_at = time.time()

        restarted = time.monotonic()
        with _service(daemon_argv, env, logs[0]):

            def settled() -> bool:
                runs = instance.get_runs()
                if not runs or any(r.status not in TERMINAL for r in runs):
                    return False
                parents = {r.tags.get("dagster/parent_run_id") for r in runs}
                failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
                return all(i in parents for i in failed)  # each failure retried

            _wait_for("every run finished or retried", settled, SETTLE_TIMEOUT, logs)
            timings["after the restart, all done"] = time.monotonic() - restarted
            _wait_for(
                "the webserver with the code location", lambda: _webserver_ready(url), 180, logs
            )
            assert webserver.poll() is None  # the same webserver throughout, never restarted
            data = _graphql(url, INSTANCE_QUERY)
            stopping = time.monotonic()
    timings["the services stopped"] = time.monotonic() - stopping

    # The UI shows the same instance: queued runs, the daemon's parts healthy after the
    # restart, and the contract's runs.
    assert data["instance"]["runQueuingSupported"]
    assert data["instance"]["runLauncher"]["name"] == "LocalRunLauncher"
    daemons = {d["daemonType"]: d for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]}
    for part in ("SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"):
        assert daemons[part]["required"] and daemons[part]["healthy"], daemons
    contract_runs = data["runsOrError"]["results"]

    records = instance.get_run_records()
    by_id = {r.dagster_run.run_id: r.dagster_run for r in records}
    retries = [r for r in by_id.values() if r.tags.get("dagster/parent_run_id")]
    firsts = [r for r in by_id.values() if not r.tags.get("dagster/parent_run_id")]
    # The sensor asked for one run of the contract for the months new at its tick (the
    # resent June file, if it came a tick later, in a run of its own), and each went
    # through the queue.
    covered = [m for r in firsts for m in _months(r.tags[PARTITION_TAG])]
    assert set(covered) == {REAL_PERIOD, *SYNTHETIC}, [r.tags for r in firsts]
    assert len(firsts) <= 3, [r.tags for r in firsts]
    assert all(r.tags[CONTRACT_TAG] == CONTRACT for r in firsts)
    assert all(r.tags.get("dagster/sensor_name") == "new_deliveries" for r in firsts)
    for run in by_id.values():
        enqueued = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
        assert enqueued, f"{run.run_id} did not go through the run queue"
    assert {r["runId"] for r in contract_runs} == set(by_id)
    # Each run the kill left STARTED was failed by run monitoring, saying why, and retried
    # once, from where it failed, by run retries; the retry succeeded.
    for run_id in killed:
        assert by_id[run_id].status == dg.DagsterRunStatus.FAILURE
        failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        messages = [e.message or "" for e in failures]
        assert messages and all("is gone, and its run worker with it" in m for m in messages), (
            messages
        )
        assert all(e.timestamp >= restarted_at for e in failures), (restarted_at, failures)
        [retry] = [r for r in retries if r.tags["dagster/parent_run_id"] == run_id]
        assert retry.status == dg.DagsterRunStatus.SUCCESS
        assert retry.tags[PARTITION_TAG] == by_id[run_id].tags[PARTITION_TAG]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in by_id.values() if r.run_id
               not in killed)  # fmt: skip
    # The queue held its limits throughout, across the kill: one run of a contract at a
    # time (the killed run kept its place until it was failed), two runs at most.
    _never_overlapping(records, DEFAULT_MAX_RUNS)

    # Each month published once, whole: June's rows are the file's, the resent copy was
    # a duplicate, and every delivery was validated and published exactly once.
    with connect(settings.warehouse) as con:
        rows = dict(
            con.execute(
                "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1"
            ).fetchall()
        )
        deliveries = con.execute(
            "SELECT period, source_path, status FROM governance.deliveries "
            "WHERE contract = 'stop_and_search' ORDER BY 1, 2"
        ).fetchall()
        events = con.execute(
            "SELECT delivery_id, count(*) FILTER (WHERE event = 'validated'), "
            "count(*) FILTER (WHERE event = 'published') FROM governance.delivery_events "
            "WHERE contract = 'stop_and_search' AND event IN ('validated', 'published') "
            "GROUP BY 1"
        ).fetchall()
    assert rows == {REAL_PERIOD: REAL_ROWS, **SYNTHETIC}
    assert deliveries == [
        (REAL_PERIOD, f"{CONTRACT}/{REAL_PERIOD}/{REAL_STOP_AND_SEARCH.name}", "published"),
        (REAL_PERIOD, f"{CONTRACT}/{REAL_PERIOD}/resent.csv", "duplicate"),
        *[(p, f"{CONTRACT}/{p}/{p}.csv", "published") for p in SYNTHETIC],
    ]
    assert len(events) == 1 + len(SYNTHETIC), events
    assert all(validated == published == 1 for _, validated, published in events), events
    timings["whole test"] = time.monotonic() - began
    print("deployment timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    instance.dispose()
