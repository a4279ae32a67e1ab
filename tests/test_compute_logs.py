"""What a step writes to its standard output and error, in a run `datashare run` makes in
its own process (pipelines/orchestration/compute_logs.py): kept for the UI's step logs in
Dagster's own files, and shown on the terminal, with no `tail` process started for it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.compute_log_manager import ComputeIOType
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

from pipelines.orchestration import compute_logs
from pipelines.orchestration.compute_logs import MirroringComputeLogManager, mirror_in_process


@dg.op
def talkative() -> None:
    print("printed by the step")
    print("written to stderr by the step", file=sys.stderr)
    os.write(1, b"written to descriptor 1\n")
    subprocess.run(["echo", "said by a program the step ran"], check=True)
    print("the step's last words", end="", flush=True)  # no newline, as the last bytes


@dg.job
def talk() -> None:
    talkative()


def _tails_started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The `tail` commands started from now on (Dagster's own mirroring starts two a run)."""
    started: list[list[str]] = []
    popen = subprocess.Popen

    class Recorded(popen):
        def __init__(self, args, *rest, **kwargs):
            if isinstance(args, list | tuple) and args and args[0] == "tail":
                started.append(list(args))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    return started


# As it is, and with the terminal brought up to date only once the capture ends: what was
# written after the thread last looked is shown too.
@pytest.mark.parametrize("follow_seconds", [compute_logs.FOLLOW_SECONDS, 3600])
def test_a_steps_output_is_kept_for_the_ui_and_shown_on_the_terminal(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    follow_seconds: float,
) -> None:
    monkeypatch.setattr(compute_logs, "FOLLOW_SECONDS", follow_seconds)
    tails = _tails_started(monkeypatch)
    # The standard streams on descriptors 1 and 2, as in `datashare run` on a terminal (the
    # capture's own stand-ins are on descriptors of their own).
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), line_buffering=True)
        monkeypatch.setattr(sys, name, stream)
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        mirror_in_process(instance)
        assert type(instance.compute_log_manager) is MirroringComputeLogManager
        result = talk.execute_in_process(instance=instance)
        assert result.success
        run_id = result.run_id

        # The UI reads the step's logs with Dagster's own manager, from the same folder.
        base = instance.compute_log_manager._base_dir
        reader = LocalComputeLogManager(base)
        (key,) = reader.get_log_keys_for_log_key_prefix(
            [run_id, "compute_logs"], ComputeIOType.STDOUT
        )
        kept = reader.get_log_data(key)
        assert reader.is_capture_complete(key)

    out = kept.stdout.decode()
    for said in ("printed by the step", "written to descriptor 1", "said by a program"):
        assert said in out
    assert out.endswith("the step's last words")
    assert "written to stderr by the step" in kept.stderr.decode()

    # And the terminal saw all of it, to the last bytes, as it was written.
    shown = capfd.readouterr()
    assert shown.out.count("printed by the step") == 1
    assert "said by a program the step ran" in shown.out
    assert shown.out.endswith("the step's last words")
    assert "written to stderr by the step" in shown.err
    assert tails == []


def test_a_compute_log_manager_configured_by_hand_is_left_as_it_is(tmp_path: Path) -> None:
    class Own(LocalComputeLogManager):
        pass

    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        own = Own(str(tmp_path / "logs"))
        instance._compute_log_manager = own
        mirror_in_process(instance)
        assert instance.compute_log_manager is own
