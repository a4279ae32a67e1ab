"""Where a delivery job's steps run, as settings: in the run's own process (the default) or on
`datashare worker` processes through a Celery broker (`pipelines.orchestration.worker_celery`).
Read by the home's settings, so it imports nothing that runs anything."""

from __future__ import annotations

IN_PROCESS = "in_process"  # the default: a run's steps in its own process(es)
CELERY = "celery"
EXECUTORS = (IN_PROCESS, CELERY)
EXECUTOR_ENV = "DATASHARE_EXECUTOR"
BROKER_ENV = "DATASHARE_CELERY_BROKER"


def executor_choice(raw: str | None) -> str:
    """`DATASHARE_EXECUTOR` as IN_PROCESS or CELERY (the default if unset)."""
    value = (raw or "").strip().lower() or IN_PROCESS
    if value not in EXECUTORS:
        raise SystemExit(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}, not {raw!r}")
    return value
