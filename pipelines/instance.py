"""The home's Dagster instance (SQLite under `$DATASHARE_HOME/dagster` by default).

Two processes opening a new home at once (two `datashare run`, or `datashare ui` and a run)
would both create its SQLite tables, and one would fail ("table alembic_version already
exists"); so the first opening is done under a lock in the Dagster home.
"""

from __future__ import annotations

import fcntl
import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from pipelines.job_names import CODE_LOCATION, DEFINITIONS_MODULE
from pipelines.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance of `settings.dagster_home` (DAGSTER_HOME), its storage made."""
    with open(settings.dagster_home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # the storages are made now, under the lock
    return instance


@contextmanager
def runs_from_code_location(instance: dg.DagsterInstance, job: str) -> Iterator[None]:
    """Runs made here meanwhile carry the code location's origin, as runs the UI launches do.

    `execute_in_process` leaves a run's origin empty, and the UI's Overview timeline and job
    pages list only runs with one; Dagster has no public argument for it, so the instance's
    run creation is given it for the duration.
    """
    from dagster._core.definitions.repository_definition.valid_definitions import (
        SINGLETON_REPOSITORY_NAME,
    )
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=DEFINITIONS_MODULE,
            working_directory=str(REPO_ROOT),
        ),
        CODE_LOCATION,
    )
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job)
    create = instance.create_run_for_job
    instance.create_run_for_job = functools.partial(create, remote_job_origin=origin)
    try:
        yield
    finally:
        del instance.create_run_for_job
