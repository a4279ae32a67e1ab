"""Dagster's SQLite event log, with each database kept open instead of opened per event.

Where a run's time went (cProfile of `datashare run`, a 37-month backfill of one contract,
Dagster 1.13.27): about 1,100 events, each stored by opening its run's database (and for an
asset event the instance's `index.db` too), committing and closing it again: some 1,700
openings for the one run. Dagster already keeps these databases in WAL mode (its `_initdb`
sets it when it makes one), so the cost is not the journal but what each opening pays:
- the commit: `synchronous=FULL`, SQLite's default, syncs the WAL to disk at every commit;
- the close: the last connection to close a WAL database checkpoints it (syncs the WAL,
  copies it into the database, syncs that) and deletes the WAL, at every event;
- a new SQLAlchemy engine per event.
Measured here: commit 14.0 s and close 10.3 s of the 40 s the event writes took in a
110 s backfill (load 16); about 20 ms an event on this disk, against 0.01 ms with the same
connection kept open and `synchronous=NORMAL`.

`KeptOpenSqliteEventLogStorage` is Dagster's `SqliteEventLogStorage` (same files, same
schema, same queries) with two changes:
- each database's engine is made once per process and keeps its connection open (a few
  at a time, the most recently used), so no event pays an open or a checkpoint; SQLite
  still checkpoints every 1,000 pages of WAL, and when the connection finally closes;
- `synchronous=NORMAL` on those connections, in WAL mode only: a commit is no longer synced
  to disk at once. SQLite's documentation: in WAL mode this cannot corrupt the database; a
  power cut (not a crash of the process: the commit is already in the file) may lose the
  last events, which the UI would then not show. What is still to run is not read from
  them: `datashare run` and the delivery sensor compare the drop zone with the register.
  Run storage (`runs.db`, each run's status) is Dagster's own, synced as before.
A database in rollback-journal mode (none that Dagster 1.13 made) is left in it, synced
as before. A run's new database is put in WAL before Dagster makes its tables rather than
just after, so its two dozen CREATE statements are not each synced either (0.9-1.2 s a
new run at load 20, then 0.35 s, most of it alembic reading its migration scripts).

`benchmarks/end_to_end.py --only backfill,one_month`, Dagster's storage then this one, back
to back on the same code (another engineer's benchmarks running too; load at each start):
| load | backfill, 37 months | DuckDB | ratio | event log share | one new month |
|---|---|---|---|---|---|
| 21 | 216.0 s, then 118.3 s | 18.4, 19.6 s | 11.7x, 6.0x | 29%, 10% | 81.5, 78.6 s |
| 11-14 | 91.1 s, then 66.0 s | 15.2, 8.5 s | 6.0x, 7.8x | 33%, 11% | 46.3, 33.2 s |
| 6-8 | 50.4 s, then 32.5 s | 5.2, 5.9 s | 9.7x, 5.5x | 40%, 7% | 21.4, 19.7 s |
(The first row without the new-database change above. DuckDB's own copy varies as much as
the runs under such load: compare the seconds and the shares, not only the ratios.)

Dagster's webserver shows a run's events live by watching its database file for changes
(watchdog): with the connection kept open the writes go to the WAL beside it until a
checkpoint, so this storage watches both files.

Named in the home's `dagster.yaml` (`event_log_storage:`) by `pipelines.home.
instance_config`, which imports nothing of Dagster: this module is imported only by
Dagster, when it opens the instance. It takes no configuration: its folder is the
instance's own, where Dagster's default SQLite storage keeps the event logs
(`history/runs/` of the instance's folder), so a home made before it is read as it is, and
a home copied elsewhere still finds its own.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster._config.config_schema import UserConfigSchema
from dagster._core.event_api import EventHandlerFn
from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sql import _alembic_lock, create_engine, get_alembic_config, safe_commit
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool, QueuePool
from watchdog.events import FileSystemEvent

# Databases kept open at once per process: the index and the runs being written or read.
# The webserver reads many runs' databases; each kept one costs a file handle and a mapping.
OPEN_AT_ONCE = 8


def _sync_normal_in_wal(dbapi_connection: Any, _record: Any) -> None:
    """On each new connection: commits unsynced, if (and only if) the database is in WAL."""
    (mode,) = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() == "wal":
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _wal_from_the_start(dbapi_connection: Any, record: Any) -> None:
    """A database not made yet goes into WAL before Dagster makes its tables, not after:
    each of its two dozen CREATE statements would otherwise be synced to disk on its own
    (half of the second a new run's database took here). Dagster sets WAL right after."""
    try:
        (pages,) = dbapi_connection.execute("PRAGMA page_count").fetchone()
        if pages == 0:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        return  # another process is making it: Dagster's own retries deal with that
    _sync_normal_in_wal(dbapi_connection, record)


def migration_scripts(storage_module_file: str) -> ScriptDirectory:
    """The alembic migration scripts of a Dagster storage module (its `__file__`), read once
    per process. Dagster's own schema check and stamp (`check_alembic_revision`,
    `stamp_alembic_rev`) read every script again at each call: each new run's database
    read them twice, some 30 ms of the 60 ms it took to make (three or four databases a
    `datashare run`). The installed scripts do not change while a process runs.

    Dagster's SQLite storages (event log, runs, schedules) name one and the same script
    folder in their `alembic.ini`, so the scripts are kept by that folder: the event log
    and the run storage read its 89 scripts once between them, not once each (half of
    the 0.06 s of CPU an existing home's instance took to open)."""
    config = get_alembic_config(storage_module_file)
    location = config.get_main_option("script_location") or storage_module_file
    if location not in _SCRIPTS:
        _SCRIPTS[location] = ScriptDirectory.from_config(config)
    return _SCRIPTS[location]


# Each script folder's scripts, read once per process (`migration_scripts`).
_SCRIPTS: dict[str, ScriptDirectory] = {}


def schema_revisions(storage_module_file: str, connection: Connection) -> tuple[str | None, str]:
    """The database's schema revision and the newest one Dagster knows (its `head`): what
    Dagster's `check_alembic_revision` returns, from the scripts read once per process."""
    with _alembic_lock:
        current = MigrationContext.configure(connection).get_current_revision()
        head = migration_scripts(storage_module_file).as_revision_number("head")
    return current, head


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log storage, in the instance's `history/runs/`,
    keeping each database's connection open between events."""

    def __init__(self, inst_data: ConfigurableClassData | None = None):
        # The folder is the instance's, known only when Dagster registers the storage with
        # its instance (`register_instance`, right after making it): Dagster's own
        # initialisation of the storage runs then.
        self._inst_data = inst_data
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        # What the index's schema was seen to have (`has_table`, `_has_asset_key_col_on_
        # connection`): only what is there is remembered, never what is missing.
        self._tables_there: set[str] = set()
        self._asset_key_cols_there: set[str] = set()

    def register_instance(self, instance: Any) -> None:
        """Open the event logs under the instance's folder, then register as Dagster does."""
        folder = os.path.join(instance.root_directory, "history", "runs", "")
        SqliteEventLogStorage.__init__(self, folder, inst_data=self._inst_data)
        super().register_instance(instance)

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {}

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> KeptOpenSqliteEventLogStorage:
        return cls(inst_data=inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As Dagster's, but with the shard's engine (and its one connection) kept.
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, made (and its database made, as Dagster makes it) the first
        time; the least recently used beyond OPEN_AT_ONCE is closed."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        conn_string = self.conn_string_for_shard(shard)
        if shard not in self._initialized_dbs:
            # Dagster's own schema check and creation, on a connection of its own.
            once = create_engine(
                conn_string,
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            event.listen(once, "connect", _wal_from_the_start)
            self._initdb(once)
            once.dispose()
            self._initialized_dbs.add(shard)
        # One connection, shared by this process's threads (the webserver's watchers among
        # them) one at a time: `_db_lock` is held while it is in use.
        engine = create_engine(
            conn_string,
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sync_normal_in_wal)
        self._engines[shard] = engine
        while len(self._engines) > OPEN_AT_ONCE:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """Dagster's check (and for a new database, its making) of a database's schema,
        with alembic's scripts read once per process (`migration_scripts`).

        A database at Dagster's newest revision is left as it is, as Dagster leaves it. A
        new one (no revision and no tables) is made as Dagster makes it: its tables, WAL,
        then stamped with the newest revision. Anything else (a database another process
        is making at the same moment, one made before Dagster stamped them, an older
        revision) goes to Dagster's own `_initdb`, with its retries and its rules.

        A new database is put in WAL before its tables are made (`_wal_from_the_start`):
        the run databases' engines have it already, and Dagster's engine for a new
        `index.db` (made in `SqliteEventLogStorage.__init__`) gets it here, so a new home's
        index is not synced to disk statement by statement either (42 syncs of its
        rollback journal and 23 of the database, measured with strace)."""
        if not event.contains(engine, "connect", _wal_from_the_start):
            event.listen(engine, "connect", _wal_from_the_start)
        try:
            with engine.connect() as connection:
                current, head = schema_revisions(sqlite_event_log.__file__, connection)
                if current is not None and current == head:
                    return
                new = current is None and not (
                    connection.exec_driver_sql(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                    ).scalar()
                )
        except (sqlite3.Error, DBAPIError):
            new = False
        if not new:
            super()._initdb(engine, for_index_shard)
            return
        try:
            SqlEventLogStorageMetadata.create_all(engine)
            with engine.connect() as connection:
                connection.execute(text("PRAGMA journal_mode=WAL;"))
                with _alembic_lock:
                    MigrationContext.configure(connection).stamp(
                        migration_scripts(sqlite_event_log.__file__), "head"
                    )
                safe_commit(connection)
        except (sqlite3.Error, DBAPIError):
            # Another process made it meanwhile ("table ... already exists", "database is
            # locked"): Dagster's own retries see to it, as they would have.
            super()._initdb(engine, for_index_shard)

    def has_table(self, table_name: str) -> bool:
        """Whether the index has the table, asked of the database as Dagster asks (a new
        engine and connection) only until it is there.

        Dagster asks before storing each asset event's tags and each check evaluation
        (`supports_asset_checks`): some 160 times a 37-month backfill, each a new SQLAlchemy
        engine and a new connection to `index.db`, about 15% of the run's event writes.
        A table Dagster has made stays (its migrations add tables, none drops one; `wipe`
        forgets them all), so once there it is taken as there for the rest of the process;
        a missing one is asked about again (a migration run meanwhile may add it)."""
        if table_name in self._tables_there:
            return True
        there = super().has_table(table_name)
        if there:
            self._tables_there.add(table_name)
        return there

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        """Whether the index's `asset_keys` table has the column, read from the schema (as
        Dagster reads it, before every asset event) until it is there, then remembered for
        the process, as `has_table` is: migrations add columns, none drops one."""
        if column_name in self._asset_key_cols_there:
            return True
        there = super()._has_asset_key_col_on_connection(conn, column_name)
        if there:
            self._asset_key_cols_there.add(column_name)
        return there

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_all()  # the files are deleted: no connection may outlive them
        self._tables_there.clear()
        self._asset_key_cols_there.clear()
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()

    def watch(self, run_id: str, cursor: str | None, callback: EventHandlerFn) -> None:
        """As Dagster's, but a change to the run's WAL file counts as a change to its log."""
        if not self._obs:
            from watchdog.observers import Observer

            self._obs = Observer()
            self._obs.start()
        watchdog = _LogOrWalWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog,
            self._obs.schedule(watchdog, self._base_dir, recursive=True),
        )


class _LogOrWalWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watcher of one run's event log, told of writes to its WAL file too."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._patterns = [self._log_path, self._log_path + "-wal"]

    def on_modified(self, event: FileSystemEvent) -> None:
        self._process_log()
