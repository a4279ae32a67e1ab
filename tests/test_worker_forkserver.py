"""The server `datashare run`'s side-by-side workers are forked from
(`pipelines.orchestration.worker_forkserver`): what its imports leave running, which each
fork copies half-held, and what a worker takes from the run rather than from it."""

from __future__ import annotations

import os
import sys
import types
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipelines.orchestration.worker_forkserver import (
    PRELOAD,
    environment,
    take_environment,
    worker_context,
)

# Idle threads that a fork leaves behind safely: jemalloc's background purgers (in polars'
# and Arrow's allocators; jemalloc takes its locks around a fork and starts them again in
# the child) and polars' spill-file cleaner, blocked on its channel. No compute pool.
IDLE = {"jemalloc_bg_thd", "polars-ooc-clea"}


def _server_threads() -> dict:
    """In a worker: the threads of the process it was forked from (the server), by name,
    and how many OpenBLAS libraries the server has loaded."""
    server = os.getppid()
    tasks = Path(f"/proc/{server}/task")
    names = [(t / "comm").read_text().strip() for t in tasks.iterdir() if int(t.name) != server]
    maps = Path(f"/proc/{server}/maps").read_text().splitlines()
    blas = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()}
    main = Path(f"/proc/{server}/comm").read_text().strip()
    return {"names": names, "main": main, "blas": len(blas)}


def test_the_server_runs_no_pool_a_fork_would_copy_half_held():
    # Asked of the server itself, by a process forked from it (started by an earlier run in
    # this process, or now: its preload list is set here if it is not running).
    with ProcessPoolExecutor(1, worker_context()) as pool:
        seen = pool.submit(_server_threads).result()
    # OpenBLAS's idle thread servers (numpy's, scipy's) carry the process's name: one
    # fewer than the cores each, which OpenBLAS itself shuts down around a fork. Any other
    # thread so named (an Arrow or polars pool of the cores' size) is one too many.
    blas_threads = seen["blas"] * max(1, (os.cpu_count() or 1) - 1)
    unnamed = [n for n in seen["names"] if n == seen["main"]]
    assert len(unnamed) <= blas_threads, seen
    assert {n for n in seen["names"] if n != seen["main"]} <= IDLE, seen


def _environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def test_a_worker_takes_the_runs_environment_not_the_servers(monkeypatch):
    # The server keeps the environment it started with; a worker is handed the run's.
    monkeypatch.setenv("DATASHARE_TEST_FORKSERVER", "before")
    with ProcessPoolExecutor(1, worker_context()) as pool:
        pool.submit(os.getpid).result()  # the server is running now
    monkeypatch.setenv("DATASHARE_TEST_FORKSERVER", "after")
    context = worker_context()
    with ProcessPoolExecutor(1, context, take_environment, (environment(),)) as pool:
        assert pool.submit(_environment_variable, "DATASHARE_TEST_FORKSERVER").result() == "after"


def test_a_launched_runs_steps_find_what_dagster_preloads_for_them():
    # One forkserver a process, started with the list of whoever asks first: this one
    # starts with what Dagster's executor preloads for LOCAL_STEPS (its own module, then
    # the definitions), so a step forked from it finds that imported.
    from pipelines.orchestration.definitions import LOCAL_STEPS_PRELOAD

    assert PRELOAD[: 1 + len(LOCAL_STEPS_PRELOAD)] == [
        "dagster._core.executor.multiprocess",
        *LOCAL_STEPS_PRELOAD,
    ]


def test_run_from_another_checkout_the_workers_are_spawned(tmp_path, monkeypatch):
    # Python 3.11's forkserver imports from the current folder first: a folder holding
    # another copy of the project would give the workers that copy's code.
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert worker_context().get_start_method() == "spawn"
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert worker_context().get_start_method() == "forkserver"


def test_run_with_the_project_put_on_its_path_another_way_the_workers_are_spawned(
    tmp_path, monkeypatch
):
    # This process's `pipelines` from a copy on its own path (a script's `sys.path`, pytest's
    # root) while it runs from a folder without one: the server, a fresh interpreter, would
    # import the copy the venv's editable install maps instead.
    copy = tmp_path / "copy" / "pipelines"
    copy.mkdir(parents=True)
    (copy / "__init__.py").write_text("")
    elsewhere = types.ModuleType("pipelines")
    elsewhere.__path__ = [str(copy)]
    monkeypatch.chdir(tmp_path)
    assert worker_context().get_start_method() == "forkserver"  # this project: the venv's
    monkeypatch.setitem(sys.modules, "pipelines", elsewhere)
    assert worker_context().get_start_method() == "spawn"
