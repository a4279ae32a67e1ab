"""What `datashare run` pays once per process, whatever it runs: its exit, and the garbage
collector's passes over what it imported (issue 21, backfill row)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pytest

from pipelines.cli.main import main
from pipelines.home.settings import Settings
from tests.conftest import drop

ROOT = Path(__file__).resolve().parents[1]

# `datashare run` as the program, as the `datashare` script starts it, with two things
# written down as it ends: how many passes Python's garbage collector made over every
# object it tracks, and the CPU the process (with the children it waited for) had used when
# its last `atexit` handler ran: this one, registered first so as to run last.
RUN_AS_THE_PROGRAM = """
import atexit, gc, json, resource, runpy, sys
out = sys.argv[1]
sys.argv = ["datashare", *sys.argv[2:]]
full = []
def counted(phase, info):
    if phase == "stop" and info["generation"] == 2:
        full.append(1)
gc.callbacks.append(counted)
def written_down():
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in used)
    json.dump({"full_passes": len(full), "cpu_at_last_handler": cpu}, open(out, "w"))
atexit.register(written_down)
runpy.run_module("pipelines.cli.main", run_name="__main__")
"""


@pytest.mark.slow
def test_a_run_ends_once_it_has_said_what_it_did(
    home: Settings, real_stop_and_search: Path, tmp_path: Path
):
    """After its summary, a run's process ends: no second of CPU tearing down the modules
    it imported, one garbage-collector pass after another (0.9-1.0 s after a 37-month
    backfill's summary, here about 0.8 s). Every file is closed first: Dagster's databases
    checkpointed, no WAL left beside them, the run's three Dagster runs recorded whole.
    And the collector makes no pass over every object (six did with Python's default
    thresholds, 0.02 to 0.14 s of CPU each; one with fewer passes, 0.18 s while the
    instance's storage was imported): none runs until the steps begin, and what was
    imported by then is frozen, out of the later passes' way."""
    drop(home, "stop_and_search", "2022-06", real_stop_and_search)
    noted, out, err = (tmp_path / name for name in ("noted.json", "stdout", "stderr"))
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_AS_THE_PROGRAM, str(noted), "--home", str(home.home),
             "run"],
            cwd=ROOT,
            env={**os.environ, "DATASHARE_SETTLE_SECONDS": "0"},
            stdout=stdout,
            stderr=stderr,
        )  # fmt: skip
        # Waited for here, not by Popen: wait4 gives the CPU it used to its very end.
        _, wait_status, used = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    said = out.read_text()
    assert process.returncode == 0, said[-2000:] + err.read_text()[-2000:]
    assert "Ran 1 contract-month(s) through Dagster." in said, said[-2000:]
    assert said.splitlines()[-1].startswith("  Query:")  # the summary whole, flushed

    written = json.loads(noted.read_text())
    after_last_handler = used.ru_utime + used.ru_stime - written["cpu_at_last_handler"]
    assert after_last_handler < 0.25, f"{after_last_handler:.2f} s of CPU after the summary"
    assert written["full_passes"] == 0  # six with Python's default thresholds, then one

    history = home.dagster_home / "history"
    assert sorted(p.name for p in history.rglob("*-wal")) == []
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3  # the contract's months, the late check, the marts
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}


def test_main_called_in_a_process_returns_and_leaves_its_collector_alone(home: Settings):
    """`main` called by a program of its own (a test, a script) returns the status and
    leaves the process, its exit and its garbage collector as they were: only `datashare`
    itself, started as a program, ends its own process."""
    before = gc.get_threshold()
    assert main(["--home", str(home.home), "run"]) == 0
    assert gc.get_threshold() == before
    assert gc.isenabled()


def test_a_watched_program_returns_for_its_profiler_or_tracer_to_write():
    """`python -m cProfile -m pipelines.cli.main ... run` (or `python -m trace`) writes what
    it saw once the program returns: a run watched so must not end its process itself."""
    from pipelines.cli.main import _leave

    for watch in (sys.setprofile, sys.settrace):
        watch(lambda *args: None)
        try:
            assert _leave(3) == 3
        finally:
            watch(None)


class _RecordedHelper:
    """Stands in for the great-expectations helper (`ge_process._Helper`): says when it
    was started and stopped, and loads nothing."""

    def __init__(self, said: list[str]) -> None:
        self.said = said

    def __call__(self, warm) -> _RecordedHelper:
        self.said.append("helper started")
        return self

    def stop(self) -> None:
        self.said.append("helper stopped")


# `datashare run` as the program, its great-expectations helper replaced by one that writes
# down, when it is started, whether the command line's sub-commands and the run's modules
# were imported yet, and whether it was stopped.
RUN_WITH_A_RECORDED_HELPER = """
import atexit, json, sys
from pipelines.validation import ge_process
seen = {}
class Recorded:
    def __init__(self, warm):
        modules = ("pipelines.cli.breaches", "pipelines.orchestration.pending_runs")
        seen["started"] = [m for m in modules if m in sys.modules]
    def stop(self):
        seen["stopped"] = True
ge_process._Helper = Recorded
atexit.register(lambda: json.dump(seen, open(sys.argv[1], "w")))
from pipelines.cli.main import main
sys.exit(main(sys.argv[2:], as_program=True))
"""


def test_the_program_starts_loading_great_expectations_before_anything_else(
    home: Settings, tmp_path: Path
):
    """`datashare run` as the program, with a file in the drop zone newer than anything the
    register has taken, starts the great-expectations helper before it imports the
    sub-commands' and the run's own modules (0.35 to 0.4 s of CPU, on the one-month run's
    critical path: the helper's load is the longest thing it waits for), and ends it once
    its plan says there is nothing to validate here (a file outside the layout). The next
    run, with nothing new, starts none; nor do the other commands, nor `main` called by
    another program."""
    from pipelines.cli.main import _TAKEN, _command_of
    from pipelines.lake.register import EVERY_CONTRACT

    (home.dropzone / "notes.txt").write_text("not a delivery")
    noted = tmp_path / "seen.json"
    for seen in ({"started": [], "stopped": True}, {}):
        done = subprocess.run(
            [sys.executable, "-c", RUN_WITH_A_RECORDED_HELPER, str(noted), "--home",
             str(home.home), "run", "--settle", "0"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert json.loads(noted.read_text()) == seen
    assert "Nothing new in the drop zone" in done.stdout

    assert _TAKEN == EVERY_CONTRACT  # the register's files, as the register names them
    assert _command_of(["--home", "x", "run", "--settle", "0"]) == ("run", "x")
    assert _command_of(["--home=x", "run"]) == ("run", "x")
    assert _command_of(["run"]) == ("run", None)
    assert _command_of(["--help"])[0] is None and _command_of([])[0] is None
    assert _command_of(["--home", "x", "breaches", "list"]) == ("breaches", "x")


def test_a_run_with_nothing_to_validate_ends_the_early_helper_once_it_has_planned(
    home: Settings, monkeypatch: pytest.MonkeyPatch
):
    """A helper started early (`_checks_loading_early`) is ended as soon as the run's plan
    says there is nothing to validate in this process, before anything else the run does
    (the late check), once; called by another program, `main` starts none."""
    from pipelines.cli.main import _checks_loading_early, cmd_run
    from pipelines.orchestration import pending_runs
    from pipelines.validation import ge_process

    said: list[str] = []
    monkeypatch.setattr(ge_process, "_Helper", _RecordedHelper(said))
    planned = pending_runs.plan_intake
    monkeypatch.setattr(
        pending_runs, "plan_intake", lambda *a: said.append("planned") or planned(*a)
    )
    late = pending_runs._late
    monkeypatch.setattr(pending_runs, "_late", lambda *a: said.append("late check") or late(*a))

    with ExitStack() as early:
        early.enter_context(_checks_loading_early())
        assert cmd_run(home, checks_done=early.close) == 0
    assert said[:3] == ["helper started", "planned", "helper stopped"]
    assert said.count("helper started") == said.count("helper stopped") == 1
    assert not ge_process.running()

    said.clear()
    assert main(["--home", str(home.home), "run"]) == 0
    assert "helper started" not in said and "planned" in said


@pytest.mark.usefixtures("ge_helper")
def test_a_run_that_validates_here_says_its_checks_are_done_once_its_months_are(
    home: Settings, real_stop_and_search: Path, monkeypatch: pytest.MonkeyPatch
):
    """A run validating its months in this process keeps the helper it was given until
    those months are done, and says so then (`checks_done`, which ends a helper the program
    started early), before the late check and the marts; once, however it ends."""
    from pipelines.orchestration import pending_runs

    said: list[str] = []
    ran = pending_runs._execute_contract
    monkeypatch.setattr(
        pending_runs, "_execute_contract", lambda *a: said.append("months run") or ran(*a)
    )
    late = pending_runs._late
    monkeypatch.setattr(pending_runs, "_late", lambda *a: said.append("late check") or late(*a))
    from pipelines.cli.main import _new_files_likely

    assert not _new_files_likely(str(home.home))
    drop(home, "stop_and_search", "2022-06", real_stop_and_search)
    assert _new_files_likely(str(home.home))

    report = pending_runs.run_pending(home, checks_done=lambda: said.append("checks done"))
    assert report.ok and len(report.months) == 1
    assert said[:3] == ["months run", "checks done", "late check"]
    assert said.count("checks done") == 1
    assert not _new_files_likely(str(home.home))  # taken: the next run's guess is "nothing"
    # What the drop zone's listing never takes makes no guess of "new" (an idle run would
    # start the helper every time, nothing ever recording a later take): a desktop's
    # dot-file, a partial upload, a manifest without its file.
    zone = Path(home.dropzone)
    (zone / ".DS_Store").write_bytes(b"\0")
    (zone / "stop_and_search" / ".hidden").mkdir()
    (zone / "stop_and_search" / ".hidden" / "x.csv").write_text("a\n")
    (zone / "stop_and_search" / "2022-07").mkdir()
    (zone / "stop_and_search" / "2022-07" / "jul.csv.manifest.json").write_text("{}")
    assert not _new_files_likely(str(home.home))
    # A home copied whole (a backup restored, a home moved) is not guessed new: every
    # file's change time is the copy's, its modification times are kept.
    moved = Path(home.home).with_name("moved")
    shutil.copytree(home.home, moved, symlinks=True)
    for file in (moved / "dropzone").rglob("*"):
        file.chmod(file.stat().st_mode)  # (its change time now, after the register's copy)
    assert not _new_files_likely(str(moved))
