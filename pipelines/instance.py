"""The home's Dagster instance (SQLite under `$DATASHARE_HOME/dagster` by default).

Two processes opening a new home at once (two `datashare run`, or `datashare ui` and a run)
would both create its SQLite tables, and one would fail ("table alembic_version already
exists"); so the first opening is done under a lock in the Dagster home.
"""

from __future__ import annotations

import fcntl

import dagster as dg

from pipelines.settings import Settings


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance of `settings.dagster_home` (DAGSTER_HOME), its storage made."""
    with open(settings.dagster_home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # the storages are made now, under the lock
    return instance
