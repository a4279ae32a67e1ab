"""Dagster's SQLite run storage (`runs.db`), with its database kept open instead of opened
for every query.

Dagster's `SqliteRunStorage` makes a new SQLAlchemy engine and a new connection for each of
its queries, and closes both after it: a run reads and writes its status, tags and
snapshots a few dozen times, and each close of the last connection to a WAL database
checkpoints it (syncs the WAL, copies it into the database, syncs that) and deletes the
WAL; each commit is synced to disk too (`synchronous=FULL`, SQLite's default). A new home's
`runs.db` is made statement by statement, each CREATE synced on its own, before Dagster
puts the database in WAL.

`KeptOpenSqliteRunStorage` is Dagster's `SqliteRunStorage` (same file, same schema, same
queries) with the changes `pipelines.home.event_log_storage` makes to the event log, for
the same reasons and with the same guarantees:
- one engine per process, its connection kept open between queries (a second one, for a
  query made while the first is in use, is opened and closed as Dagster's would be);
- `synchronous=NORMAL` on its connections, in WAL mode only: SQLite's documentation says
  this cannot corrupt a WAL database; a power cut (not a crash of the process) may lose
  the last status written, and the UI would then show that run as it was before it. What
  is still to run is never read from it: `datashare run` and the delivery sensor compare
  the drop zone with the register.
- a new `runs.db` is put in WAL before Dagster makes its tables, not just after, and
  made on the kept connection (Dagster's own steps: check, tables, stamp, migrations).
A database in rollback-journal mode (none that Dagster 1.13 made) is left in it, synced as
before. Measured at load 17, Dagster's storage then this one: a new home's instance opened
in 2.7-5.2 s, then 0.75-2.7 s; sixty run-storage queries 0.34-2.1 s, then 0.04-0.10 s.

Named in the home's `dagster.yaml` (`run_storage:`) by `pipelines.home.instance_config`,
which imports nothing of Dagster: this module is imported only by Dagster, when it opens
the instance. It takes no configuration: its folder is the instance's own `history/`,
where Dagster's default SQLite storage keeps `runs.db`, so a home made before it is read
as it is, and a home copied elsewhere still finds its own.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from alembic.runtime.migration import MigrationContext
from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.runs.schema import InstanceInfo, RunStorageSqlMetadata
from dagster._core.storage.runs.sqlite import sqlite_run_storage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.sql import _alembic_lock, create_engine, safe_commit
from dagster._core.storage.sqlite import (
    LAST_KNOWN_STAMPED_SQLITE_ALEMBIC_REVISION,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    create_db_conn_string,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from pipelines.home.event_log_storage import (
    _wal_from_the_start,
    migration_scripts,
    schema_revisions,
)


@contextmanager
def _held(path: str) -> Iterator[None]:
    """An exclusive lock on the file at `path` while inside (none if the folder cannot be
    written to: a home opened read-only has no new database to make)."""
    try:
        lock = open(path, "a")  # noqa: SIM115 (held until the end of the block)
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class KeptOpenSqliteRunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage, in the instance's `history/runs.db`, keeping its
    database's connection open between queries."""

    def __init__(self, inst_data: ConfigurableClassData | None = None):
        # The folder is the instance's, known only when Dagster registers the storage with
        # its instance (`register_instance`, right after making it): Dagster's own
        # opening of the database runs then.
        self._inst_data = inst_data
        self._engine: Engine | None = None

    def register_instance(self, instance: Any) -> None:
        """Open (or make) `runs.db` under the instance's folder, then register as Dagster
        does."""
        folder = os.path.join(instance.root_directory, "history", "")
        os.makedirs(folder, exist_ok=True)
        SqliteRunStorage.__init__(
            self, create_db_conn_string(folder, "runs"), inst_data=self._inst_data
        )
        # One process at a time checks (and, for a new home, makes) `runs.db`: two making
        # it at once (a sensor's step process and a run, say) could both stamp it, one the
        # newest revision and the other, seeing the tables but no stamp yet, the last known
        # one, leaving two rows in alembic_version (tests/test_faults.py met it).
        with _held(os.path.join(folder, ".runs.db.lock")):
            self._open_or_make()
        super().register_instance(instance)

    def _open_or_make(self) -> None:
        """Dagster's `SqliteRunStorage.from_local` (its check of the schema, and on a new
        database its tables, stamp and data migrations) on the kept connection."""
        new = False
        with self._kept_engine().connect() as connection:
            # As Dagster's `check_alembic_revision`, with its scripts read once per process.
            db_revision, head_revision = schema_revisions(sqlite_run_storage.__file__, connection)
            table_names = db.inspect(connection).get_table_names()
            if not (db_revision and head_revision):
                if "runs" in table_names:
                    # Dagster's case of tables made before it stamped them (see its own).
                    revision = LAST_KNOWN_STAMPED_SQLITE_ALEMBIC_REVISION
                else:
                    new, revision = True, "head"
                RunStorageSqlMetadata.create_all(connection)
                connection.execute(db.text("PRAGMA journal_mode=WAL;"))
                # Stamped as Dagster's `stamp_alembic_rev` stamps (the revision in
                # `alembic_version`), from the scripts already read for the check above:
                # Dagster's reads all 89 of them again (about 0.04 s of a new home's run).
                with _alembic_lock:
                    MigrationContext.configure(connection).stamp(
                        migration_scripts(sqlite_run_storage.__file__), revision
                    )
                safe_commit(connection)
            if "instance_info" not in db.inspect(connection).get_table_names():
                InstanceInfo.create(connection)
                safe_commit(connection)
        if new:
            self.migrate()
            self.optimize()

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {}

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> KeptOpenSqliteRunStorage:
        return cls(inst_data=inst_data)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        # As Dagster's, but on the one engine, whose first connection stays open.
        with self._kept_engine().connect() as conn, conn.begin():
            yield conn

    def _kept_engine(self) -> Engine:
        if self._engine is None:
            # One connection kept (used by one thread at a time, whichever); a query made
            # while it is in use gets a connection of its own, closed after it.
            engine = create_engine(
                self._conn_string,
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=-1,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _wal_from_the_start)
            self._engine = engine
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        super().dispose()
