"""The home's Dagster event log (`pipelines.home.event_log_storage`): each database opened
once per process instead of once per event, with nothing lost or hidden from the UI, and
homes made before it read as they are."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipelines.home import event_log_storage
from pipelines.home.event_log_storage import OPEN_AT_ONCE, KeptOpenSqliteEventLogStorage
from pipelines.home.instance_config import SQLITE, dagster_yaml
from pipelines.home.settings import Settings, load_settings
from tests.previous_version import previous_version_code
from tests.test_run_storage import fork_child, run_previous_version

# The last commit whose dagster.yaml left Dagster's event log as it is (a connection per
# event): the homes made by the previous version.
PREVIOUS_VERSION = "3bbe134"

MONTHS = dg.StaticPartitionsDefinition(["2024-01", "2024-02"])
LINES = 40  # log lines per materialization: an event each, as a month's run writes many


@dg.asset(partitions_def=MONTHS)
def deliveries(context) -> dg.MaterializeResult:  # Dagster reads the hint: none here
    for line in range(LINES):
        context.log.info(f"line {line}")
    return dg.MaterializeResult(metadata={"rows": 13_000})


def _materialize(instance: dg.DagsterInstance, month: str) -> str:
    result = dg.materialize([deliveries], instance=instance, partition_key=month)
    assert result.success
    return result.run_id


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """A run's log as the UI lists it: log lines, and Dagster's own events by their text."""
    return [_text(entry) for entry in instance.all_logs(run_id)]


def _text(entry) -> str:
    return entry.user_message or (entry.dagster_event.message if entry.dagster_event else "")


def _revision(path: Path) -> str | None:
    with sqlite3.connect(path) as con:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as con:
        return con.execute("PRAGMA journal_mode").fetchone()[0]


def test_the_home_keeps_its_event_log_in_the_kept_open_storage(home: Settings):
    """dagster.yaml names it, and Dagster keeps the event logs where its default storage
    keeps them: under the folder it opened, whatever DAGSTER_HOME says."""
    text = (home.dagster_home / "dagster.yaml").read_text()
    assert "class: KeptOpenSqliteEventLogStorage" in text
    assert "event_log_storage" not in dagster_yaml("postgres")  # PostgreSQL keeps its own
    copy = home.dagster_home.parent / "copy"
    shutil.copytree(home.dagster_home, copy)
    with dg.DagsterInstance.from_config(str(copy)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, KeptOpenSqliteEventLogStorage)
        assert Path(storage._base_dir) == copy / "history" / "runs"
        run_id = _materialize(instance, "2024-01")
    assert (copy / "history" / "runs" / f"{run_id}.db").exists()
    assert not (home.dagster_home / "history" / "runs" / f"{run_id}.db").exists()


def test_a_run_opens_each_database_once_not_once_per_event(home: Settings):
    """A run of about fifty events opens its database and the index a few times (Dagster
    making and checking them, then the connection kept), not once per event; every event
    is stored, and the databases stay in WAL with unsynced commits."""
    opened: Counter[str] = Counter()

    def count(dbapi_connection, _record) -> None:
        path = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        opened[Path(path).name] += 1

    event.listen(Engine, "connect", count)
    try:
        with dg.DagsterInstance.get() as instance:
            run_id = _materialize(instance, "2024-01")
            messages = _messages(instance, run_id)
            storage = instance.event_log_storage
            with storage.run_connection(run_id) as conn:
                synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        event.remove(Engine, "connect", count)
    assert [f"line {n}" for n in range(LINES)] == [m for m in messages if m.startswith("line ")]
    assert len(messages) > LINES
    # Dagster's own creation of a new database takes four connections; then the kept one.
    # Opened per event, as before, the run's database would be opened fifty times or more.
    assert opened[f"{run_id}.db"] <= 5, opened
    assert opened["index.db"] <= 7, opened
    assert synchronous == 1  # NORMAL
    runs = home.dagster_home / "history" / "runs"
    assert _journal_mode(runs / f"{run_id}.db") == "wal"
    assert _journal_mode(runs / "index.db") == "wal"
    # The run's database, made in WAL from its first table on, is Dagster's all the same:
    # stamped with the schema revision the index (made by Dagster's own code) has.
    assert _revision(runs / f"{run_id}.db") == _revision(runs / "index.db") is not None


def _schema(path: Path) -> tuple[list, list, str]:
    """A database's tables, indexes and their SQL, its schema revision and journal mode."""
    with sqlite3.connect(path) as con:
        objects = sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    return objects, revision, mode


def test_new_run_databases_are_dagsters_own_with_its_scripts_read_once(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each new run's database is made with exactly the tables, indexes, schema revision
    and journal mode Dagster's own storage gives it, and alembic's migration scripts are
    read once per process, not twice per new database (each reading cost ~10 ms a time,
    three or four databases a `datashare run`)."""
    from alembic.script import ScriptDirectory
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    real = ScriptDirectory.from_config
    reads: list[object] = []

    def counted(config):
        reads.append(config)
        return real(config)

    monkeypatch.setattr(ScriptDirectory, "from_config", counted)
    with dg.DagsterInstance.get() as instance:
        run_ids = [_materialize(instance, "2024-01")]  # a new home's databases made
    # Then, as a new `datashare run` on that home: no scripts read yet in the process. The
    # run storage's check and each new run's database read the one script folder all of
    # Dagster's storages share, once between them; Dagster's own schedule storage check
    # (not ours) reads it once more.
    monkeypatch.setattr(event_log_storage, "_SCRIPTS", {}, raising=False)
    getattr(event_log_storage.migration_scripts, "cache_clear", lambda: None)()
    reads.clear()
    with dg.DagsterInstance.get() as instance:
        run_ids.append(_materialize(instance, "2024-02"))
        assert len(reads) == 2, "alembic's scripts read more than once by the storages"
        run_ids.append(_materialize(instance, "2024-01"))
    assert len(reads) == 2, "alembic's scripts read again for a new run's database"
    # Dagster's own storage, making a run's database in another folder.
    theirs = SqliteEventLogStorage(str(tmp_path / "dagster-own"))
    with theirs.run_connection("made-by-dagster"):
        pass
    expected = _schema(tmp_path / "dagster-own" / "made-by-dagster.db")
    assert expected[1]  # stamped
    runs = home.dagster_home / "history" / "runs"
    for run_id in run_ids:
        assert _schema(runs / f"{run_id}.db") == expected


def _made_in(dbapi_connection) -> str:
    """The file name of the database a DB-API connection is open on."""
    return Path(dbapi_connection.execute("PRAGMA database_list").fetchone()[2]).name


def test_a_new_homes_index_and_schedules_are_dagsters_own_made_in_wal(
    home: Settings, tmp_path: Path
):
    """A new home's `index.db` and `schedules/schedules.db` have every table made in WAL,
    not in SQLite's rollback-journal mode in which each CREATE is synced on its own (88
    and 62 syncs measured with strace; 16 and 33 now), and are exactly what Dagster's own
    storages make: the same tables, indexes, revision, journal mode and index markers."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import (
        SqliteScheduleStorage,
    )

    from pipelines.orchestration.instance import open_instance

    modes: dict[str, set[str]] = {}

    def journal_at_create(conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            dbapi = conn.connection.dbapi_connection
            mode = dbapi.execute("PRAGMA journal_mode").fetchone()[0]
            modes.setdefault(_made_in(dbapi), set()).add(mode)

    event.listen(Engine, "before_cursor_execute", journal_at_create)
    try:
        with open_instance(home) as instance:
            _materialize(instance, "2024-01")
    finally:
        event.remove(Engine, "before_cursor_execute", journal_at_create)
    assert modes["index.db"] == {"wal"}, modes
    assert modes["schedules.db"] == {"wal"}, modes
    # Dagster's own, made in other folders.
    SqliteEventLogStorage(str(tmp_path / "dagster-own-runs"))
    SqliteScheduleStorage.from_local(str(tmp_path / "dagster-own-schedules"))
    runs = home.dagster_home / "history" / "runs"
    assert _schema(runs / "index.db") == _schema(tmp_path / "dagster-own-runs" / "index.db")
    ours = home.dagster_home / "schedules" / "schedules.db"
    theirs = tmp_path / "dagster-own-schedules" / "schedules.db"
    assert _schema(ours) == _schema(theirs)
    assert _rows(ours, "secondary_indexes") == _rows(theirs, "secondary_indexes") != []
    assert _rows(runs / "index.db", "secondary_indexes") == _rows(
        tmp_path / "dagster-own-runs" / "index.db", "secondary_indexes"
    )


def _rows(path: Path, table: str) -> list[tuple]:
    """A table's rows but their timestamps (the data migrations Dagster marks as done)."""
    with sqlite3.connect(path) as con:
        return sorted(con.execute(f"SELECT name FROM {table}").fetchall())


def test_the_index_schema_is_asked_once_not_before_every_asset_event(home: Settings):
    """Dagster asks whether the index has a table (asset event tags, check executions)
    before every asset event and check evaluation, each time on a new engine and a new
    connection to `index.db`, and reads the columns of `asset_keys` before each asset
    event. Once a table or column is there it stays, so a second run asks nothing again:
    it opens `index.db` not once, and reads no table's columns; what it stores is read
    back whole (its materialization, with its metadata, on the asset's page)."""
    opened: Counter[str] = Counter()
    column_reads: list[str] = []

    def count(dbapi_connection, _record) -> None:
        opened[_made_in(dbapi_connection)] += 1

    def columns_read(conn, _cursor, statement, *_args) -> None:
        # (The run's new database is made as Dagster makes it: its tables looked up first.)
        if "PRAGMA" in statement and _made_in(conn.connection.dbapi_connection) == "index.db":
            column_reads.append(statement)

    with dg.DagsterInstance.get() as instance:
        _materialize(instance, "2024-01")  # the index made and its schema seen once
        event.listen(Engine, "connect", count)
        event.listen(Engine, "before_cursor_execute", columns_read)
        try:
            run_id = _materialize(instance, "2024-02")
        finally:
            event.remove(Engine, "connect", count)
            event.remove(Engine, "before_cursor_execute", columns_read)
        latest = instance.get_latest_materialization_event(dg.AssetKey("deliveries"))
        tags = instance.get_latest_materialization_code_versions([dg.AssetKey("deliveries")])
    assert opened["index.db"] == 0, opened
    assert column_reads == [], column_reads
    assert latest is not None and latest.run_id == run_id
    assert latest.asset_materialization.metadata["rows"] == dg.IntMetadataValue(13_000)
    assert latest.asset_materialization.partition == "2024-02"
    assert tags is not None


def test_the_ui_sees_a_runs_events_live_while_the_writer_keeps_its_database_open(
    home: Settings,
):
    """The webserver, another instance on the same home, reads each event as soon as the
    run commits it, and its watcher (which the run page's live log uses) is told, though
    the run's connection stays open and writes only the WAL beside the database."""
    with (
        dg.DagsterInstance.from_config(str(home.dagster_home)) as run,
        dg.DagsterInstance.from_config(str(home.dagster_home)) as webserver,
    ):
        run_id = _materialize(run, "2024-01")
        dagster_run = run.get_run_by_id(run_id)
        seen: list[str] = []
        arrived = threading.Event()

        def on_event(entry, _cursor) -> None:
            seen.append(_text(entry))
            if _text(entry) == "a later event":
                arrived.set()

        cursor = str(webserver.event_log_storage.get_records_for_run(run_id).cursor)
        webserver.watch_event_logs(run_id, cursor, on_event)
        run.report_engine_event("a later event", dagster_run=dagster_run)
        wal = home.dagster_home / "history" / "runs" / f"{run_id}.db-wal"
        assert wal.exists()  # the run's connection is still open: no checkpoint yet
        assert "a later event" in _messages(webserver, run_id)
        assert arrived.wait(15), seen
        webserver.end_watch_event_logs(run_id, on_event)


def _killed_writer(dagster_home: Path, run_id: str) -> None:
    """In a process of its own: 20 events of `run_id`, then its death (no close, no
    checkpoint)."""
    with_run = dg.DagsterInstance.from_config(str(dagster_home))
    run = with_run.get_run_by_id(run_id)
    for n in range(20):
        with_run.report_engine_event(f"before the kill {n}", dagster_run=run)
    os._exit(9)  # killed: no close, no checkpoint


def _forked(work: Callable[[], None]) -> int:
    """`work` in a child forked from this process (`fork_child`): its exit status."""
    return os.waitstatus_to_exitcode(os.waitpid(fork_child(work), 0)[1])


def test_events_committed_before_a_process_is_killed_are_kept(home: Settings):
    """Commits are no longer synced to disk one by one, but a process that dies keeps what
    it committed: the next instance to open the home reads every event."""
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        run_id = _materialize(instance, "2024-02")
    assert _forked(lambda: _killed_writer(home.dagster_home, run_id)) == 9
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        messages = _messages(instance, run_id)
    assert [f"before the kill {n}" for n in range(20)] == [
        m for m in messages if m.startswith("before the kill")
    ]


@pytest.fixture(scope="module")
def many_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.DagsterInstance, list[dg.DagsterRun]]]:
    """An instance with more runs than it keeps open, each run's database made once."""
    folder = tmp_path_factory.mktemp("many-runs")
    (folder / "dagster.yaml").write_text(dagster_yaml(SQLITE))
    with dg.DagsterInstance.from_config(str(folder)) as instance:
        # Runs of a backfill job: their events go to each run's own database.
        runs = [
            dg.DagsterRun(job_name="backfill", run_id=str(uuid.uuid4()))
            for _ in range(OPEN_AT_ONCE + 3)
        ]
        for run in runs:
            instance.report_engine_event("run made", dagster_run=run)
        yield instance, runs


@settings(max_examples=10, deadline=None)
@given(order=st.lists(st.integers(0, OPEN_AT_ONCE + 2), min_size=1, max_size=30))
def test_any_order_of_runs_reads_back_what_each_wrote(
    many_runs: tuple[dg.DagsterInstance, list[dg.DagsterRun]], order: list[int]
):
    """Whatever order events reach more runs than are kept open, each run's log reads back
    exactly its own events in order, and no more databases are open than the limit."""
    instance, runs = many_runs
    mark = uuid.uuid4().hex  # this example's events
    written: dict[str, list[str]] = {run.run_id: [] for run in runs}
    for step, index in enumerate(order):
        run = runs[index]
        instance.report_engine_event(f"{mark} {step}", dagster_run=run)
        written[run.run_id].append(f"{mark} {step}")
        assert len(instance.event_log_storage._engines) <= OPEN_AT_ONCE
    for run_id, messages in written.items():
        assert [m for m in _messages(instance, run_id) if m.startswith(mark)] == messages


PREVIOUS_RUN = """
import sys
from pathlib import Path
import dagster as dg
from pipelines.home.settings import load_settings
settings = load_settings(Path(sys.argv[1]))
settings.ensure_folders()  # writes that version's dagster.yaml
months = dg.StaticPartitionsDefinition(["2024-01", "2024-02"])
@dg.asset(partitions_def=months)
def deliveries(context):
    context.log.info("made by the previous version")
    return dg.MaterializeResult(metadata={"rows": 12_000})
with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
    result = dg.materialize([deliveries], instance=instance, partition_key="2024-01")
print(result.run_id)
"""


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
    assert "event_log_storage" not in text  # Dagster's own event log storage
    return home, printed.strip().splitlines()[-1]


def _copy(previous_home: tuple[Path, str], target: Path) -> tuple[Settings, str]:
    home, run_id = previous_home
    shutil.copytree(home, target / "home")
    return load_settings(target / "home"), run_id


def test_a_home_the_previous_version_made_keeps_its_runs_and_moves_to_the_new_storage(
    previous_home: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Its dagster.yaml (datashare's, unedited) is rewritten by the next command; the runs
    and materializations it holds are all still there, and new runs add to them."""
    settings, old_run = _copy(previous_home, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    settings.ensure_folders()  # what every datashare command does first
    assert (settings.dagster_home / "dagster.yaml").read_text() == settings.dagster_yaml()
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
        assert "made by the previous version" in _messages(instance, old_run)
        new_run = _materialize(instance, "2024-02")
        assert {r.run_id for r in instance.get_runs()} == {old_run, new_run}
        status = instance.get_status_by_partition(
            dg.AssetKey("deliveries"), ["2024-01", "2024-02"], MONTHS
        )
        latest = instance.get_latest_materialization_event(dg.AssetKey("deliveries"))
    assert latest is not None and latest.run_id == new_run
    assert status is not None and set(status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
    for db in (settings.dagster_home / "history" / "runs").glob("*.db"):
        assert _journal_mode(db) == "wal", db


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
        assert not isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
        assert "made by the previous version" in _messages(instance, old_run)
        new_run = _materialize(instance, "2024-02")
        assert {r.run_id for r in instance.get_runs()} == {old_run, new_run}
