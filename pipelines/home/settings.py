"""Where everything lives, from the environment.

`DATASHARE_HOME` (default `.datashare/` in the current folder) holds the drop zone, the
lake, the warehouse and Dagster's own home, so one variable moves a whole installation.
`DATASHARE_DROP_ZONE` and `DATASHARE_LAKE` may each be a folder or an `s3://bucket/prefix`
URL; S3 is reached with the standard AWS settings (credentials, region,
`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` for an S3-compatible store). The warehouse and
Dagster's own storage stay in the home folder.

`DATASHARE_SETTLE_SECONDS` (default 60) is how long a file in a folder drop zone must be
unchanged before it is taken, so that a copy still in progress is never taken half-written.

Dagster's instance is SQLite in the home unless `DATASHARE_POSTGRES_HOST` is set (then
PostgreSQL), with at most `DATASHARE_MAX_RUNS` runs at once (default 2): see
`pipelines.home.instance_config`, which writes its `dagster.yaml`.

`DATASHARE_EXECUTOR=celery` sends the delivery jobs' steps to `datashare worker` processes
through the Redis broker `DATASHARE_CELERY_BROKER` names (`pipelines.orchestration.worker_celery`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.home.executor import BROKER_ENV, EXECUTOR_ENV, IN_PROCESS, executor_choice
from pipelines.home.instance_config import (
    DEFAULT_MAX_RUNS,
    MAX_RUNS_ENV,
    POSTGRES,
    POSTGRES_HOST_ENV,
    SQLITE,
    dagster_yaml,
    step_logs_location,
    write_dagster_yaml,
)

DEFAULT_SETTLE_SECONDS = 60.0  # a folder file must be unchanged this long before it is taken


@dataclass(frozen=True)
class Settings:
    home: Path
    dropzone: Path | str  # a local folder, or an `s3://bucket/prefix` URL (a str)
    lake: Path | str  # a local folder, or an `s3://bucket/prefix` URL (a str)
    warehouse: Path
    dagster_home: Path
    settle_seconds: float = DEFAULT_SETTLE_SECONDS  # folder drop zones only
    instance_storage: str = SQLITE  # POSTGRES when DATASHARE_POSTGRES_HOST is set
    max_runs: int = DEFAULT_MAX_RUNS  # Dagster runs at once (DATASHARE_MAX_RUNS)
    # Where a delivery job's steps run: IN_PROCESS, or CELERY
    # (`pipelines.orchestration.worker_celery`: `datashare worker` processes take them from
    # the broker DATASHARE_CELERY_BROKER names).
    executor: str = IN_PROCESS
    celery_broker: str = ""

    @property
    def dropzone_is_s3(self) -> bool:
        return isinstance(self.dropzone, str)

    @property
    def lake_is_s3(self) -> bool:
        return isinstance(self.lake, str)

    def ensure_folders(self) -> None:
        folders = [self.home, self.dagster_home]
        folders += [] if self.dropzone_is_s3 else [self.dropzone]
        folders += [] if self.lake_is_s3 else [self.lake]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        # A home made by an earlier version gets the settings it lacks; a file someone
        # edited is theirs and left alone.
        write_dagster_yaml(self.dagster_home, self.instance_storage, self.max_runs, self.step_logs)

    def dagster_yaml(self) -> str:
        """The instance configuration datashare writes for these settings."""
        return dagster_yaml(self.instance_storage, self.max_runs, self.step_logs)

    @property
    def step_logs(self) -> str | None:
        """Where step logs go (`s3://...`), or None for Dagster's default, on the disk of the
        machine that runs the step (`pipelines.home.instance_config.step_logs_location`)."""
        return step_logs_location(self.lake, self.executor)


def location(raw: str | None, default: Path) -> Path | str:
    """An `s3://` URL kept as written (less a trailing slash), else a folder."""
    if raw and raw.strip().startswith("s3://"):
        return raw.strip().rstrip("/")
    return Path(raw or default).resolve()


def load_settings(home: str | Path | None = None) -> Settings:
    """Settings for a home folder (default: `DATASHARE_HOME`, else `./.datashare`)."""
    base = Path(home or os.environ.get("DATASHARE_HOME") or ".datashare").resolve()
    return Settings(
        home=base,
        dropzone=location(os.environ.get("DATASHARE_DROP_ZONE"), base / "dropzone"),
        lake=location(os.environ.get("DATASHARE_LAKE"), base / "lake"),
        warehouse=base / "warehouse.duckdb",
        dagster_home=base / "dagster",
        settle_seconds=settle_seconds(os.environ.get("DATASHARE_SETTLE_SECONDS")),
        instance_storage=POSTGRES if os.environ.get(POSTGRES_HOST_ENV, "").strip() else SQLITE,
        max_runs=max_runs(os.environ.get(MAX_RUNS_ENV)),
        executor=executor_choice(os.environ.get(EXECUTOR_ENV)),
        celery_broker=os.environ.get(BROKER_ENV, "").strip(),
    )


def settle_seconds(raw: str | None) -> float:
    """`DATASHARE_SETTLE_SECONDS` as a number of seconds (the default if unset)."""
    if raw is None or not raw.strip():
        return DEFAULT_SETTLE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(
            f"DATASHARE_SETTLE_SECONDS must be a number of seconds, not {raw!r}"
        ) from None
    if value < 0:
        raise SystemExit("DATASHARE_SETTLE_SECONDS cannot be negative")
    return value


def max_runs(raw: str | None) -> int:
    """`DATASHARE_MAX_RUNS` as a number of Dagster runs at once (the default if unset)."""
    if raw is None or not raw.strip():
        return DEFAULT_MAX_RUNS
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{MAX_RUNS_ENV} must be a whole number of runs, not {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{MAX_RUNS_ENV} must be at least 1")
    return value
