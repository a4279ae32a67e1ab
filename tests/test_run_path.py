"""How `datashare run` makes its Dagster runs, and what happens if Dagster moves the internals
it files them with (pipelines/orchestration/instance.py: `execute_here`).

A run is filed under the code location (the Overview timeline and the job page list it) by
Dagster internals; if a Dagster release moves them, the run must still be made, whole, with
the public `execute_in_process`, and the engineer told what the UI will leave out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pytest

import pipelines.orchestration.instance as instance_module
from pipelines.cli.main import main
from pipelines.home.settings import Settings
from pipelines.orchestration.job_names import delivery_job_name
from tests.conftest import drop

# The runs use the worker's great-expectations helper (tests/conftest.py), not one each.
pytestmark = pytest.mark.usefixtures("ge_helper")


def _runs(home: Settings) -> list[dg.DagsterRun]:
    """The runs of the stop and search delivery job (the marts have a job of their own)."""
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name=delivery_job_name("stop_and_search")))
        return list(runs)


def _published_rows(home: Settings) -> int:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute("select count(*) from curated.stop_and_search").fetchone()[0]


def _month_materializations(home: Settings) -> set[str]:
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        events = instance.fetch_materializations(
            dg.AssetKey(["curated", "stop_and_search"]), limit=100
        ).records
        return {e.event_log_entry.dagster_event.partition for e in events}


def test_a_run_is_filed_under_the_code_location(
    home: Settings, real_stop_and_search: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    programs = []
    popen = subprocess.Popen

    class Recorded(popen):
        def __init__(self, args, *rest, **kwargs):
            programs.append(args[0] if isinstance(args, list | tuple) else args)
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    drop(home, "stop_and_search", "2022-06", real_stop_and_search)
    assert main(["run"]) == 0
    assert "files runs differently" not in capsys.readouterr().err
    # The runs' output is shown by a thread (pipelines/orchestration/compute_logs.py), not
    # by Dagster's `tail` processes, two a run.
    assert "tail" not in programs
    (run,) = _runs(home)
    assert run.remote_job_origin is not None
    assert run.remote_job_origin.location_name == "datashare"
    assert instance_module.code_location_filing() is None


def test_internals_moved_the_run_is_still_made_whole_and_the_engineer_is_told(
    home: Settings,
    real_stop_and_search: Path,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def moved(job: str) -> None:
        raise ImportError("cannot import name 'RemoteJobOrigin' from 'dagster._core.remote_origin'")

    monkeypatch.setattr(instance_module, "code_location_origin", moved)
    monkeypatch.setattr(instance_module, "_warned", [])
    drop(home, "stop_and_search", "2022-06", real_stop_and_search)
    july = tmp_path / "2022-07-metropolitan-stop-and-search.csv"
    july.write_text(real_stop_and_search.read_text().replace("2022-06-", "2022-07-"))
    drop(home, "stop_and_search", "2022-07", july)

    assert main(["run"]) == 0
    out = capsys.readouterr()
    assert out.err.count("files runs differently") == 1  # said once, not per run
    assert "RemoteJobOrigin" in out.err
    assert "2 published" in out.out

    # One run took both months, with no origin (the public route), and nothing ran twice.
    (run,) = _runs(home)
    assert run.remote_job_origin is None
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert _month_materializations(home) == {"2022-06", "2022-07"}
    assert _published_rows(home) > 0

    # `datashare doctor` says the same, as a warning that stops nothing.
    assert main(["doctor"]) == 0
    report = capsys.readouterr().out
    assert "not filed under the code location" in report
