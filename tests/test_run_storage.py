"""The home's Dagster run storage (`pipelines.home.run_storage`): `runs.db` opened once per
process instead of once per query, with every run's status still seen by the UI's
processes, and homes made before it read as they are."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipelines.home.instance_config import dagster_yaml
from pipelines.home.run_storage import KeptOpenSqliteRunStorage
from pipelines.home.settings import Settings, load_settings
from tests.previous_version import previous_version_code

ROOT = Path(__file__).resolve().parents[1]
# The last commit whose dagster.yaml left Dagster's run storage as it is (an engine per
# query): the homes made by the previous version.
PREVIOUS_VERSION = "9dc7ca0"

MONTHS = dg.StaticPartitionsDefinition(["2024-01", "2024-02", "2024-03"])
# The longest a child forked from the test's process may live (SIGALRM ends it): a fork
# copies only this thread, and a child that waited on a lock another thread held would
# otherwise hang the test for ever rather than fail it.
CHILD_SECONDS = 300


def fork_child(work: Callable[[], None]) -> int:
    """`work` in a child forked from this process, which never returns into pytest (status
    1 unless `work` ends the child itself; a traceback on stderr if it raised): its pid. A
    fork rather than a new interpreter: the child has Dagster imported already (a new
    `python -c` paid 1.5-1.8 s of CPU importing it) and opens its own instance and
    connections, as another process does; nothing of this process's may be open on the home."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(CHILD_SECONDS)  # a child stuck on a lock copied by the fork dies
        try:
            work()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    return pid


@dg.asset(partitions_def=MONTHS)
def deliveries(context) -> dg.MaterializeResult:  # Dagster reads the hint: none here
    context.log.info("a month")
    return dg.MaterializeResult(metadata={"rows": 13_000})


def _materialize(instance: dg.DagsterInstance, month: str) -> str:
    result = dg.materialize([deliveries], instance=instance, partition_key=month)
    assert result.success
    return result.run_id


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as con:
        return con.execute("PRAGMA journal_mode").fetchone()[0]


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
    return [*rows, ("alembic", str(revision))]


def test_the_home_keeps_its_runs_in_the_kept_open_storage(home: Settings):
    """dagster.yaml names it (for SQLite; PostgreSQL keeps its own), and it keeps runs.db
    where Dagster's default storage keeps it: under the folder it opened."""
    assert "class: KeptOpenSqliteRunStorage" in (home.dagster_home / "dagster.yaml").read_text()
    assert "run_storage" not in dagster_yaml("postgres")
    copy = home.dagster_home.parent / "copy"
    shutil.copytree(home.dagster_home, copy)
    with dg.DagsterInstance.from_config(str(copy)) as instance:
        assert isinstance(instance.run_storage, KeptOpenSqliteRunStorage)
        run_id = _materialize(instance, "2024-01")
    with sqlite3.connect(copy / "history" / "runs.db") as con:
        assert con.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone() == (
            "SUCCESS",
        )
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as original:
        assert original.get_run_by_id(run_id) is None


def test_a_run_opens_runs_db_a_few_times_not_once_per_query(home: Settings):
    """A run reads and writes runs.db a few dozen times; Dagster's storage opened it for
    each. Kept open, it is opened when the instance opens and then once; its commits are
    unsynced in WAL, and the database is Dagster's all the same (same tables, same schema
    revision as Dagster's own storage makes)."""
    opened: Counter[str] = Counter()

    def count(dbapi_connection, _record) -> None:
        path = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        opened[Path(path).name] += 1

    event.listen(Engine, "connect", count)
    try:
        with dg.DagsterInstance.get() as instance:
            opening = opened["runs.db"]
            runs = [_materialize(instance, month) for month in ("2024-01", "2024-02")]
            with instance.run_storage.connect() as conn:
                synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            statuses = [instance.get_run_by_id(r).status for r in runs]
    finally:
        event.remove(Engine, "connect", count)
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * 2
    # Dagster's own check of the database when the instance opens, then the kept one.
    assert opening <= 4, opened
    assert opened["runs.db"] - opening <= 2, opened  # Dagster's: one per query, 30 or more
    assert synchronous == 1  # NORMAL
    ours = home.dagster_home / "history" / "runs.db"
    assert _journal_mode(ours) == "wal"
    theirs = home.home / "dagster-default"
    SqliteRunStorage.from_local(str(theirs)).dispose()
    assert _schema(ours) == _schema(theirs / "runs.db")


def _writer(dagster_home: Path, to_test: int, from_test: int) -> None:
    """In a process of its own: a run per month, each run's id said to the test once it
    has finished, then the next when the test has read its status; then killed."""
    said, told = os.fdopen(to_test, "w"), os.fdopen(from_test)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    for month in ("2024-01", "2024-02"):
        result = dg.materialize([deliveries], instance=instance, partition_key=month)
        print(result.run_id, file=said, flush=True)
        told.readline()  # the test reads the status meanwhile
    os.kill(os.getpid(), signal.SIGKILL)


def test_another_process_sees_each_status_as_it_is_written_and_after_a_kill(home: Settings):
    """The UI's processes read runs.db while a writer keeps it open: each run's status is
    there as soon as it is written, and a writer killed without closing anything loses
    none of it (a commit is in the WAL file, whatever is synced)."""
    # The writer is a child forked from this process, which has Dagster imported already
    # (a new `python -c` paid 1.5-2 s of CPU importing it); it opens its own instance and
    # connections on the home, as another process does. The home's databases are made
    # first, by this process alone, as the old writer's import of Dagster gave the reader
    # time to: two processes opening a new home at the same instant race to make
    # Dagster's own schedules.db ("table jobs already exists"), not what this test is
    # about. Nothing of this process's is open on the home when it forks (SQLite's state
    # of an open database must not be copied into a child).
    with dg.DagsterInstance.from_config(str(home.dagster_home)):
        pass
    said_r, said_w = os.pipe()
    told_r, told_w = os.pipe()

    def writer() -> None:
        os.close(said_r)
        os.close(told_w)
        _writer(home.dagster_home, said_w, told_r)

    pid = fork_child(writer)
    os.close(said_w)
    os.close(told_r)
    seen = []
    with (
        os.fdopen(said_r) as said,
        os.fdopen(told_w, "w") as told,
        dg.DagsterInstance.from_config(str(home.dagster_home)) as reader,
    ):
        for _ in range(2):
            run_id = said.readline().strip()
            run = reader.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            seen.append(run_id)
            told.write("\n")
            told.flush()
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == -signal.SIGKILL
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as after:
        assert [r.run_id for r in after.get_runs()] == seen[::-1]


def test_a_new_runs_db_is_made_by_one_process_at_a_time(tmp_path: Path):
    """Opening a new home's instance waits while another opening holds the run storage's
    lock, so two processes never both make and stamp `runs.db` (a race that left two
    revisions in alembic_version); once it is free, the waiting one opens it whole."""
    import fcntl
    import threading

    folder = tmp_path / "dagster"
    (folder / "history").mkdir(parents=True)
    (folder / "dagster.yaml").write_text(dagster_yaml("sqlite"))
    opened: list[dg.DagsterInstance] = []
    with open(folder / "history" / ".runs.db.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process, making runs.db now
        opener = threading.Thread(
            target=lambda: opened.append(dg.DagsterInstance.from_config(str(folder)))
        )
        opener.start()
        # Until Linux lists its request as one waiting on that lock (rather than a fixed
        # two seconds, long enough for an opening that does not wait to have finished).
        assert _waits_on(folder / "history" / ".runs.db.lock"), "the opening took no lock"
        assert opener.is_alive() and not opened  # waiting its turn
    opener.join(timeout=60)
    assert len(opened) == 1
    with opened[0] as instance:
        assert instance.get_runs() == []
    with sqlite3.connect(folder / "history" / "runs.db") as con:
        assert len(con.execute("SELECT version_num FROM alembic_version").fetchall()) == 1


def test_a_new_runs_db_is_stamped_from_the_scripts_its_check_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A new home's instance reads alembic's migration scripts (89 files) three times, not
    four: once for the check and stamp of runs.db and the event log (their scripts read
    once per process), twice for Dagster's own schedule storage (its check, then its
    stamp). runs.db is then stamped with Dagster's newest revision, once, as its own
    storage stamps it (the schema itself: test_a_run_opens_runs_db_a_few_times...)."""
    from alembic.script import ScriptDirectory

    from pipelines.home import event_log_storage

    real = ScriptDirectory.from_config
    reads: list[object] = []

    def counted(config):
        reads.append(config)
        return real(config)

    monkeypatch.setattr(ScriptDirectory, "from_config", counted)
    monkeypatch.setattr(event_log_storage, "_SCRIPTS", {})  # as in a new process
    folder = tmp_path / "dagster"
    (folder / "history").mkdir(parents=True)
    (folder / "dagster.yaml").write_text(dagster_yaml("sqlite"))
    with dg.DagsterInstance.from_config(str(folder)) as instance:
        assert instance.get_runs() == []
    assert len(reads) == 3, "alembic's scripts read again to stamp runs.db"
    head = ScriptDirectory.from_config(reads[0]).get_current_head()
    with sqlite3.connect(folder / "history" / "runs.db") as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def _waits_on(path: Path, timeout: float = 60.0) -> bool:
    """Whether a request for the lock on `path` comes to wait within `timeout` seconds:
    /proc/locks lists a blocked request with "->", by the file's inode."""
    import time

    inode = f":{path.stat().st_ino} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks", encoding="ascii") as locks:
            if any("->" in line and inode in line for line in locks):
                return True
        time.sleep(0.02)
    return False


@settings(max_examples=5, deadline=None)
@given(order=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=4))
def test_runs_made_through_two_instances_in_any_order_are_all_there(
    tmp_path_factory: pytest.TempPathFactory, order: list[int]
):
    """Two instances on one home (a run and the daemon, each with its kept connection):
    whatever order they make runs in, each sees every run, with its status and tags."""
    folder = tmp_path_factory.mktemp("dagster")
    (folder / "dagster.yaml").write_text(dagster_yaml())
    made = []
    with (
        dg.DagsterInstance.from_config(str(folder)) as first,
        dg.DagsterInstance.from_config(str(folder)) as second,
    ):
        instances = (first, second)
        for which in order:
            made.append(_materialize(instances[which], "2024-03"))
        for instance in instances:
            runs = instance.get_runs()
            assert {r.run_id for r in runs} == set(made)
            assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
            assert {r.tags.get("dagster/partition") for r in runs} == {"2024-03"}


PREVIOUS_RUN = """
import sys
from pathlib import Path
import dagster as dg
from pipelines.home.settings import load_settings
settings = load_settings(Path(sys.argv[1]))
settings.ensure_folders()  # writes that version's dagster.yaml
months = dg.StaticPartitionsDefinition(["2024-01", "2024-02", "2024-03"])
@dg.asset(partitions_def=months)
def deliveries(context):
    return dg.MaterializeResult(metadata={"rows": 12_000})
with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
    result = dg.materialize([deliveries], instance=instance, partition_key="2024-01")
print(result.run_id)
"""


def run_previous_version(old: Path, source: str, argv: list[str], dagster_home: Path) -> str:
    """`source` run as the previous version's program: in a child forked from this process
    with every module of this version's `pipelines` and `schemas` forgotten and `old` (that
    version's code) first on the path, as `python -c source` with PYTHONPATH=old did, but
    with Dagster and the libraries already imported (a new interpreter paid ~1.5 s of CPU
    importing them). What it printed; a failure (its traceback) fails the test."""
    said_r, said_w = os.pipe()

    def previous() -> None:
        os.close(said_r)
        os.dup2(said_w, 1)
        sys.stdout = os.fdopen(1, "w")
        for name in [n for n in sys.modules if n.split(".")[0] in ("pipelines", "schemas")]:
            del sys.modules[name]
        sys.path.insert(0, str(old))
        os.chdir(old)
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        sys.argv = ["-c", *argv]
        exec(compile(source, "<previous version>", "exec"), {"__name__": "__main__"})
        sys.stdout.flush()
        os._exit(0)

    pid = fork_child(previous)
    os.close(said_w)
    with os.fdopen(said_r) as said:
        printed = said.read()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert code == 0, f"the previous version's run exited {code} (its traceback above)"
    return printed


@pytest.fixture(scope="module")
def previous_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home whose instance the previous version made, with a run in it (its run id);
    made once, copied by each test."""
    folder = tmp_path_factory.mktemp("previous")
    old = folder / "previous-version"
    previous_version_code(PREVIOUS_VERSION, old)
    home = folder / "home"
    printed = run_previous_version(old, PREVIOUS_RUN, [str(home)], home / "dagster")
    text = (home / "dagster" / "dagster.yaml").read_text()
    assert "run_storage" not in text  # Dagster's own run storage
    return home, printed.strip().splitlines()[-1]


def _copy(previous_home: tuple[Path, str], target: Path) -> tuple[Settings, str]:
    home, run_id = previous_home
    shutil.copytree(home, target / "home")
    return load_settings(target / "home"), run_id


def test_a_home_the_previous_version_made_keeps_its_runs_and_moves_to_the_new_storage(
    previous_home: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Its dagster.yaml (datashare's, unedited) is rewritten by the next command; the runs
    it holds are all still there, and new runs add to them."""
    settings, old_run = _copy(previous_home, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    settings.ensure_folders()  # what every datashare command does first
    assert (settings.dagster_home / "dagster.yaml").read_text() == settings.dagster_yaml()
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert isinstance(instance.run_storage, KeptOpenSqliteRunStorage)
        new_run = _materialize(instance, "2024-02")
        assert {r.run_id for r in instance.get_runs()} == {old_run, new_run}
        assert instance.get_run_by_id(old_run).status == dg.DagsterRunStatus.SUCCESS
        status = instance.get_status_by_partition(
            dg.AssetKey("deliveries"), ["2024-01", "2024-02"], MONTHS
        )
    assert status is not None and set(status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}


def test_an_edited_dagster_yaml_of_the_previous_version_is_left_alone_and_still_opens(
    previous_home: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    settings, old_run = _copy(previous_home, tmp_path)
    config = settings.dagster_home / "dagster.yaml"
    edited = config.read_text().replace("max_concurrent_runs: 2", "max_concurrent_runs: 6")
    config.write_text(edited)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    settings.ensure_folders()
    assert config.read_text() == edited
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert not isinstance(instance.run_storage, KeptOpenSqliteRunStorage)
        new_run = _materialize(instance, "2024-02")
        assert {r.run_id for r in instance.get_runs()} == {old_run, new_run}
