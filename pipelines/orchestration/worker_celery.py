"""Steps on worker machines: Dagster's celery executor (`dagster-celery`) over a Redis broker.

With `DATASHARE_EXECUTOR=celery` the delivery jobs hand each step to the broker named by
`DATASHARE_CELERY_BROKER` (`redis://host:port/db`), and `datashare worker` processes on
other machines take them. Both sides build their Celery settings here, so a worker always
listens where the runs send.

What a step's message holds is Dagster's: the run's id, the step's key, the code location
(module and folder) and the instance's reference (its configuration, which names the
PostgreSQL variables, never their values). The executor's own configuration names the broker
variable too (`{env: ...}`), so a broker password in the URL stays in the environment. The
pseudonymisation key never travels: a worker reads it from the owner-only file in its own
working folder (`datashare worker` refuses to start without one, so a worker never makes a
key of its own, which would pseudonymise with different tokens).

A worker that dies mid-step (a kill, a reboot) must not lose the step: messages are
acknowledged only once the step has finished (`task_acks_late`), a pool process that died
gives its message back at once (`task_reject_on_worker_lost`), and Redis hands a message
whose worker vanished to another one after `DATASHARE_CELERY_VISIBILITY_SECONDS` (default
an hour, Dagster's longest run here). Running a step again is safe: every step holds its
contract-month's lease and a delivery is never taken twice (`pipelines.lake.leases`).

A step's log (its stdout and stderr) is captured on the worker by the compute log manager
the run's instance names: with an S3 lake, dagster-aws's, which stages it in the worker's
temporary folder and uploads it to the lake's bucket, where the UI on the daemon's machine
reads it (`pipelines.home.instance_config`). So Celery must leave the worker's stdout and
stderr alone (`worker_redirect_stdouts`): Dagster captures file descriptors, not loggers.

Imports nothing from Celery or dagster-celery until a worker or a celery job needs them:
`pipelines.home.settings` reads the names here.
"""

from __future__ import annotations

import os
from typing import Any

from pipelines.home.executor import BROKER_ENV, EXECUTOR_ENV

VISIBILITY_ENV = "DATASHARE_CELERY_VISIBILITY_SECONDS"
DEFAULT_VISIBILITY_SECONDS = 3600
QUEUE = "dagster"  # dagster-celery's default queue: its executor routes every step there


def visibility_seconds(raw: str | None = None) -> int:
    """`DATASHARE_CELERY_VISIBILITY_SECONDS`: how long Redis waits for a silent worker's
    step before handing it to another worker."""
    raw = os.environ.get(VISIBILITY_ENV) if raw is None else raw
    if raw is None or not raw.strip():
        return DEFAULT_VISIBILITY_SECONDS
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(
            f"{VISIBILITY_ENV} must be a whole number of seconds, not {raw!r}"
        ) from None
    if value < 1:
        raise SystemExit(f"{VISIBILITY_ENV} must be at least 1")
    return value


def _require_celery() -> None:
    """Say what to install when the `workers` extra is missing, instead of a traceback."""
    try:
        import dagster_celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"{EXECUTOR_ENV}=celery needs dagster-celery and redis ({exc.name} is missing): "
            "pip install -c constraints.txt -e '.[workers]'"
        ) from exc


def celery_settings() -> dict[str, Any]:
    """The Celery settings both the runs and the workers use (beyond broker and backend)."""
    _require_celery()
    from dagster_celery.config import DEFAULT_CONFIG

    transport = dict(DEFAULT_CONFIG["broker_transport_options"])
    visibility = visibility_seconds()
    transport["visibility_timeout"] = visibility
    # Kombu looks for messages past their visibility only every interval x throttle seconds
    # (100 by default): a tenth of the visibility, at most ten seconds, every time.
    transport["unacked_restore_interval"] = min(max(visibility // 10, 1), 10)
    transport["unacked_restore_throttle"] = 1
    return {
        **DEFAULT_CONFIG,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "task_acks_late": True,  # a step's message is done only when the step is
        "task_reject_on_worker_lost": True,  # ... and given back if its process died
        "worker_prefetch_multiplier": 1,  # a worker holds no step it has not started
        "worker_hijack_root_logger": False,
        # A step's stdout and stderr stay the process's file descriptors, which Dagster's
        # compute log manager captures (the step's log in the UI); Celery's default replaces
        # them with its logger, which Dagster cannot capture, and the log would be empty.
        "worker_redirect_stdouts": False,
    }


def celery_executor_def() -> Any:
    """Dagster's celery executor, configured for the broker `DATASHARE_CELERY_BROKER`
    names (read where the run executes; the definition holds only the variable's name)."""
    _require_celery()
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": {"env": BROKER_ENV},
            "backend": {"env": BROKER_ENV},  # results through Redis too: nothing else to run
            "config_source": celery_settings(),
        },
        name="datashare_celery",
    )


def worker_app(broker: str) -> Any:
    """The Celery application a worker runs: dagster-celery's step task, on `broker`."""
    _require_celery()
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    args = CeleryExecutor.for_cli(
        broker=broker, backend=broker, config_source=celery_settings()
    ).app_args()
    app = make_app(args)
    create_task(app)
    return app


def broker_problem(url: str, timeout: float = 5.0) -> str | None:
    """Why the Redis broker at `url` does not answer a PING, or None when it does."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def workers_answering(url: str, timeout: float = 2.0) -> list[str]:
    """The names of the workers listening on the broker at `url` that answer a ping."""
    app = worker_app(url)
    try:
        replies = app.control.ping(timeout=timeout) or []
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply)


def broker_shown(url: str) -> str:
    """The broker's URL as it may be printed: any password in it replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
