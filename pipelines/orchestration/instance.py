"""The home's Dagster instance (SQLite under `$DATASHARE_HOME/dagster` by default, or
PostgreSQL: `pipelines.home.instance_config`), and `instance_health`, its check in words.

Two processes opening a new home at once (two `datashare run`, or `datashare ui` and a run)
would both create its SQLite tables, and one would fail ("table alembic_version already
exists"); so the first opening is done under a lock in the Dagster home.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from pipelines.home.instance_config import (
    CONTRACT_TAG,
    MAX_RUNS_ENV,
    POSTGRES,
    POSTGRES_ENV,
    POSTGRES_HOST_ENV,
    SQLITE,
    is_postgres,
    written_by_datashare,
)
from pipelines.home.settings import Settings
from pipelines.orchestration.job_names import CODE_LOCATION, DEFINITIONS_MODULE

if TYPE_CHECKING:
    from dagster._core.execution.job_execution_result import JobExecutionResult
    from dagster._core.remote_origin import RemoteJobOrigin

REPO_ROOT = Path(__file__).resolve().parents[2]

# Opening the instance imports Dagster's SQL storage, which imports alembic, whose
# `mako.exceptions` imports mako's pygments plugin (pygments and its Python lexer, about
# 0.1 s of CPU here, 5% of a run's imports) only to colour the HTML pages mako renders for
# a template's errors: nothing this process renders. Without the plugin mako keeps its
# plain rendering (its own fallback when pygments is not installed). Marked as missing
# here, before the storage is imported, in the processes that open the instance through
# this module (`datashare run` and its workers); tests/test_startup_imports.py holds it.
sys.modules.setdefault("mako.ext.pygmentplugin", None)


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance of `settings.dagster_home` (DAGSTER_HOME), its storage made."""
    with open(settings.dagster_home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _new_schedules_in_wal(settings)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # the storages are made now, under the lock
    return instance


def _new_schedules_in_wal(settings: Settings) -> None:
    """A new home's schedule database (Dagster's own SQLite schedule storage, which the
    dagster.yaml datashare writes leaves as it is, in `schedules/schedules.db`) made empty
    in WAL, so that Dagster makes its tables in a WAL database. Made as it is otherwise,
    in SQLite's rollback-journal mode until Dagster switches it to WAL after the last
    table, each of its CREATE statements is a transaction synced on its own (its journal,
    the database and the folder): 62 syncs, measured with strace, against about 20 in WAL.
    Dagster's own making then follows as for any new database (tables, WAL, stamp, data
    migrations): only the journal mode it begins in changes. Called under the instance
    lock; an existing database, a PostgreSQL instance or a dagster.yaml edited by hand is
    left alone."""
    path = settings.dagster_home / "schedules" / "schedules.db"
    config = settings.dagster_home / "dagster.yaml"
    if path.exists() or settings.instance_storage != SQLITE or not config.exists():
        return
    if not written_by_datashare(config.read_text()):
        return
    path.parent.mkdir(exist_ok=True)
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def code_location_origin(job: str) -> RemoteJobOrigin:
    """Where the UI files a run of `job`: the `datashare` code location as workspace.yaml
    loads it (a module in a managed code server) and its one repository. The Overview
    timeline and the job pages list only runs that carry one."""
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
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job)


def execute_here(
    instance: dg.DagsterInstance,
    job_def: dg.JobDefinition,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> JobExecutionResult | dg.ExecuteInProcessResult:
    """Run `job_def` in this process, as a run of the code location the UI lists.

    Dagster's public ways to run a job in process (`execute_in_process`, `execute_job`,
    `dagster job execute`) leave the run's origin empty, and the UI's Overview timeline
    and job pages skip a run without one (its timeline drops any run whose
    `repositoryOrigin` is null). Its public ways that set the origin launch a worker
    process per run through the run launcher, which imports Dagster, the definitions and
    great-expectations again: some 7 s a run, more than a month's work.

    So this files the run as `dagster job launch` does (`create_run_for_job` with the
    code location's origin) and executes it as a launched run's worker does
    (`execute_run`), in process with in-memory outputs, as `execute_in_process` does.
    Those are Dagster internals, pinned by constraints.txt. If a Dagster release moves
    them, the run is not lost: it is made with the public `execute_in_process` instead
    (see `_public_fallback`), said once on stderr, and `datashare doctor` says so too.
    tests/test_run_path.py covers both ways, and tests/test_dagster_ui.py pins what
    the UI lists.
    """
    try:
        job, run = _filed_under_code_location(instance, job_def, run_config, tags, asset_selection)
        from dagster._core.execution.api import execute_run
    except (ImportError, AttributeError, TypeError) as moved:
        # Raised before any run exists (the run is made last), so nothing runs twice.
        return _public_fallback(instance, job_def, run_config, tags, asset_selection, moved)
    return execute_run(job, run, instance)


def _filed_under_code_location(
    instance: dg.DagsterInstance,
    job_def: dg.JobDefinition,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
    asset_selection: Sequence[dg.AssetKey] | None,
) -> tuple[object, dg.DagsterRun]:
    """The in-process job and its run, made under the code location's origin."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import create_execution_plan

    origin = code_location_origin(job_def.name)
    selection = frozenset(asset_selection or ())
    ephemeral = job_def.as_ephemeral_job(
        resource_defs={}, input_values={}, op_selection=None, asset_selection=selection
    )
    job = InMemoryJob(job_def=ephemeral)
    plan = create_execution_plan(
        job, run_config=run_config, instance_ref=instance.get_ref(), tags=tags
    )
    run = instance.create_run_for_job(
        job_def=ephemeral,
        execution_plan=plan,
        run_config=run_config,
        tags={**job_def.run_tags, **tags},
        asset_selection=selection or None,
        remote_job_origin=origin,
    )
    return job, run


FALLBACK_WARNING = (
    "datashare: this Dagster files runs differently from the one datashare was built "
    "against, so runs made by `datashare run` are in the UI's Runs list and asset pages but "
    "not on the Overview timeline or their job's page ({cause}). Runs the daemon launches "
    "are not affected. Install the Dagster that constraints.txt names to have both."
)
_warned: list[str] = []


def _public_fallback(
    instance: dg.DagsterInstance,
    job_def: dg.JobDefinition,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
    asset_selection: Sequence[dg.AssetKey] | None,
    moved: Exception,
) -> dg.ExecuteInProcessResult:
    """The run made with Dagster's public in-process execution: the same steps, events,
    materializations and checks, without the code location's origin."""
    if not _warned:
        _warned.append(str(moved))
        print(FALLBACK_WARNING.format(cause=f"{type(moved).__name__}: {moved}"), file=sys.stderr)
    return job_def.execute_in_process(
        run_config=run_config,
        instance=instance,
        tags=dict(tags),
        asset_selection=list(asset_selection) if asset_selection else None,
        raise_on_error=False,
    )


def code_location_filing() -> str | None:
    """None if runs made here are filed under the code location; else why not, in words."""
    try:
        code_location_origin("check")
        from dagster._core.definitions.job_base import InMemoryJob  # noqa: F401
        from dagster._core.execution.api import create_execution_plan, execute_run  # noqa: F401
    except (ImportError, AttributeError, TypeError) as moved:
        return f"{type(moved).__name__}: {moved}"
    return None


@dataclass
class InstanceHealth:
    """What `instance_health` found: the instance in words, what would stop a run, and
    what is worth knowing but stops nothing."""

    summary: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def instance_health(settings: Settings, environ: Mapping[str, str] | None = None) -> InstanceHealth:
    """Check the Dagster instance of `settings` as the daemon and webserver will open it.

    The configuration file is there and is for these settings; DAGSTER_HOME names it; on
    PostgreSQL each connection variable is set and the password file is usable; the
    instance opens (on a new database, Dagster makes its tables) and every storage's schema
    is the one this Dagster expects; runs are queued with the per-contract limit, and runs
    whose worker died are failed and retried. Reads and connects; writes nothing but what
    Dagster makes when it first opens an instance.
    """
    env = os.environ if environ is None else environ
    health = InstanceHealth()
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        health.problems.append(
            f"no {config}: any `datashare` command that runs (run, demo, ui) writes it"
        )
        return health
    text = config.read_text()
    dagster_home = env.get("DAGSTER_HOME")
    if not dagster_home:
        health.warnings.append(
            f"DAGSTER_HOME is not set here: dagster-daemon and dagster-webserver need it set "
            f"to {settings.dagster_home} (datashare commands set it themselves)"
        )
    elif Path(dagster_home).resolve() != settings.dagster_home.resolve():
        health.problems.append(
            f"DAGSTER_HOME is {dagster_home} but this home's instance is "
            f"{settings.dagster_home}: the daemon would keep its runs in another instance"
        )
    postgres = is_postgres(text)
    if postgres and settings.instance_storage != POSTGRES:
        health.problems.append(
            f"{config} keeps the instance in PostgreSQL but {POSTGRES_HOST_ENV} is not set "
            "here: load the deployment's environment file first"
        )
    elif not written_by_datashare(text):
        health.warnings.append(f"{config} was edited by hand: datashare leaves it as it is")
        if settings.instance_storage == POSTGRES and not postgres:
            health.problems.append(
                f"{POSTGRES_HOST_ENV} is set but {config} (edited by hand) does not keep the "
                "instance in PostgreSQL"
            )
    elif text != settings.dagster_yaml():
        health.warnings.append(
            f"{config} is not yet the one for these settings (storage, {MAX_RUNS_ENV}): the "
            "next `datashare` command that runs rewrites it"
        )
    if postgres:
        health.problems += _postgres_settings_problems(env)
        if not health.problems:
            health.problems += _postgres_answers(env)
        if health.problems:
            return health
    _open_and_check(settings, postgres, env, health)
    moved = code_location_filing()
    if moved:
        health.warnings.append(
            "runs made by `datashare run` are not filed under the code location, so the "
            f"Overview timeline and job pages leave them out ({moved}): install the Dagster "
            "that constraints.txt names"
        )
    return health


def _postgres_answers(env: Mapping[str, str]) -> list[str]:
    """One connection, as the instance will make it: what is wrong in the server's words.

    Once, with a short timeout: Dagster's own opening retries for about ten seconds, logging
    each try, before it says the same."""
    import psycopg2

    where = "{user}@{host}:{port}/{db}".format(
        user=env[POSTGRES_ENV["username"]],
        host=env[POSTGRES_ENV["hostname"]],
        port=env[POSTGRES_ENV["port"]],
        db=env[POSTGRES_ENV["db_name"]],
    )
    # libpq finds the password itself; these two are passed on from `env` explicitly.
    secret = {"passfile": env.get("PGPASSFILE"), "password": env.get("PGPASSWORD")}
    try:
        psycopg2.connect(
            host=env[POSTGRES_ENV["hostname"]],
            port=int(env[POSTGRES_ENV["port"]]),
            dbname=env[POSTGRES_ENV["db_name"]],
            user=env[POSTGRES_ENV["username"]],
            connect_timeout=10,
            **{k: v for k, v in secret.items() if v},
        ).close()
    except psycopg2.Error as exc:
        return [f"PostgreSQL ({where}) does not take the connection: {_words(exc)}"]
    return []


def _postgres_settings_problems(env: Mapping[str, str]) -> list[str]:
    """Each connection variable set; libpq's password file, if named, there and owner-only."""
    problems = [
        f"{var} is not set: the instance's dagster.yaml reads the PostgreSQL {name} from it"
        for name, var in POSTGRES_ENV.items()
        if not env.get(var, "").strip()
    ]
    port = env.get(POSTGRES_ENV["port"], "").strip()
    if port and not port.isdigit():
        problems.append(f"{POSTGRES_ENV['port']} must be a port number, not {port!r}")
    passfile = env.get("PGPASSFILE")
    if passfile:
        path = Path(passfile)
        if not path.is_file():
            problems.append(f"PGPASSFILE names {passfile}, which is not a file")
        elif stat.S_IMODE(path.stat().st_mode) & 0o077:
            problems.append(
                f"PGPASSFILE {passfile} can be read by others, so libpq ignores it: "
                f"chmod 600 {passfile}"
            )
    return problems


def _open_and_check(
    settings: Settings, postgres: bool, env: Mapping[str, str], health: InstanceHealth
) -> None:
    where = (
        "PostgreSQL ({user}@{host}:{port}/{db})".format(
            user=env.get(POSTGRES_ENV["username"]),
            host=env.get(POSTGRES_ENV["hostname"]),
            port=env.get(POSTGRES_ENV["port"]),
            db=env.get(POSTGRES_ENV["db_name"]),
        )
        if postgres
        else f"SQLite in {settings.dagster_home}"
    )
    try:
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
            instance.get_runs(limit=1)
            stale = [
                name
                for name in ("run_storage", "event_log_storage", "schedule_storage")
                if _behind(getattr(instance, name))
            ]
            queue = instance.get_concurrency_config().run_queue_config
            coordinator = instance.run_coordinator
            monitored = instance.run_monitoring_enabled and getattr(
                instance.run_launcher, "supports_check_run_worker_health", False
            )
            retries = instance.run_retries_enabled and instance.run_retries_max_retries > 0
            daemon = _daemon_seen(instance)
    except Exception as exc:  # whatever stops it opening is the finding
        health.problems.append(f"the Dagster instance ({where}) cannot be opened: {_words(exc)}")
        return
    if stale:
        health.problems.append(
            f"the Dagster instance ({where}) has an older schema than this Dagster "
            f"({', '.join(stale)}): stop the daemon and webserver, back it up, then run "
            "`dagster instance migrate` with DAGSTER_HOME set"
        )
    per_contract = any(
        limit.get("key") == CONTRACT_TAG
        and limit.get("limit") == 1
        and isinstance(limit.get("value"), Mapping)
        and limit["value"].get("applyLimitPerUniqueValue")
        for limit in (queue.tag_concurrency_limits if queue else None) or []
    )
    if not isinstance(coordinator, dg.QueuedRunCoordinator) or queue is None:
        health.warnings.append("runs are not queued: the daemon launches every run at once")
        runs = "runs not queued"
    else:
        at_most = queue.max_concurrent_runs
        runs = f"queued runs, at most {at_most} at once" if at_most >= 0 else "queued runs"
        if not per_contract:
            health.warnings.append(
                f"no run limit on the {CONTRACT_TAG} tag: two runs of one contract may be "
                "launched together (each month's lease still makes one wait)"
            )
        else:
            runs += ", one per contract"
    if not monitored:
        health.warnings.append(
            "run monitoring is off or cannot check workers: a run whose worker dies with the "
            "daemon stays STARTED and holds its place in the queue"
        )
    if not retries:
        health.warnings.append("run retries are off: a run whose worker died is not run again")
    health.summary = (
        f"{where}, schema {'older than Dagster' if stale else 'current'}; {runs}; "
        f"run monitoring {'on' if monitored else 'off'}, retries {'on' if retries else 'off'}; "
        f"daemon {daemon}"
    )


def _behind(storage: object) -> bool:
    """Whether a storage's schema revision is not this Dagster's head (unknown: not)."""
    version = getattr(storage, "alembic_version", lambda: None)()
    if not version:
        return False
    current, head = version
    return current != head


def _daemon_seen(instance: dg.DagsterInstance) -> str:
    heartbeats = instance.get_daemon_heartbeats()
    if not heartbeats:
        return "not seen yet"
    age = time.time() - max(beat.timestamp for beat in heartbeats.values())
    return f"last seen {age:.0f} s ago"


def _words(exc: BaseException) -> str:
    """The innermost cause of a failure to open, on one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
