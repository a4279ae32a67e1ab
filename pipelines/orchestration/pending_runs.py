"""`datashare run`: find what is new in the drop zone and run each contract's pending months
through Dagster, one run per contract (`pipelines.orchestration.month_runs`), in this process,
recorded in the same instance the UI shows."""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import cached_property
from multiprocessing.util import Finalize
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.governance.delivery_schedule import late_now, scheduled_periods, today_in_london
from pipelines.home.settings import Settings
from pipelines.intake.delivery_intake import UNFILED, plan_intake
from pipelines.intake.dropzone import open_dropzone
from pipelines.lake.leases import LeaseBusy, month_lease
from pipelines.lake.mart_files import mart_keys, migrate_mart_files
from pipelines.lake.publishing import published
from pipelines.lake.register import Register
from pipelines.lake.store import Lake, open_lake
from pipelines.orchestration.job_names import (
    OVERSIGHT_JOB,
    PARTITION_KEY_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TIMELINESS_JOB,
    UNFILED_JOB,
    delivery_job_name,
)
from pipelines.orchestration.month_runs import MonthRun, month_runs
from pipelines.orchestration.run_failures import explain, failure_words
from pipelines.orchestration.worker_forkserver import environment, take_environment, worker_context
from pipelines.oversight.definition import marts_dir
from pipelines.warehouse.catalog import build_warehouse, catalog_current
from schemas.contract import Contract, load_contracts

if TYPE_CHECKING:
    import dagster as dg
    from dagster._core.execution.job_execution_result import JobExecutionResult


# Statuses of a delivery that stands: its quarantined rows are in governance.quarantine.
CURRENT = ("published", "held", "validated")

# The summary says what happened; Dagster's step-by-step log stays in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class RunReport:
    settings: Settings
    contracts: dict[str, Contract]
    # One per Dagster run: contract, its periods in words, run id, whether every step ran,
    # and how many months it ran.
    runs: list[tuple[str, str, str, bool, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    breaches: list[dict] = field(default_factory=list)
    files_seen: int = 0
    manifests_seen: int = 0
    current: dict[str, dict] = field(default_factory=dict)  # delivery id: its state now
    failures: dict[str, list[str]] = field(default_factory=dict)  # run id: why, in words
    waited: list[str] = field(default_factory=list)  # months another run was working on
    skipped: list[str] = field(default_factory=list)  # ... and still was, so left to it
    errors: list[str] = field(default_factory=list)  # what failed on the machine's side
    late: dict[str, list[str]] = field(default_factory=dict)  # contract: periods past due
    late_flagged_now: int = 0
    checks_ok: bool = True  # the late-delivery check ran

    @property
    def months(self) -> list[tuple[str, str, str, bool, int]]:
        """The runs of contracts' months (not of the files outside the layout)."""
        return [r for r in self.runs if r[0] != UNFILED]

    @property
    def ok(self) -> bool:
        return all(run[3] for run in self.runs) and self.checks_ok and not self.errors

    def text(self, next_steps: bool = True) -> str:
        """The run in words; `next_steps=False` leaves out what to open next (the demo says it
        once, at its end)."""
        # Each delivery this run touched, by its status now; every figure is one a query of
        # the warehouse gives back (on a fresh home, over the whole of governance).
        touched = {e["delivery_id"] for e in self.events if e["event"] != "duplicate"}
        # A file an earlier run took, superseded now by a file this run published: said
        # apart, so "files taken" counts only the files this run took.
        taken_now = {
            e["delivery_id"] for e in self.events if e["event"] in ("received", "rejected")
        }
        replaced_earlier = {
            d for d in touched - taken_now if self.current.get(d, {}).get("event") == "superseded"
        }
        now = Counter(
            self.current[d]["event"] for d in touched - replaced_earlier if d in self.current
        )
        duplicates = sum(e["event"] == "duplicate" for e in self.events)
        standing = [self.current[d] for d in touched if d in self.current]
        rows_published = sum(
            d.get("rows_curated") or 0 for d in standing if d["event"] == "published"
        )
        rows_quarantined = sum(
            d.get("rows_quarantined") or 0 for d in standing if d["event"] in CURRENT
        )
        rows_superseded = sum(
            d.get("rows_quarantined") or 0 for d in standing if d["event"] == "superseded"
        )
        severities = Counter(b["severity"] for b in self.breaches)
        lines = []
        unfiled = [e for e in self.events if e["contract"] == UNFILED and e["event"] == "rejected"]
        if not self.runs and not self.errors:
            lines.append(
                f"Nothing new in the drop zone {self.settings.dropzone} "
                f"({self.files_seen} file(s) there"
                + (f" and {self.manifests_seen} manifest(s)" if self.manifests_seen else "")
                + (", the rest already taken" if self.problems else ", all already taken")
                + ")."
            )
        else:
            failed = [r for r in self.runs if not r[3]]
            parts = [
                f"{now['published']} published",
                f"{now['superseded']} superseded",
                f"{now['held']} held back by a critical breach",
                f"{now['rejected']} rejected as unreadable, off-contract or not read",
                f"{duplicates} duplicate(s) not processed again",
            ]
            unfinished = now["received"] + now["validated"]
            if unfinished:
                parts.append(f"{unfinished} not finished (the next run finishes them)")
            lines += [
                f"Ran {sum(r[4] for r in self.months)} contract-month(s) through Dagster"
                + (f", {len(failed)} FAILED" if failed else "")
                + ".",
                f"  files taken:        {len(touched - replaced_earlier) + duplicates} "
                f"({', '.join(parts)})"
                + (
                    f"; and {len(replaced_earlier)} file(s) taken by an earlier run "
                    "superseded by this one's"
                    if replaced_earlier
                    else ""
                ),
                f"  rows published:     {rows_published:,}" + _wide_note(self, standing),
                f"  rows quarantined:   {rows_quarantined:,}"
                + (
                    f" (and {rows_superseded:,} of deliveries superseded since, kept in "
                    "governance.quarantine_history)"
                    if rows_superseded
                    else ""
                ),
                f"  breaches raised:    {len(self.breaches):,} "
                f"({severities['critical']:,} critical, {severities['major']:,} major, "
                f"{severities['minor']:,} minor)",
            ]
            for contract, period, run_id, *_ in failed:
                lines.append(f"  FAILED: {contract} {period}, Dagster run {run_id}")
                lines += [f"    {why}" for why in self.failures.get(run_id, [])]
        if unfiled:
            lines.append("Files outside the agreed layout, recorded as rejected (once):")
            lines += [f"  {e['reason']}" for e in unfiled]
        if self.late:
            periods = sum(len(ps) for ps in self.late.values())
            flagged = []
            if self.late_flagged_now:
                flagged.append(f"{self.late_flagged_now} flagged by this run")
            if periods > self.late_flagged_now:
                flagged.append(f"{periods - self.late_flagged_now} flagged by an earlier run")
            lines.append(
                f"Late deliveries: {periods} period(s) past due with no usable delivery "
                f"({', '.join(flagged)}; each is a delivery.late breach in governance.breaches):"
            )
            lines += [
                f"  {c}: no usable delivery for {_periods_text(ps)}" for c, ps in self.late.items()
            ]
        if self.waited or self.skipped:
            lines.append("Months another run was working on at the same time:")
            lines += [f"  {w}" for w in self.waited]
            lines += [f"  {s}" for s in self.skipped]
        if not self.checks_ok:
            lines.append(f"  FAILED: the late-delivery check ({TIMELINESS_JOB})")
        for error in self.errors:
            lines.append(f"FAILED: {error}")
        if self.problems:
            lines.append("Files in the drop zone that were not processed (kept where they are):")
            lines += [f"  {p}" for p in self.problems]
        lines.append(self._warehouse_summary())
        if next_steps:
            home = self.settings.home
            lines += [
                "",
                "Next:",
                f"  Dagster UI:  {Path(sys.executable).with_name('datashare')} --home {home} ui"
                "   (then open http://127.0.0.1:3000)",
                f"  Breaches:    {Path(sys.executable).with_name('datashare')} --home {home} "
                f"review   (then open {home / 'reports' / 'breach-review.html'})",
                f"  Query:       {query_hint(self.settings)}",
            ]
        return "\n".join(lines)

    def _warehouse_summary(self) -> str:
        wh = self.settings.warehouse
        lines = [f"Warehouse: {wh}"]
        try:
            return "\n".join(lines + self._warehouse_counts())
        except Exception as exc:
            return f"Warehouse: {wh} could not be read: {explain(exc)}"

    def _warehouse_counts(self) -> list[str]:
        """The warehouse's counts, each as its view gives it
        (`pipelines.orchestration.run_summary`)."""
        from pipelines.orchestration.run_summary import warehouse_counts

        return warehouse_counts(self.settings, self.contracts)


def query_hint(settings: Settings) -> str:
    """A command that queries the home's warehouse: its breaches, as a first look."""
    wh = settings.warehouse
    # Over an S3 lake, DuckDB reads the views through the pipeline's `connect`.
    opening = (
        f"from pipelines.warehouse.catalog import connect; con = connect('{wh}')"
        if settings.lake_is_s3
        else f"import duckdb; con = duckdb.connect('{wh}', read_only=True)"
    )
    return (
        f'{sys.executable} -c "{opening}; '
        "print(con.sql('select severity, rule, failing_rows, detail from governance.breaches'))\""
    )


def _wide_note(report: RunReport, standing: list[dict]) -> str:
    """Rows published count the files' rows; a wide file's row is a curated row per month."""
    wide = any(
        d["event"] == "published"
        and (c := report.contracts.get(d["contract"])) is not None
        and c.layout is not None
        for d in standing
    )
    return " (rows of the files; a wide file's row is one curated row per month)" if wide else ""


def _unfinished(register: Register, contract: str) -> set[str]:
    """Periods a run left half done (killed after intake): received and not validated, or
    validated after the month last published and not published."""
    periods = set()
    for d in register.deliveries(contract).values():
        if d["event"] == "received":
            periods.add(d["period"])
        elif d["event"] == "validated":
            current = published(register, contract, d["period"])
            if current is None or current["event_at"] < d["event_at"]:
                periods.add(d["period"])
    return periods


def _periods_text(periods: list[str]) -> str:
    if len(periods) <= 6:
        return ", ".join(periods)
    return f"{', '.join(periods[:3])}, … {', '.join(periods[-2:])} ({len(periods)} periods)"


def _raised_now(timeliness: JobExecutionResult) -> int:
    """How many `delivery.late` breaches a run of the timeliness job raised: each contract's
    step says so in its materialization (`raised_now`), as it wrote them (once, under a
    fixed name), so no breach file is read to count them."""
    raised = 0
    for event in timeliness.get_asset_materialization_events():
        entry = event.materialization.metadata.get("raised_now")
        raised += int(entry.value) if entry is not None else 0
    return raised


def _ran(result: JobExecutionResult) -> bool:
    """True when every step ran: a held-back delivery is an outcome the steps record (its
    check fails), not a failed step."""
    return not any(e.event_type_value == "STEP_FAILURE" for e in result.all_events)


@contextmanager
def _phase(report: RunReport, what: str) -> Iterator[None]:
    """Record a phase that failed on the machine's side (a full disk, S3 out of reach) in
    words, and go on with the next: the summary says what did and did not happen."""
    try:
        yield
    except Exception as exc:
        report.errors.append(f"{what}: {explain(exc)}")


class _Dagster:
    """Dagster's definitions and instance, made only when a job is to run: a run with
    nothing new needs neither."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Called before each job's run is made here, once its definitions and instance are
        # (`run_pending`'s `steps_begin`).
        self.steps_begin: Callable[[], None] = lambda: None

    def prepare(self) -> None:
        """Make the definitions and open the instance now."""
        assert self.defs is not None and self.instance is not None

    def close(self) -> None:
        """Close the instance, if it was opened: its SQLite databases are closed (each
        checkpointed, its WAL file removed) now, not when the interpreter tears down, which
        `datashare run` skips (`pipelines.cli.main`)."""
        if "instance" in self.__dict__:
            self.__dict__.pop("instance").dispose()

    @cached_property
    def defs(self) -> dg.Definitions:
        from pipelines.orchestration.definitions import build_definitions

        return build_definitions(self.settings)

    @cached_property
    def instance(self) -> dg.DagsterInstance:
        from pipelines.orchestration.instance import open_instance

        instance = open_instance(self.settings)
        # The runs' captured output shown on the terminal by a thread, not by four processes
        # a run (`pipelines.orchestration.compute_logs`); a Dagster whose internals moved
        # keeps its own.
        with suppress(ImportError, AttributeError, TypeError):
            from pipelines.orchestration.compute_logs import mirror_in_process

            mirror_in_process(instance)
        return instance

    def execute(
        self, job: str, months: MonthRun | None = None, assets: list[list[str]] | None = None
    ) -> JobExecutionResult:
        """Run `job` here (for a run of months, or only the assets at paths `assets`), filed
        under the code location as the UI lists it
        (`pipelines.orchestration.instance.execute_here`)."""
        import dagster as dg

        from pipelines.orchestration.instance import execute_here

        tags = {}
        if months and len(months.periods) == 1:
            tags = {PARTITION_KEY_TAG: months.first}
        elif months:
            # A partition range, run at once by the assets' single-run backfill policy.
            tags = {RANGE_START_TAG: months.first, RANGE_END_TAG: months.last}
        instance, job_def = self.instance, self.defs.resolve_job_def(job)
        self.steps_begin()
        return execute_here(
            instance,
            job_def,
            run_config=QUIET,
            tags=tags,
            asset_selection=[dg.AssetKey(path) for path in assets] if assets else None,
        )


# Set inside `sharing_dagster`: the runs of this process keep one `_Dagster` per home.
_SHARED: dict[Settings, _Dagster] | None = None


@contextmanager
def sharing_dagster() -> Iterator[None]:
    """Within it, `run_pending` calls share Dagster's definitions and instance: the demo's
    two passes make and open them once (about two seconds of the second pass)."""
    global _SHARED
    _SHARED = {}
    try:
        yield
    finally:
        shared, _SHARED = _SHARED, None
        for dagster in shared.values():
            dagster.close()


def _dagster_for(settings: Settings) -> _Dagster:
    if _SHARED is None:
        return _Dagster(settings)
    return _SHARED.setdefault(settings, _Dagster(settings))


class _Progress:
    """One line per contract as its months finish: how many, and how long they took."""

    def __init__(self, tell: Callable[[str], None] | None, runs: list[MonthRun]) -> None:
        self.tell, self.done = tell, 0
        self.counts: Counter[str] = Counter()
        for run in runs:
            self.counts[run.contract] += len(run.periods)

    def begin(self, at_once: int) -> None:
        months = sum(n for c, n in self.counts.items() if c != UNFILED)
        if self.tell and self.counts:
            how = "contract by contract" if at_once == 1 else f"{at_once} contracts at a time"
            self.tell(f"Running {months} contract-month(s) through Dagster, {how}:")

    def finished(self, contract: str, seconds: float) -> None:
        self.done += 1
        if self.tell is None:
            return
        n = self.counts[contract]
        what = f"{n} period(s)" if contract != UNFILED else "the files outside the layout"
        self.tell(
            f"  [{self.done}/{len(self.counts)}] {contract}: {what} through Dagster in "
            f"{seconds:.1f} s"
        )


def _new_late_flags(lake: Lake, report: RunReport) -> set[str]:
    """Contracts with a late period that has no `delivery.late` breach yet (the check would
    raise one)."""
    return {
        contract
        for contract, periods in report.late.items()
        if any(not lake.exists(lake.breaches_path(contract, p, "delivery-late")) for p in periods)
    }


def _late(report: RunReport, register: Register, waiting: set[tuple[str, str]]) -> None:
    """Each contract's periods past due with no usable delivery, into the report."""
    report.late = {}
    today = today_in_london()
    for contract in report.contracts.values():
        here = {p for c, p in waiting if c == contract.name}
        _, late = late_now(register, contract, today, here)
        if late:
            report.late[contract.name] = [p.period for p in late]


def _execute(dagster: _Dagster, lake: Lake, run: MonthRun, report: RunReport) -> None:
    """Run one contract's months through Dagster, holding each month's lease for the whole
    run: a month another run is working on is waited for, and left to it if it takes too
    long (the others go on without it)."""
    with ExitStack() as leases:
        held = []
        for period in run.periods:
            try:
                leases.enter_context(
                    month_lease(lake, run.contract, period or None, on_wait=report.waited.append)
                )
            except LeaseBusy as busy:
                report.skipped.append(str(busy))
                continue
            held.append(period)
        if run.contract == UNFILED:
            if held:
                result = dagster.execute(UNFILED_JOB)
                report.runs.append((UNFILED, "", result.run_id, _ran(result), 0))
                if not _ran(result):
                    report.failures[result.run_id] = failure_words(result)
            return
        job = delivery_job_name(run.contract)
        for part in month_runs(run.contract, held, run.periods):
            result = dagster.execute(job, months=part)
            ok = _ran(result)
            report.runs.append((run.contract, part.label(), result.run_id, ok, len(part.periods)))
            if not ok:
                report.failures[result.run_id] = failure_words(result)


@dataclass
class _Done:
    """What one contract's runs added to the report (sent back from a worker process)."""

    runs: list = field(default_factory=list)
    failures: dict = field(default_factory=dict)
    waited: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    seconds: float = 0.0


def _execute_contract(dagster: _Dagster, lake: Lake, runs: list[MonthRun]) -> _Done:
    """One contract's runs, into a report of their own."""
    started = time.monotonic()
    part = RunReport(dagster.settings, {})
    for run in runs:
        with _phase(part, f"{run.contract} {run.label()}".strip()):
            _execute(dagster, lake, run, part)
    return _Done(
        part.runs, part.failures, part.waited, part.skipped, part.errors,
        time.monotonic() - started,
    )  # fmt: skip


# A worker process's own Dagster and lake, made once when it starts.
_WORKER: tuple[_Dagster, Lake] | None = None

# A folder: each worker process profiles its start and each contract's runs into it
# (cProfile, `worker-*.prof`), since a profile of `datashare run` sees only its own process.
PROFILE_ENV = "DATASHARE_PROFILE_WORKERS"


@contextmanager
def _profiled(name: str) -> Iterator[None]:
    folder = os.environ.get(PROFILE_ENV)
    if not folder:
        yield
        return
    import cProfile

    with cProfile.Profile() as profile:
        yield
    profile.dump_stats(Path(folder) / f"worker-{name}-{os.getpid()}.prof")


def _start_worker(settings: Settings, environ: dict[str, str]) -> None:
    global _WORKER
    take_environment(environ)
    with _profiled("start"):
        dagster = _Dagster(settings)
        dagster.prepare()
        _WORKER = (dagster, open_lake(settings.lake))
    # The last of multiprocessing's finalizers, which run when the pool's process returns
    # from its work, however it was started: a process forked from the forkserver is then
    # ended with `os._exit`, so Python's `atexit` handlers would never run in it.
    Finalize(None, _end_worker, exitpriority=-100)


def _end_worker() -> None:
    """A worker process's end, once the pool has ended its work (the last of
    multiprocessing's finalizers): its instance closed, as `run_pending` closes its own
    (each SQLite database checkpointed, no WAL left), the `atexit` handlers run (as a
    spawned worker's interpreter ran them), the standard streams flushed; then the process
    ended without Python's teardown of every module and object, one garbage-collector pass
    after another over what the worker imported (Dagster, great-expectations, pandas,
    polars...): about a second of CPU that the pool's shutdown, and so the run, waited
    for. Status 0: a worker ends here only when the pool has told it to, and the pool does
    not read a worker's status."""
    if _WORKER is not None:
        _WORKER[0].close()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _execute_in_worker(runs: list[MonthRun]) -> _Done:
    assert _WORKER is not None
    with _profiled(runs[0].contract):
        return _execute_contract(*_WORKER, runs)


def _execute_all(
    dagster: _Dagster,
    lake: Lake,
    runs: list[MonthRun],
    report: RunReport,
    told: _Progress,
    at_most: int,
    checks_done: Callable[[], None] = lambda: None,
) -> None:
    """Each contract's runs, `at_most` contracts at a time (the machine's cores, as the run
    queue has it): the contracts are independent, and each month holds its own lease.

    Side by side, each in a worker process that makes Dagster's definitions, opens the
    instance once for all the contracts it runs. Forked from a server process that imported
    what they import (`worker_forkserver`), not from this one: a fork of a process whose
    polars or Arrow thread pools are running can deadlock. Files outside the layout go
    first, here. `checks_done` is called once this process will validate nothing more: at
    once when it validates nothing (no month, or the contracts side by side), else when its
    months are done."""
    by_contract: dict[str, list[MonthRun]] = {}
    for run in runs:
        by_contract.setdefault(run.contract, []).append(run)
    done: list[tuple[str, _Done]] = []
    unfiled = by_contract.pop(UNFILED, None)
    at_once = min(at_most, len(by_contract), os.cpu_count() or 1)
    if not (by_contract and at_once <= 1):
        checks_done()
    with ExitStack() as early:
        early.callback(checks_done)
        if by_contract and at_once <= 1:
            # The months are validated in this process: great-expectations, whose import is
            # most of a one-month run, loads meanwhile in a second one, on the other core.
            # (Imported here: a run with nothing to validate has no use for either module.)
            from pipelines.validation.dataset_expectations import warm_session
            from pipelines.validation.ge_process import loading_early

            early.enter_context(loading_early(warm_session))
        if unfiled:
            done.append((UNFILED, _execute_contract(dagster, lake, unfiled)))
        _execute_contracts(dagster, lake, by_contract, at_once, told, done)
    for _, part in sorted(done, key=lambda d: d[0] != UNFILED):
        report.runs += part.runs
        report.failures.update(part.failures)
        report.waited += part.waited
        report.skipped += part.skipped
        report.errors += part.errors


def _execute_contracts(
    dagster: _Dagster,
    lake: Lake,
    by_contract: dict[str, list[MonthRun]],
    at_once: int,
    told: _Progress,
    done: list[tuple[str, _Done]],
) -> None:
    """`_execute_all`'s contracts (files outside the layout done), `at_once` at a time; each
    contract's result is added to `done`."""
    told.begin(max(at_once, 1))
    for contract, part in done:
        told.finished(contract, part.seconds)
    if at_once <= 1:
        for contract, contract_runs in by_contract.items():
            done.append((contract, part := _execute_contract(dagster, lake, contract_runs)))
            told.finished(contract, part.seconds)
    else:
        with ProcessPoolExecutor(
            at_once,
            worker_context(),
            initializer=_start_worker,
            initargs=(dagster.settings, environment()),
        ) as pool:
            # The contracts with the most months first: the short ones then fill in at the
            # end, rather than one worker running a long contract alone.
            futures = {
                pool.submit(_execute_in_worker, contract_runs): contract
                for contract, contract_runs in sorted(
                    by_contract.items(), key=lambda item: -sum(len(r.periods) for r in item[1])
                )
            }
            # Meanwhile this process makes its own definitions and instance, for the late
            # check and the marts after the runs (a failure here is met, and said, there).
            with suppress(Exception):
                dagster.prepare()
            for future in as_completed(futures):
                contract = futures[future]
                try:
                    part = future.result()
                except Exception as exc:  # the worker itself died (killed, out of memory)
                    part = _Done(errors=[f"{contract}: {explain(exc)}"])
                done.append((contract, part))
                told.finished(contract, part.seconds)


def run_pending(
    settings: Settings,
    progress: Callable[[str], None] | None = None,
    *,
    compute_marts: bool = True,
    checks_done: Callable[[], None] = lambda: None,
    steps_begin: Callable[[], None] = lambda: None,
) -> RunReport:
    """Run every contract-month with new files; report what happened. `progress` is told
    of each contract as its months finish (a backfill of years is minutes, not silence).
    `compute_marts=False` leaves the oversight marts to a run that follows at once (the demo's
    second pass), which computes each of them once instead of twice. `checks_done` is
    called as soon as this process will validate nothing more (a caller that started
    great-expectations loading early ends it then: `pipelines.cli.main`). `steps_begin` is
    called before each Dagster run is made in this process, once Dagster's definitions and
    instance are (the `datashare` program lets its garbage collector start then)."""
    contracts = load_contracts()
    report = RunReport(settings, contracts)
    dagster = _dagster_for(settings)
    dagster.steps_begin = steps_begin
    lake = open_lake(settings.lake)
    register = Register(lake)
    zone = open_dropzone(settings.dropzone, settings.settle_seconds)
    plan = None
    with _phase(report, "listing the drop zone and the register"):
        files = zone.files(set(contracts))
        # The contracts' partitions (`assets.partitions`), without importing Dagster.
        today = today_in_london()
        periods = {c.name: scheduled_periods(c, today) for c in contracts.values()}
        plan = plan_intake(files, register.seen_versions(), periods)
        for name in contracts:  # and whatever a killed run left half done
            for period in _unfinished(register, name) & set(periods[name]):
                plan.pending.setdefault((name, period), [])
        report.files_seen = len(files)
        report.manifests_seen = sum(f.manifest is not None for f in files)
        report.problems = [f"{f.relative} {reason}" for f, reason in plan.waiting]
    if plan is None:
        checks_done()
        return report

    # One run per contract, for its pending months (per stretch of consecutive ones).
    runs = [MonthRun(UNFILED, ("",))] if plan.unfiled else []
    for name in sorted({contract for contract, _ in plan.pending}):
        pending = [p for contract, p in plan.pending if contract == name]
        runs += month_runs(name, pending, periods[name])
    _execute_all(
        dagster, lake, runs, report, _Progress(progress, runs), settings.max_runs, checks_done
    )

    waiting = {(f.contract, f.period) for f, _ in plan.waiting}
    with _phase(report, "the late-delivery check"):
        # The same job the daily schedule runs, after what was just taken: the steps of the
        # contracts this run touched or with a period to flag now (none, when nothing ran
        # and every late period is flagged already).
        _late(report, register, waiting)
        due = {r[0] for r in report.months} | _new_late_flags(lake, report)
        if due:
            timeliness = dagster.execute(TIMELINESS_JOB, assets=[["timeliness", c] for c in due])
            report.checks_ok = _ran(timeliness)
            report.late_flagged_now = _raised_now(timeliness)
            _late(report, register, waiting)

    marts_ran = moved = False  # (moved stays False if the lake could not be read below)
    with _phase(report, "the oversight marts"):
        # Only the marts that read a contract this run touched (and any never computed): a
        # run with nothing new recomputes nothing.
        marts = {p.stem for p in marts_dir().glob("*.yaml")}  # a mart is <mart>.yaml + .sql
        # A lake an earlier version wrote keeps each mart as one file: moved into its
        # folder now (and the catalog rebuilt below, to read it there).
        moved = migrate_mart_files(lake)
        missing = marts - set(mart_keys(lake))
        touched = {r[0] for r in report.months}
        chosen = []
        if compute_marts and (missing or touched):
            # Imported here, not at the top: the mart runner reads every mart's YAML when
            # imported (~0.2 s), which an idle run (nothing new, every mart computed) skips.
            from pipelines.oversight.mart_runner import MARTS, marts_reading

            reading = set(marts_reading(touched, contracts))
            chosen = [name for name in MARTS if name in missing or name in reading]
        if chosen:
            oversight = dagster.execute(OVERSIGHT_JOB, assets=[["oversight", n] for n in chosen])
            report.checks_ok = report.checks_ok and oversight.success
            marts_ran = oversight.success

    with _phase(report, "reading back what the runs recorded"):
        run_ids = {r[2] for r in report.runs}
        report.events = [e for e in register.events() if e["run_id"] in run_ids] if run_ids else []
        report.current = register.deliveries()
        # The breaches of each delivery the runs judged, read from its own file (not every
        # breach file of the lake, one per month of history).
        judged: dict[str, dict[str, str | None]] = {}
        for e in report.events:
            if e["event"] in ("validated", "rejected", "held"):
                judged.setdefault(e["contract"], {})[e["delivery_id"]] = e["period"]
        report.breaches = [
            b for contract, ids in judged.items() for b in register.delivery_breaches(contract, ids)
        ]
    with _phase(report, "the warehouse catalog"):
        # The marts' step saw to it last; otherwise once, if anything could have changed and
        # the catalog is not already what a rebuild would make (its views read the lake's
        # files by pattern, so a month published shows in it as it is).
        changed = report.runs or report.late_flagged_now or not settings.warehouse.exists()
        if moved and not marts_ran:
            # Marts just moved into their folders: the catalog's views read the old files.
            build_warehouse(lake, contracts, settings.warehouse)
        elif changed and not marts_ran and not catalog_current(settings.warehouse, lake, contracts):
            build_warehouse(lake, contracts, settings.warehouse)
    if _SHARED is None:  # (a shared one is closed when the sharing ends)
        dagster.close()
    return report
