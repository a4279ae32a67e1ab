"""The Dagster instance's configuration (`$DAGSTER_HOME/dagster.yaml`) that `datashare` writes.

SQLite under the home by default (the demo, a laptop), its event log and run storage kept
open between writes (`pipelines.home.event_log_storage`, `pipelines.home.run_storage`);
PostgreSQL (`dagster-postgres`) for
runs, event logs and schedules when `DATASHARE_POSTGRES_HOST` is set, with
`DATASHARE_POSTGRES_PORT`, `DATASHARE_POSTGRES_DB` and `DATASHARE_POSTGRES_USER`. The file
names the variables (Dagster's `{env: VAR}`), never their values, which Dagster reads when
it opens the instance. No password is in it or in any variable of ours: libpq (under
psycopg2, the driver dagster-postgres is built on) reads it from the file `PGPASSFILE`
names (`host:port:database:user:password`, owner-only or libpq ignores it), or from
`PGPASSWORD`.

Either way the instance has:
- Dagster's QueuedRunCoordinator, with at most `DATASHARE_MAX_RUNS` runs at once (default
  2) and one run per contract at a time (the delivery sensor's `datashare/contract` tag: a
  contract's run takes all its pending months);
- run monitoring: a run whose worker died with the daemon (a kill, a reboot, `systemctl
  stop`) is failed when the daemon next looks, by `pipelines.orchestration.run_launcher`,
  and a run stuck starting or running past `MAX_RUNTIME_SECONDS` is failed too;
- run retries: a run that failed for any reason but its own steps failing is run again from
  where it failed (every step is idempotent: a delivery is never taken twice);
- with steps on workers (`DATASHARE_EXECUTOR=celery`) and an S3 lake, step logs in the
  lake's bucket (dagster-aws's S3 compute log manager), so the UI shows a step's output
  whichever machine ran it.

This module imports nothing beyond the standard library: `pipelines.home.settings` uses it, and
`datashare --help` must stay fast.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipelines.home.executor import CELERY

# Dagster's `postgres_db` fields, each from one variable; HOST being set selects PostgreSQL.
POSTGRES_ENV = {
    "hostname": "DATASHARE_POSTGRES_HOST",
    "port": "DATASHARE_POSTGRES_PORT",
    "db_name": "DATASHARE_POSTGRES_DB",
    "username": "DATASHARE_POSTGRES_USER",
}
POSTGRES_HOST_ENV = POSTGRES_ENV["hostname"]
# SQLAlchemy 2.1 would pick psycopg 3 for a plain `postgresql://`; dagster-postgres is built
# on (and installs) psycopg2.
POSTGRES_SCHEME = "postgresql+psycopg2"
MAX_RUNS_ENV = "DATASHARE_MAX_RUNS"
DEFAULT_MAX_RUNS = 2  # this machine has 2 cores; each run is a process per step
CONTRACT_TAG = "datashare/contract"  # the run queue's limit: one run per contract at once
PARTITION_TAG = "datashare/partition"  # the months of a run the delivery sensor asked for

# Run monitoring. The daemon looks every POLL seconds; a run must have started within
# START_TIMEOUT of its launch (a local process: seconds), and none runs longer than
# MAX_RUNTIME (a month takes seconds to a minute; this only ends a run that hangs).
MONITOR_POLL_SECONDS = 15
START_TIMEOUT_SECONDS = 60
MAX_RUNTIME_SECONDS = 3600
MAX_RETRIES = 2

SQLITE = "sqlite"
POSTGRES = "postgres"

_MARKER = "# datashare: sha256="
_HEADER = """\
# Written by datashare (pipelines/home/instance_config.py) from its settings.
# Storage: {storage}. Runs: at most {max_runs} at once ({max_runs_env}),
# one per contract at a time.
# datashare rewrites it when its settings change; edit it and it is yours, left alone.
"""

_COMMON = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""

_POSTGRES_STORAGE = (
    "storage:\n  postgres:\n    postgres_db:\n"
    + "".join(f"      {field}:\n        env: {var}\n" for field, var in POSTGRES_ENV.items())
    + f"      scheme: {POSTGRES_SCHEME}\n"
)

# SQLite: Dagster's default storage, but its event log keeps each database open between
# events instead of opening, syncing and closing it for every one (about 20 ms an event;
# `pipelines.home.event_log_storage` says why and measures it). Dagster imports that
# module by this name; this one never imports it (it imports Dagster).
_SQLITE_EVENT_LOG = """\
event_log_storage:
  module: pipelines.home.event_log_storage
  class: KeptOpenSqliteEventLogStorage
"""
# And its run storage (`runs.db`, each run's status), kept open in the same way
# (`pipelines.home.run_storage`): Dagster's opens a new engine for every query.
_SQLITE_RUNS = """\
run_storage:
  module: pipelines.home.run_storage
  class: KeptOpenSqliteRunStorage
"""

_RUNS = f"""\
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: {{max_runs}}
    tag_concurrency_limits:
      - key: {CONTRACT_TAG}
        value:
          applyLimitPerUniqueValue: true
        limit: 1
run_launcher:
  module: pipelines.orchestration.run_launcher
  class: LocalRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: {MONITOR_POLL_SECONDS}
  start_timeout_seconds: {START_TIMEOUT_SECONDS}
  max_runtime_seconds: {MAX_RUNTIME_SECONDS}
  max_resume_run_attempts: 0
run_retries:
  enabled: true
  max_retries: {MAX_RETRIES}
  retry_on_asset_or_op_failure: false
"""

# Where a step's stdout and stderr (Dagster's compute logs) go when steps run on workers: into
# the S3 lake's bucket, below its prefix, so the UI on the daemon's machine reads a step that
# ran on any machine (Dagster's default keeps them on the disk of the machine that ran it).
STEP_LOGS_FOLDER = "_step_logs"
STEP_LOGS_UPLOAD_SECONDS = 30  # a running step's log so far reaches the UI this often
_STEP_LOGS = f"""\
# Step logs: written on the machine that runs the step, uploaded to S3. The endpoint and the
# credentials are boto3's own settings, as the lake's (AWS_ENDPOINT_URL_S3, AWS_* variables or
# the machine's role): none is written here.
compute_logs:
  module: dagster_aws.s3.compute_log_manager
  class: S3ComputeLogManager
  config:
    bucket: {{bucket}}
    prefix: {{prefix}}
    skip_empty_files: true
    upload_interval: {STEP_LOGS_UPLOAD_SECONDS}
"""


def step_logs_location(lake: str | Path, executor: str) -> str | None:
    """Where step logs go for these settings: `s3://bucket/prefix` when steps run on workers
    (`executor` "celery") against an S3 lake, else None (Dagster's default, on the disk of
    the machine that runs the step, which is the daemon's when there are no workers)."""
    if executor != CELERY or not isinstance(lake, str) or not lake.startswith("s3://"):
        return None
    return f"{lake.rstrip('/')}/{STEP_LOGS_FOLDER}"


def _step_logs_section(location: str) -> str:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return _STEP_LOGS.format(bucket=_yaml_quoted(bucket), prefix=_yaml_quoted(prefix))


def _yaml_quoted(value: str) -> str:
    """`value` as a YAML double-quoted scalar, whatever its characters: printable ASCII as it
    is, anything else escaped (YAML reads a raw line separator as a line break, and JSON's
    surrogate pairs as two characters)."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


# What earlier versions of datashare wrote: a home that still has one is upgraded.
_PREVIOUS = (
    _COMMON
    + """\
concurrency:
  runs:
    tag_concurrency_limits:
      - key: datashare/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""
)
_LEGACY = (_PREVIOUS, _PREVIOUS.replace("nux:\n  enabled: false\n", ""))


def dagster_yaml(
    storage: str = SQLITE, max_runs: int = DEFAULT_MAX_RUNS, step_logs: str | None = None
) -> str:
    """The instance configuration for `storage` (SQLITE or POSTGRES), ending in a checksum
    line by which `datashare` knows the file is still the one it wrote. `step_logs`
    (`s3://bucket/prefix`, from `step_logs_location`) sends step logs to S3."""
    if storage not in (SQLITE, POSTGRES):
        raise ValueError(f"unknown instance storage {storage!r}")
    body = _HEADER.format(
        storage="PostgreSQL, from DATASHARE_POSTGRES_*" if storage == POSTGRES else "SQLite, here",
        max_runs=max_runs,
        max_runs_env=MAX_RUNS_ENV,
    )
    body += _COMMON
    body += _POSTGRES_STORAGE if storage == POSTGRES else _SQLITE_EVENT_LOG + _SQLITE_RUNS
    body += _RUNS.format(max_runs=max_runs)
    body += _step_logs_section(step_logs) if step_logs else ""
    return body + _MARKER + _digest(body) + "\n"


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def written_by_datashare(text: str) -> bool:
    """Whether `text` is a configuration datashare wrote and nobody has edited since."""
    if text in _LEGACY:
        return True
    body, marker, rest = text.rpartition(_MARKER)
    return bool(marker) and rest == _digest(body) + "\n"


def is_postgres(text: str) -> bool:
    """Whether a dagster.yaml keeps the instance in PostgreSQL."""
    return "\nstorage:\n  postgres:" in "\n" + text


def write_dagster_yaml(
    dagster_home: Path, storage: str, max_runs: int, step_logs: str | None = None
) -> bool:
    """Write the instance configuration unless someone else's is there; True if written.

    A file datashare wrote follows the settings (storage, number of runs), but one on
    PostgreSQL never falls back to SQLite because `DATASHARE_POSTGRES_HOST` is missing from
    this shell: that would start a second, empty instance beside the real one. Dagster
    then says the variable is not set, and `datashare doctor` says so too.
    """
    config = Path(dagster_home) / "dagster.yaml"
    wanted = dagster_yaml(storage, max_runs, step_logs)
    if config.exists():
        current = config.read_text()
        if not written_by_datashare(current):
            return _follow_moved_modules(config, current)
        if current == wanted:
            return False
        if is_postgres(current) and storage != POSTGRES:
            return False
    temporary = config.with_name(f".{config.name}.{os.getpid()}.tmp")
    temporary.write_text(wanted)
    temporary.replace(config)  # a daemon starting meanwhile reads the old file or the new
    return True


# Modules of ours a dagster.yaml may name, where they were before `pipelines/` became
# packages. Dagster imports them by name when it opens the instance, so a file someone
# edited (theirs, otherwise left alone) would stop every command after an upgrade.
MOVED_MODULES = {"pipelines.run_launcher": "pipelines.orchestration.run_launcher"}


def _follow_moved_modules(config: Path, current: str) -> bool:
    """Point an edited dagster.yaml at the modules' new names; nothing else of it changes."""
    updated = current
    for old, new in MOVED_MODULES.items():
        updated = updated.replace(f"module: {old}\n", f"module: {new}\n")
    if updated == current:
        return False
    temporary = config.with_name(f".{config.name}.{os.getpid()}.tmp")
    temporary.write_text(updated)
    temporary.replace(config)
    return True
