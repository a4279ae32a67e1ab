"""What `datashare run` pays once per process, whatever it runs: its exit, and the garbage
collector's passes over what it imported (issue 21, backfill row)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
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
    And the collector makes at most one pass over every object while the run imports
    Dagster and the rest (six did: 0.02 to 0.14 s of CPU each, finding nothing)."""
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
    assert written["full_passes"] <= 1  # six, with Python's default thresholds

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
