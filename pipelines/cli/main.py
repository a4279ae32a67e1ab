"""The `datashare` command line: demo, run, ui."""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import functools
import gc
import getpass
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, suppress
from pathlib import Path

from pipelines.home.settings import Settings, load_settings

# The sub-commands' modules are imported by `main`, not here: a process started with
# multiprocessing's `spawn` (the great-expectations helper of `datashare run`) imports this
# module again as its main, and had every command's modules (the breach register, the
# contract pages, the lake's DDL...) imported for nothing, ~0.1 s of its CPU.

REPO_ROOT = Path(__file__).resolve().parents[2]
# Commands that read a home and must not make an empty one to answer from.
READS_HOME = (
    "breaches", "report", "review", "warehouse", "retention", "desk", "agreement", "explain",
)  # fmt: skip


# The commands whose process ends itself when `datashare` is the program (`program`: the
# `datashare` script, `python -m pipelines.cli.main`), not when another program calls `main`: each
# imports Dagster, pandas, polars, pandera and SQLAlchemy, some 280,000 objects that
# Python's cyclic garbage collector tracks (`_collect_less_often`, `_leave`).
ENDS_ITS_PROCESS = ("run", "demo")


def _collect_less_often() -> None:
    """Python's cyclic garbage collector looks at its youngest objects every 700 allocations
    (more than deallocations) and, every hundredth time, at all of them. Most of what a run
    allocates before its first month is the imported modules' objects, kept for the whole
    process: a 37-month backfill made 5 passes over all of them while importing (0.02 to
    0.14 s of CPU each, one core waiting; 730 young and 66 middle passes besides), and none
    found anything worth it. Every 10,000 allocations: no pass over everything, 49 young and
    4 middle ones, the collector's CPU 0.53-0.56 -> 0.23 s (load 15-19), for some 12,000 more
    objects kept at the end (of 290,000). Memory held in frames and tables is freed by
    reference counting as before: this only changes how soon cycles of objects are."""
    gc.set_threshold(10_000, 10, 10)


def _no_collection_until_the_steps() -> Callable[[], None]:
    """No garbage collection at all while `datashare run` imports its modules and makes
    Dagster's definitions and instance; the returned function (`run_pending`'s
    `steps_begin`, called before its first Dagster run is made) then moves every object
    there is by then to the collector's permanent generation (`gc.freeze`), and starts it
    again, less often (`_collect_less_often`). Before the first step of a 2M-row month the
    collector made one pass over everything (0.18 s, while the instance's storage was
    imported) and some 120 over the younger objects: 0.32-0.35 s of the main thread's CPU
    (load 22-23), on the run's critical path, over modules, contracts and definitions kept
    to the end of the process anyway; frozen, the steps' passes no longer look at them
    either (0.02 s of collection in the whole run, against 0.33 s). What a full pass would
    have found unreachable by then (some 6,700 of 245,000 objects, 1.1 MB) is kept to the
    end of the process, as frozen objects are."""
    gc.disable()
    started: list[bool] = []

    def steps_begin() -> None:
        if not started:
            started.append(True)
            gc.freeze()
            _collect_less_often()
            gc.enable()

    return steps_begin


def _leave(status: int) -> int:
    """End this process with `status` now: as Python's own exit ends it (no thread left
    working, every `atexit` handler run, the standard streams flushed), without its
    teardown of every module and object, which is one garbage-collector pass after another
    over some 290,000 objects: 0.9-1.0 s of CPU after a 37-month backfill's summary was
    printed (load 9-20), on the critical path, writing nothing. The run's files are closed
    by then: the Dagster instance's databases by `run_pending` (checkpointed as they were at
    teardown), DuckDB's and the lake's by their own `with` blocks. A thread still working
    (none in a run as it is) makes it return instead, to Python's exit, which waits for it;
    so does a profiler or tracer watching (`python -m cProfile`, `python -m trace`), which
    writes what it saw once the program returns."""
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return status
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # logging's, multiprocessing's, a coverage tool's...
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def missing_home(settings: Settings) -> str | None:
    """Why there is no home to read at `settings.home`, or None when there is one.

    Commands that only read a home (the breach register, the reports) say so instead of
    making an empty one and answering as if it held nothing ("No breaches match").
    """
    if settings.home.is_dir():
        return None
    return (
        f"error: there is no datashare home at {settings.home}. `datashare run` or "
        "`datashare demo` makes one there; to read another, give --home or set DATASHARE_HOME."
    )


def _use_home(settings: Settings) -> None:
    """Point this process (and anything it starts) at one home and one Dagster instance."""
    settings.ensure_folders()
    os.environ["DATASHARE_HOME"] = str(settings.home)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)


def cmd_run(
    settings: Settings,
    compute_marts: bool = True,
    next_steps: bool = True,
    checks_done: Callable[[], None] = lambda: None,
    steps_begin: Callable[[], None] = lambda: None,
) -> int:
    """Process everything pending in the drop zone, recorded in the home's Dagster instance
    (`compute_marts=False`: all but the oversight marts, left to a run that follows;
    `next_steps=False`: the report without what to open next, which the demo says at its
    end; `checks_done`: called once this process will validate nothing more, see
    `_checks_loading_early`; `steps_begin`: see `_no_collection_until_the_steps`)."""
    from pipelines.orchestration.pending_runs import (
        run_pending,  # imports Dagster: keep `--help` fast
    )

    _use_home(settings)
    report = run_pending(
        settings,
        progress=lambda line: print(line, flush=True),
        compute_marts=compute_marts,
        checks_done=checks_done,
        steps_begin=steps_begin,
    )
    checks_done()  # (called already, unless the run stopped before it could be)
    print(report.text(next_steps=next_steps))
    from pipelines.desk.alerts import alert_after_run  # the leads' emails (when configured)

    if alerts := alert_after_run(settings):
        print(alerts)
    return 0 if report.ok else 1


def _checks_loading_early() -> AbstractContextManager[None]:
    """The great-expectations helper (`pipelines.validation.ge_process`) started now, before
    `datashare run` imports the sub-commands' and its own modules and lists the drop zone
    (0.35 to 0.4 s of this process's CPU), rather than once the run knows it will validate
    here: the helper's import is the longest thing a one-month run waits for, and until it
    starts the machine's other core has nothing to do. A run that then has nothing to
    validate in this process (no new month, or contracts side by side in worker processes,
    which load their own) ends it as soon as its plan says so (`run_pending`'s
    `checks_done`), as it would end one it had started itself."""
    from pipelines.validation.dataset_expectations import warm_session
    from pipelines.validation.ge_process import loading_early

    return loading_early(warm_session)


def cmd_demo(settings: Settings, rows: int, months: int, only: set[str] | None) -> int:
    """Write the bundled demo deliveries into the drop zone, then run."""
    from pipelines.demo.estate import DemoFiles, write_demo_deliveries

    started = time.monotonic()
    _use_home(settings)
    # The demo wrote its files whole itself: nothing to wait for.
    settings = dataclasses.replace(settings, settle_seconds=0)

    def write(corrections: bool) -> DemoFiles:
        if not settings.dropzone_is_s3:
            return write_demo_deliveries(
                settings.dropzone, rows, months, only, corrections=corrections
            )
        from pipelines.intake.dropzone import MANIFEST_SUFFIX, open_dropzone

        # Written locally under the home, then uploaded where the bucket lacks them.
        local = settings.home / "demo-dropzone"
        written = write_demo_deliveries(local, rows, months, only, corrections=corrections)
        uploaded = open_dropzone(settings.dropzone).upload_missing(local)
        new = sum(not r.endswith(MANIFEST_SUFFIX) for r in uploaded)
        return dataclasses.replace(written, new=new, kept=written.new + written.kept - new)

    # The marts wait for the second pass when there will be one: computed once, on the
    # corrected month too, not once before it and again after (a folder drop zone, where
    # the count of what the second pass will send is exact).
    second = not settings.dropzone_is_s3 and bool(
        write_demo_deliveries(
            settings.dropzone, rows, months, only, corrections=True, write=False
        ).new
    )
    print(write(corrections=False).text(settings.dropzone))
    from pipelines.orchestration.pending_runs import sharing_dagster

    with sharing_dagster():  # both passes' runs in one instance, opened once
        status = cmd_run(settings, compute_marts=not second, next_steps=False)
        # A corrected file sent after its month was published is a restatement; sent with
        # the first file it would be a second file for the month. So the demo runs twice.
        if status == 0 and (corrected := write(corrections=True)).new:
            print(
                f"\nThen the force sends {corrected.new} corrected file(s) for a month "
                "already published; running again:"
            )
            status = cmd_run(settings, next_steps=False)
    status = _demo_report(settings, status)
    print(_demo_end(settings, status, time.monotonic() - started))
    return status


def _demo_report(settings: Settings, status: int) -> int:
    """The demo ends with the oversight pack and the breach review, so a new user sees the
    measures and the breaches too."""
    from pipelines.cli.report import run_report_command
    from pipelines.cli.review import run_review_command

    if status == 0:
        args = argparse.Namespace(output=None, refresh=False, if_changed=True)
        status = run_report_command(args, settings)
    if status == 0:  # and the leads' page of the breaches the demo made on purpose
        status = run_review_command(argparse.Namespace(output=None, if_changed=True), settings)
    return status


def _demo_end(settings: Settings, status: int, seconds: float) -> str:
    """The demo's last words: how long it took, then what to open, once, at the end (the
    pack and the review are written by then: open them, nothing to run first)."""
    from pipelines.orchestration.pending_runs import query_hint

    minutes, secs = divmod(round(seconds), 60)
    took = f"{minutes} min {secs} s" if minutes else f"{secs} s"
    if status != 0:
        return f"\nThe demo stopped after {took}, on the failure above."
    reports = settings.home / "reports"
    datashare = Path(sys.executable).with_name("datashare")
    return "\n".join(
        [
            f"\nDemo done in {took}. Next:",
            f"  Dagster UI:      {datashare} --home {settings.home} ui"
            "   (then open http://127.0.0.1:3000)",
            f"  Oversight pack:  {reports / 'oversight-pack.html'}",
            f"  Breach review:   {reports / 'breach-review.html'}"
            f"   (the letters to the force beside it, in {reports / 'notices'})",
            f"  Query:           {query_hint(settings)}",
        ]
    )


def cmd_ui(settings: Settings, host: str, port: int) -> int:
    """Start the Dagster UI (`dagster dev`) on this home."""
    from pipelines.orchestration.instance import open_instance

    _use_home(settings)
    open_instance(settings)  # made now, so a run started beside the UI finds it whole
    # `dagster dev` warns on every start that `dg dev` (another package, with a project
    # layout of its own) supersedes it; it is still Dagster's supported command for this.
    quiet = "ignore:Function `dev_command` is superseded"
    argv = [
        sys.executable, "-W", quiet, "-m", "dagster", "dev",
        "-w", str(REPO_ROOT / "workspace.yaml"), "-h", host, "-p", str(port),
    ]  # fmt: skip
    print(f"Dagster UI on http://{host}:{port} (home {settings.home}); Ctrl-C to stop.")
    sys.stdout.flush()
    os.chdir(REPO_ROOT)
    os.execv(argv[0], argv)
    return 0  # not reached


def cmd_doctor(settings: Settings) -> int:
    """Check this deployment before it goes live; exit 1 when anything would stop a run."""
    from pipelines.cli.doctor import diagnose, report

    text, status = report(diagnose(settings))
    print(text)
    return status


def cmd_warehouse_rebuild(settings: Settings) -> int:
    """Recreate warehouse.duckdb from the lake alone."""
    from pipelines.lake.store import open_lake
    from pipelines.warehouse.catalog import build_warehouse
    from schemas.contract import load_contracts

    path = build_warehouse(open_lake(settings.lake), load_contracts(), settings.warehouse)
    print(f"Warehouse rebuilt from {settings.lake}: {path}")
    return 0


def cmd_retention(settings: Settings, apply: bool, by: str) -> int:
    """List (or, with --apply, erase and record) what is past its retention period."""
    from pipelines.lake.retention import describe, enforce_retention
    from pipelines.lake.store import open_lake
    from pipelines.warehouse.catalog import build_warehouse
    from schemas.contract import load_contracts

    lake, contracts = open_lake(settings.lake), load_contracts()
    found = enforce_retention(lake, contracts, apply, by)
    print(describe(found, apply))
    if apply and found:
        build_warehouse(lake, contracts, settings.warehouse)
    return 0


def _quiet_when_the_reader_leaves(command: Callable[..., int]) -> Callable[..., int]:
    """`datashare breaches list | head`: when the reader closes the pipe, stop quietly.

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError; restoring
    SIGPIPE's default instead would also kill a run whose S3 connection drops. The rest of
    the output goes to /dev/null, so the interpreter's last flush cannot fail again.
    """

    @functools.wraps(command)
    def run(*args, **kwargs) -> int:
        try:
            status = command(*args, **kwargs)
            sys.stdout.flush()
            return status
        except BrokenPipeError:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass  # no real stdout (a test's capture): nothing more will be written
            return 141  # 128 + SIGPIPE, what a shell reports for a reader that left

    return run


def _command_of(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """The sub-command `argv` names and its `--home`, read before the parser is made (which
    imports every sub-command's module); no command when anything but `--home` comes first
    (a `--help`, an option the parser will refuse): that is left to the parser."""
    args, home = list(argv), None
    while args:
        first = args.pop(0)
        if first == "--home":
            home = args.pop(0) if args else None
        elif first.startswith("--home="):
            home = first.removeprefix("--home=")
        else:
            return (None if first.startswith("-") else first), home
    return None, home


# The register's delivery events (`pipelines.lake.register.EVERY_CONTRACT`), a file written
# each time a run takes files: named here, as importing the register brings pyarrow.
_TAKEN = "governance/deliveries/contract=*/*.parquet"


def _new_files_likely(home: str | None) -> bool:
    """Whether a run of `home` may have something to validate: its folder drop zone holds a
    file modified after the register last recorded files taken. Only a guess at what
    the run's plan will say, to start great-expectations loading early or not
    (`_checks_loading_early`): a run that then finds months to validate starts it itself,
    later, as without it. So an idle run (the usual one, every few minutes) spawns nothing;
    nor does one over S3, or one whose settings the parser will refuse. What the drop
    zone's listing never takes (dot-files and dot-folders, a manifest, which comes with its
    file) is not looked at. Modification times, not change times: a home copied or restored
    whole has every file's change time new, and each idle run would start the helper. (A
    file copied in with the force's old modification time, `cp -p`, is not guessed new:
    its run starts the helper when it plans, as before.)"""
    try:
        settings = load_settings(home)
        if settings.dropzone_is_s3 or settings.lake_is_s3:
            return False
        taken = max((p.stat().st_mtime_ns for p in Path(settings.lake).glob(_TAKEN)), default=0)
    except Exception:  # (a file gone meanwhile, settings the parser will refuse): no guess
        return False
    for folder, folders, files in os.walk(settings.dropzone):
        folders[:] = [f for f in folders if not f.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith(".manifest.json"):
                continue
            # The entry itself, never what a link names (it may be outside the drop zone).
            with suppress(OSError):  # (gone meanwhile)
                if os.lstat(os.path.join(folder, name)).st_mtime_ns > taken:
                    return True
    return False


@_quiet_when_the_reader_leaves
def main(argv: Sequence[str] | None = None, *, as_program: bool = False) -> int:
    """Run the `datashare` command `argv` (default: the command line) and return its exit
    status. `as_program` (only `program`, the script's entry point) lets `run` and `demo`
    end the process once they have said what they did (`_leave`), and `run` start loading
    great-expectations before anything else (`_checks_loading_early`) and collect no garbage
    until its steps begin (`_no_collection_until_the_steps`); a caller that calls
    `main` in its own process always gets the status back."""
    with ExitStack() as early:
        command, home = _command_of(sys.argv[1:] if argv is None else argv)
        if as_program and command == "run":
            steps_begin = _no_collection_until_the_steps()
            if _new_files_likely(home):
                early.enter_context(_checks_loading_early())
            return _main(argv, as_program, checks_done=early.close, steps_begin=steps_begin)
        return _main(argv, as_program, checks_done=early.close)


def _main(
    argv: Sequence[str] | None,
    as_program: bool,
    checks_done: Callable[[], None],
    steps_begin: Callable[[], None] = lambda: None,
) -> int:
    """`main`'s work: the parser, then the command."""
    from pipelines.cli.agreement import add_agreement_command, run_agreement_command
    from pipelines.cli.breaches import add_breaches_commands, run_breaches_command
    from pipelines.cli.contracts import add_contracts_commands, run_contracts_command
    from pipelines.cli.desk import add_desk_commands, run_desk_command, run_users_command
    from pipelines.cli.explain import add_explain_command, run_explain_command
    from pipelines.cli.lake import add_lake_command, run_lake_command
    from pipelines.cli.report import add_report_command, run_report_command
    from pipelines.cli.review import add_review_command, run_review_command
    from pipelines.cli.worker import add_worker_command, run_worker_command

    parser = argparse.ArgumentParser(
        prog="datashare",
        description="MPS to MOPAC data sharing: take deliveries, check them against their "
        "contracts, publish curated tables to DuckDB.",
    )
    parser.add_argument(
        "--home", help="installation folder (default: $DATASHARE_HOME or ./.datashare)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write demo deliveries into the drop zone, then run")
    demo.add_argument("--rows", type=int, default=5_000, help="rows per delivery")
    demo.add_argument("--months", type=int, default=24, help="months, to the last closed one")
    demo.add_argument("--contracts", help="comma-separated contract names (default: all)")
    run = sub.add_parser("run", help="process everything pending in the drop zone")
    run.add_argument(
        "--settle",
        type=float,
        metavar="SECONDS",
        help="take folder files unchanged for this long (default: $DATASHARE_SETTLE_SECONDS "
        "or 60); 0 takes everything there now",
    )
    ui = sub.add_parser("ui", help="start the Dagster UI on this home")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    warehouse = sub.add_parser("warehouse", help="the analysts' catalog")
    warehouse.add_argument("action", choices=["rebuild"], help="recreate it from the lake alone")
    retention = sub.add_parser("retention", help="erase what is past its retention period")
    retention.add_argument("--apply", action="store_true", help="erase (default: only list)")
    retention.add_argument("--by", default=getpass.getuser(), help="who (default: you)")
    sub.add_parser("doctor", help="check this deployment before it goes live, in words")
    add_breaches_commands(sub)
    add_contracts_commands(sub)
    add_report_command(sub)
    add_review_command(sub)
    add_desk_commands(sub)
    add_agreement_command(sub)
    add_explain_command(sub)
    add_worker_command(sub)
    add_lake_command(sub)
    args = parser.parse_args(argv)
    # Started as the program, not called by a caller in its own process (a test, a script),
    # whose collector and exit are its own.
    ending = as_program and args.command in ENDS_ITS_PROCESS
    if ending:
        _collect_less_often()
    if args.command == "contracts":
        return run_contracts_command(args)  # needs no home folder

    settings = load_settings(args.home)
    if args.command in READS_HOME and (problem := missing_home(settings)):
        print(problem, file=sys.stderr)
        return 2
    if args.command == "doctor":
        return cmd_doctor(settings)
    if args.command == "worker":
        return run_worker_command(args, settings)
    if args.command == "breaches":
        return run_breaches_command(args, settings)
    if args.command == "report":
        return run_report_command(args, settings)
    if args.command == "review":
        return run_review_command(args, settings)
    if args.command == "agreement":
        return run_agreement_command(args, settings)
    if args.command == "explain":
        return run_explain_command(args, settings)
    if args.command == "lake":
        return run_lake_command(args, settings)
    if args.command == "desk":
        return run_desk_command(args, settings)
    if args.command == "users":
        return run_users_command(args, settings)
    if args.command == "warehouse":
        return cmd_warehouse_rebuild(settings)
    if args.command == "retention":
        return cmd_retention(settings, args.apply, args.by)
    if args.command == "run":
        if args.settle is not None:
            settings = dataclasses.replace(settings, settle_seconds=max(args.settle, 0.0))
        status = cmd_run(settings, checks_done=checks_done, steps_begin=steps_begin)
        return _leave(status) if ending else status
    if args.command == "demo":
        only = set(args.contracts.split(",")) if args.contracts else None
        status = cmd_demo(settings, args.rows, args.months, only)
        return _leave(status) if ending else status
    return cmd_ui(settings, args.host, args.port)


def program() -> int:
    """The `datashare` program (its script, and `python -m pipelines.cli.main`): `main` with
    the command line, in a process of its own."""
    return main(as_program=True)


if __name__ == "__main__":
    sys.exit(program())
