"""`datashare worker`: take delivery-job steps from the broker, on this machine.

A worker machine shares only the S3 drop zone and lake, the PostgreSQL instance and the
Redis broker with the rest of the deployment; its home (`--home`, `DATASHARE_HOME`) is its
own working folder, holding the pseudonymisation key file (owner-only, copied there by the
operator) and nothing anyone else reads. See `pipelines.orchestration.worker_celery` for
what the broker carries and how a step outlives its worker.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from pipelines.home.executor import BROKER_ENV, CELERY, EXECUTOR_ENV
from pipelines.home.instance_config import POSTGRES
from pipelines.home.settings import Settings
from pipelines.intake.pseudonymise import KEY_ENV
from pipelines.orchestration.worker_celery import QUEUE


def add_worker_command(sub: Any) -> None:
    """Add `worker` to the `datashare` sub-commands."""
    worker = sub.add_parser(
        "worker",
        help="run delivery-job steps sent through the broker (DATASHARE_EXECUTOR=celery)",
        description="A Celery worker for Dagster's celery executor: takes the steps of "
        f"delivery runs from the Redis broker {BROKER_ENV} names and runs them here, "
        "against the S3 drop zone and lake and the PostgreSQL instance. Its home is its own "
        "working folder and must hold the pseudonymisation key file, readable by its owner "
        "only.",
    )
    worker.add_argument(
        "--name", default=None, help="this worker's name (default: worker-<pid>@<host>)"
    )
    worker.add_argument("--concurrency", type=int, default=1, help="steps at once (default: 1)")
    worker.add_argument(
        "--check",
        action="store_true",
        help="say whether this machine can be a worker (broker, lake, instance, key) and stop",
    )
    worker.add_argument("--loglevel", default="INFO", help="Celery's log level (default: INFO)")


def worker_problems(settings: Settings, environ: dict[str, str] | None = None) -> list[str]:
    """What stops this machine being a worker, in words (nothing: an empty list)."""
    env = os.environ if environ is None else environ
    return shared_problems(settings) + key_file_problems(settings.home, env)


def shared_problems(settings: Settings) -> list[str]:
    """What stops steps running on workers, on any machine of the deployment: the broker,
    and the drop zone, lake and instance every machine must share."""
    problems = []
    if not settings.celery_broker:
        problems.append(f"{BROKER_ENV} is not set: a worker takes its steps from that broker")
    elif not settings.celery_broker.startswith(("redis://", "rediss://")):
        problems.append(f"{BROKER_ENV} must be a redis:// or rediss:// URL")
    if not settings.lake_is_s3:
        problems.append(
            "DATASHARE_LAKE is a folder: workers on other machines need the S3 lake "
            "(s3://bucket/prefix) that every machine reads"
        )
    if not settings.dropzone_is_s3:
        problems.append(
            "DATASHARE_DROP_ZONE is a folder: a worker takes deliveries from the S3 drop "
            "zone (s3://bucket/prefix)"
        )
    if settings.instance_storage != POSTGRES:
        problems.append(
            "DATASHARE_POSTGRES_HOST is not set: workers record their steps in the shared "
            "PostgreSQL instance"
        )
    return problems


def setup_findings(settings: Settings) -> list[tuple[str, str]]:
    """The worker setup as `datashare doctor` and `datashare worker --check` say it: pairs
    of a level (ok, warn, fail) and words. Connects to the broker; changes nothing."""
    from pipelines.orchestration.worker_celery import (
        broker_problem,
        broker_shown,
        workers_answering,
    )

    found = [("fail", problem) for problem in shared_problems(settings)]
    if not settings.celery_broker:
        return found
    shown = broker_shown(settings.celery_broker)
    if why := broker_problem(settings.celery_broker):
        return [*found, ("fail", f"the broker {shown} does not answer: {why}")]
    found.append(("ok", f"the broker {shown} answers"))
    workers = workers_answering(settings.celery_broker)
    if workers:
        found.append(("ok", f"{len(workers)} worker(s) answer: {', '.join(workers)}"))
    else:
        found.append(
            ("warn", "no worker answers: the runs' steps wait in the broker until one starts "
             "(`datashare worker` on a worker machine)")
        )  # fmt: skip
    found.append(
        ("ok", "runs the daemon launches send their steps to the workers; `datashare run` "
         "still runs its steps in its own process")
    )  # fmt: skip
    return found


def key_file_problems(home: Path, environ: dict[str, str] | Any) -> list[str]:
    """The pseudonymisation key must be a file in the worker's home, owner-only.

    Not the environment variable (a process listing or a crash report can show it) and not
    absent: `load_key` would make a new key, and this worker's tokens would differ from
    every other machine's."""
    if environ.get(KEY_ENV):
        return [
            f"{KEY_ENV} is set: a worker reads the pseudonymisation key only from "
            f"{home / 'pseudonym.key'} (owner-only), never from its environment"
        ]
    path = home / "pseudonym.key"
    if not path.is_file():
        return [
            f"no pseudonymisation key at {path}: copy the deployment's key there "
            f"(install -m 600 pseudonym.key {path}); a worker never makes its own"
        ]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return [f"{path} can be read by others (mode {mode:o}): chmod 600 {path}"]
    if path.stat().st_uid != os.geteuid():
        return [f"{path} belongs to another user: the worker's own user must own it"]
    return []


def load_for_steps() -> None:
    """Load what every step needs before the worker takes one: the code location (Dagster,
    the assets and the libraries they import, the definitions built once) and
    great-expectations with this process's context (`warm_session`).

    Called in the worker's main process before Celery starts its pool, whose processes are
    forked from it and so start with all of it loaded (sharing its memory until they write
    to it). Otherwise each pool process loaded them at its first step (about 4 s of CPU
    here, 25 s on a loaded machine) while that step's message was already counting down
    its visibility (`DATASHARE_CELERY_VISIBILITY_SECONDS`): now a step is only its own work,
    and "ready." in the worker's log means ready to run one at once. Only imports and
    definitions: nothing here starts the polars or Arrow thread pools, so the fork is safe."""
    from pipelines.orchestration.definitions import build_definitions
    from pipelines.validation.dataset_expectations import warm_session

    build_definitions()
    warm_session()


def run_worker_command(args: Any, settings: Settings) -> int:
    """Start the worker in this process (it runs until stopped)."""
    import sys

    if args.check:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        findings = setup_findings(settings)
        findings += [("fail", p) for p in key_file_problems(settings.home, os.environ)]
        for level, words in findings:
            print(f"{marks[level]}  worker: {words}")
        return 1 if any(level == "fail" for level, _ in findings) else 0
    if problems := worker_problems(settings):
        print("This machine cannot be a worker yet:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    settings.home.mkdir(parents=True, exist_ok=True)
    os.chdir(settings.home)  # its working folder: anything a step writes locally lands here
    os.environ["DATASHARE_HOME"] = str(settings.home)
    # The definitions a worker loads build the delivery jobs as the runs that send it steps.
    os.environ[EXECUTOR_ENV] = CELERY
    from pipelines.orchestration.worker_celery import worker_app

    began = time.monotonic()
    load_for_steps()  # before Celery forks its pool: each step starts with it loaded
    took = time.monotonic() - began
    print(f"datashare worker: code location and great-expectations loaded ({took:.1f} s)")
    sys.stdout.flush()
    app = worker_app(settings.celery_broker)
    name = args.name or f"worker-{os.getpid()}"
    app.worker_main(
        [
            "worker",
            f"--loglevel={args.loglevel}",
            f"--concurrency={max(args.concurrency, 1)}",
            "--prefetch-multiplier=1",
            f"--queues={QUEUE}",
            f"--hostname={name}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0
