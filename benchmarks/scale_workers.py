"""The same history as `benchmarks/scale.py`, through two celery workers (`--workers`).

Everything runs on this machine, started as `tests/test_workers.py` starts it: SeaweedFS for
the S3 drop zone and lake, a throwaway PostgreSQL for Dagster's instance, Redis for the
broker, the daemon as its unit runs it, and two `datashare worker` processes, each with a
working folder of its own (its copy of the key, its own temporary folder), as two machines
would. A step of history is uploaded to the drop zone at once; the daemon's sensor asks for
the runs, the run's steps go to the workers, and the step is done when the analysts'
warehouse (the daemon's home, caught up by its `warehouse_after_workers` sensor) shows every
month sent. So each figure includes what the daemon adds: the sensor's interval (SENSOR
below), the run's launch, and the messages through Redis.

Peak memory is each process's own high-water resident set (`VmHWM`), sampled twice a second
over the process trees of the daemon and of each worker; it is reset at the start of each
step (`/proc/<pid>/clear_refs`), so each step has its own peaks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.postgres_server import running_postgres  # noqa: E402
from tests.redis_server import running_redis  # noqa: E402
from tests.s3_server import BUCKET, LAKE_BUCKET, S3Server, running_seaweed  # noqa: E402

BIN = Path(sys.executable).parent
SENSOR = 5  # seconds between the daemon's looks at the drop zone (30 in production)
TIMEOUT = 1800.0  # one step of history on a loaded 2-core machine
PREFIX = "scale"
STEP_LOGS = "_step_logs/"


@dataclass
class Phase:
    """One step of history (or one new month) through the workers."""

    seconds: float
    steps_seconds: float  # of which the steps ran (on the workers), from Dagster's events
    # The rest, in seconds: upload and the sensor's look until the run is asked for; the
    # queue and the run's process starting; the run beyond its steps (handing them to the
    # broker, waiting for their results); the run's end until the analysts' warehouse shows it.
    rest: dict[str, float]
    runs: int  # Dagster runs the sensor asked for
    peaks: dict[str, float]  # role (daemon, w1, w2): its largest process's peak, in MB
    handed: dict[str, int]  # worker: steps it was handed


@dataclass
class Cluster:
    """The daemon's home, the two workers and the services they share, all started."""

    work: Path
    home: Path
    server: S3Server
    roles: dict[str, subprocess.Popen] = field(default_factory=dict)  # daemon, w1, w2
    logs: list[Path] = field(default_factory=list)

    def tails(self) -> str:
        return "\n".join(f"--- {p}:\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs)

    def lake_mb(self) -> tuple[float, float]:
        """The lake's size on S3 (its curated, landing and register objects), and its step
        logs' apart."""
        data = logs = 0
        pages = self.server.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=LAKE_BUCKET, Prefix=f"{PREFIX}/"):
            for item in page.get("Contents", []):
                if item["Key"].startswith(f"{PREFIX}/{STEP_LOGS}"):
                    logs += item["Size"]
                else:
                    data += item["Size"]
        return data / 2**20, logs / 2**20


def _aws_env(server: S3Server) -> dict[str, str]:
    """The standard AWS settings for the local SeaweedFS (as the tests' `s3` fixture)."""
    return {
        "AWS_ENDPOINT_URL_S3": server.endpoint,
        "AWS_ACCESS_KEY_ID": "datashare-test",
        "AWS_SECRET_ACCESS_KEY": "datashare-test",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _start(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextmanager
def cluster(work: Path) -> Iterator[Cluster]:
    """Start SeaweedFS, PostgreSQL, Redis, two workers and the daemon; stop them after."""
    with ExitStack() as stack:
        (work / "seaweedfs").mkdir(parents=True)
        server = stack.enter_context(running_seaweed(work / "seaweedfs"))
        postgres = stack.enter_context(running_postgres())
        redis = stack.enter_context(running_redis())
        postgres.create_database("scale")
        home = work / "home"  # the daemon's machine, where the analysts' warehouse is
        shared = {
            **_aws_env(server),
            "DATASHARE_POSTGRES_HOST": postgres.host,
            "DATASHARE_POSTGRES_PORT": str(postgres.port),
            "DATASHARE_POSTGRES_DB": "scale",
            "DATASHARE_POSTGRES_USER": postgres.user,
            "PGPASSFILE": str(postgres.write_pgpass(work / "pgpass")),
            "DATASHARE_DROP_ZONE": f"s3://{BUCKET}/{PREFIX}",
            "DATASHARE_LAKE": f"s3://{LAKE_BUCKET}/{PREFIX}",
            "DATASHARE_SETTLE_SECONDS": "0",
            "DATASHARE_EXECUTOR": "celery",
            "DATASHARE_CELERY_BROKER": redis.url(),
            "DATASHARE_SENSOR_INTERVAL_SECONDS": str(SENSOR),
            "DATASHARE_LEASE_WAIT_SECONDS": "600",
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DATASHARE_", "AWS_"))}
        base.pop("PGPASSWORD", None)
        # This process reads the instance and the warehouse as the daemon's machine does.
        os.environ.update({**shared, "DATASHARE_HOME": str(home),
                           "DAGSTER_HOME": str(home / "dagster")})  # fmt: skip
        from pipelines.home.settings import load_settings
        from pipelines.intake.pseudonymise import load_key
        from pipelines.orchestration.instance import instance_health

        settings = load_settings()
        settings.ensure_folders()
        if not (health := instance_health(settings)).ok:
            raise SystemExit(f"the instance does not open: {health.problems}")
        load_key(home)  # the deployment's key, copied to each worker as an operator would
        found = Cluster(work, home, server)
        try:
            for name in ("w1", "w2"):
                folder = work / name
                (folder / "tmp").mkdir(parents=True)
                shutil.copyfile(home / "pseudonym.key", folder / "pseudonym.key")
                (folder / "pseudonym.key").chmod(0o600)
                env = {**base, **shared, "TMPDIR": str(folder / "tmp")}
                argv = [str(BIN / "datashare"), "--home", str(folder), "worker", "--name", name]
                found.logs.append(work / f"{name}.log")
                found.roles[name] = _start(argv, env, found.logs[-1], folder)
            _wait("both workers ready", found, lambda: all(
                "ready." in p.read_text(errors="replace") for p in found.logs), 300)  # fmt: skip
            env = {**base, **shared, "DATASHARE_HOME": str(home),
                   "DAGSTER_HOME": str(home / "dagster")}  # fmt: skip
            found.logs.append(work / "daemon.log")
            daemon = [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
            found.roles["daemon"] = _start(daemon, env, found.logs[-1], REPO)
            # Timed from the daemon's first look at the (empty) drop zone: its start-up is a
            # deployment's, paid once, not a step's.
            _wait("the daemon's sensor ticking", found, lambda: "Sensor new_deliveries skipped"
                  in found.logs[-1].read_text(errors="replace"), 300)  # fmt: skip
            yield found
        finally:
            for process in found.roles.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)


def _wait(what: str, found: Cluster, ready, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := ready():
            return value
        time.sleep(1)
    raise SystemExit(f"{what}: not within {timeout:.0f} s\n{found.tails()}")


def _tree(root: int) -> list[int]:
    """`root` and every process descended from it (by their parents in /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(text.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _hwm_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) / 1024 if found else None


class Peaks:
    """Each process's high-water resident set in the daemon's and the workers' trees."""

    def __init__(self, roles: dict[str, subprocess.Popen]) -> None:
        self.roles = roles
        self.seen: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.5):
            for role, process in self.roles.items():
                for pid in _tree(process.pid):
                    if (mb := _hwm_mb(pid)) is not None:
                        with self.lock:
                            key = (role, pid)
                            self.seen[key] = max(self.seen.get(key, 0.0), mb)

    def reset(self) -> None:
        """Start a new phase: forget the peaks and reset each live process's high-water mark
        (writing 5 to clear_refs; where that is not allowed, peaks carry over)."""
        with self.lock:
            self.seen.clear()
            for process in self.roles.values():
                for pid in _tree(process.pid):
                    try:
                        Path(f"/proc/{pid}/clear_refs").write_text("5")
                    except OSError:
                        pass

    def largest(self) -> dict[str, float]:
        with self.lock:
            out: dict[str, float] = {}
            for (role, _), mb in self.seen.items():
                out[role] = max(out.get(role, 0.0), mb)
            return out

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _upload(found: Cluster, files: list[Path], contract: str) -> None:
    """Put the month files in the S3 drop zone at once, as the force's upload would."""
    client = found.server.client()

    def put(path: Path) -> None:
        period = path.parent.name
        client.upload_file(str(path), BUCKET, f"{PREFIX}/{contract}/{period}/{path.name}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))


def _warehouse_months(home: Path, contract: str) -> int:
    import duckdb

    from pipelines.warehouse.catalog import connect

    try:
        with connect(home / "warehouse.duckdb") as con:  # as an analyst opens it: S3 readable
            sql = f"SELECT count(DISTINCT _period) FROM curated.{contract}"
            return con.execute(sql).fetchone()[0]
    except (duckdb.Error, OSError):
        return -1  # not built yet, or being rebuilt by the daemon's sensor


def phase(found: Cluster, peaks: Peaks, files: list[Path], contract: str, months: int) -> Phase:
    """Upload `files`, and time until the analysts' warehouse shows `months` months of
    `contract` (all sent so far); raise if a run fails."""
    import dagster as dg

    from pipelines.orchestration.job_names import delivery_job_name

    job = delivery_job_name(contract)
    with dg.DagsterInstance.get() as instance:
        before = {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(job_name=job))}
    peaks.reset()
    began, began_at = time.monotonic(), time.time()
    _upload(found, files, contract)

    def done() -> bool:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=job))
        new = [r for r in runs if r.run_id not in before]
        if failed := [r.run_id for r in new if r.status == dg.DagsterRunStatus.FAILURE]:
            raise SystemExit(f"run(s) {failed} failed\n{found.tails()}")
        finished = new and all(r.is_finished for r in new)
        return bool(finished) and _warehouse_months(found.home, contract) == months

    _wait(f"{len(files)} month(s) through the workers", found, done, TIMEOUT)
    seconds, ended_at = time.monotonic() - began, time.time()
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(job_name=job))
        records = [r for r in records if r.dagster_run.run_id not in before]
        new = [r for r in instance.get_runs(filters=dg.RunsFilter(job_name=job))
               if r.run_id not in before]  # fmt: skip
        handed: dict[str, int] = {}
        steps_seconds = sum(_steps_seconds(instance, run.run_id) for run in new)
        for run in new:
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                event = record.dagster_event
                worker = event.engine_event_data.metadata.get("Celery worker") if event else None
                if worker is not None:
                    name = str(worker.value).split("@")[0]
                    handed[name] = handed.get(name, 0) + 1
    created = min(r.create_timestamp.timestamp() for r in records)
    started = min(r.start_time or created for r in records)
    ended = max(r.end_time or ended_at for r in records)
    rest = {
        "asked": created - began_at,
        "launched": started - created,
        "run beyond steps": ended - started - steps_seconds,
        "warehouse": ended_at - ended,
    }
    return Phase(seconds, steps_seconds, rest, len(new), peaks.largest(), handed)


def _steps_seconds(instance, run_id: str) -> float:
    """How long a run's steps ran, summed: each step's last start to its success."""
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    started: dict[str, float] = {}
    total = 0.0
    for record in instance.all_logs(run_id, of_type=kinds):
        event = record.dagster_event
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.step_key in started:
            total += record.timestamp - started.pop(event.step_key)
    return total
