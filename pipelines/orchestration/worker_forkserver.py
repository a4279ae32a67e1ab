"""Where `datashare run`'s side-by-side worker processes come from: forked from a server
process that imported, once, what a worker imports (Dagster, the definitions, the validation
stack, great-expectations), instead of each worker spawned to import it all again (about five
seconds of CPU a worker, most of a short contract's run).

The server is multiprocessing's forkserver: a fresh interpreter (started by fork and exec,
so nothing of the parent's threads comes with it) that imports the modules below, starts no
thread pool, and forks each worker from there. A fork is unsafe only if a thread of the
forking process holds a lock or a pool the child would use. What these imports start, and
the server keeps (see tests/test_worker_forkserver.py, which checks it stays so): idle
allocator threads (jemalloc's background threads in polars and Arrow, which re-make them
after a fork), OpenBLAS's idle thread servers (numpy, scipy: shut down around a fork by
OpenBLAS itself), and polars' idle spill-file cleaner; no polars (rayon), Arrow or DuckDB
worker pool, each of which starts on first use, in the worker.

A process has one forkserver, and Dagster's multiprocess executor uses it too (a launched
run's steps, `pipelines.orchestration.definitions.LOCAL_STEPS`). Its preload list is read
when the server starts (CPython 3.11, `multiprocessing.forkserver.ensure_running`): whoever
starts it first decides what it imported, and a later `set_forkserver_preload` does nothing
until it is restarted. So the list here starts with Dagster's own (its executor module, then
the definitions it is configured to preload), and a step forked from this server finds what
it would have found in Dagster's; a worker forked from Dagster's server imports the rest
itself, as a spawned one did.

The server's environment is the parent's when it started, not when a worker is asked for:
a worker is handed the parent's environment of the moment (`environment`) and takes it
first, as a spawned worker inherited it. What a preloaded module reads when imported stays
as the server read it (the mart runner's list of marts, from `DATASHARE_MARTS`): a worker
runs delivery jobs only, and `datashare run` sets its environment before the server starts.

A worker ends as multiprocessing ends a forked process, with `os._exit` after its
finalizers, not through Python's exit: what it must do at its end is one of those
finalizers (`pending_runs._start_worker`), not an `atexit` handler.
"""

from __future__ import annotations

import importlib.machinery
import multiprocessing
import os
import site
import sys
from multiprocessing.context import BaseContext
from pathlib import Path

# In the order imported: Dagster's executor module and the module its steps preload first
# (`dagster._core.executor.multiprocess.MultiprocessExecutor.execute`), then what a worker
# imports for its runs (its instance's SQLite storage: alembic, sqlalchemy's dialects, half a
# second). great-expectations is most of it (about 4 s of the 5).
PRELOAD = [
    "dagster._core.executor.multiprocess",
    "pipelines.orchestration.definitions",
    "pipelines.orchestration.pending_runs",
    "pipelines.orchestration.instance",
    "dagster._core.storage.sqlite_storage",
    "pipelines.validation.dataset_expectations",
    "great_expectations",
]


# The project's packages, which the server must import from where this process did.
PACKAGES = ("pipelines", "assets", "schemas")


def worker_context() -> BaseContext:
    """The multiprocessing context to start `datashare run`'s workers with: the forkserver,
    with what a worker imports preloaded (if the server is not already running); spawned
    instead when the server would import another copy of the project (`_same_project`)."""
    if not _same_project():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _same_project() -> bool:
    """Whether the server's imports find this process's project. Python 3.11's forkserver
    imports its preload with a `sys.path` of its own, a fresh interpreter's (the current
    folder first, then `PYTHONPATH` and the venv, whose editable install maps the project's
    packages): it is given this process's path and does not use it, while a spawned worker
    takes this process's path before it imports. Run from a folder holding another checkout,
    or with the project put on this process's path another way (a script's `sys.path`,
    pytest's root), the server would load other code than this process runs."""
    for name in PACKAGES:
        module = sys.modules.get(name)
        if module is None:
            continue
        found = _fresh_interpreter_finds(name)
        if found is None or found != Path(module.__path__[0]).resolve():
            return False
    return True


def _fresh_interpreter_finds(name: str) -> Path | None:
    """Where `python -c` started here, in this environment, would find package `name`."""
    entries = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    spec = importlib.machinery.PathFinder.find_spec(name, [*entries, *site.getsitepackages()])
    if spec is None:
        # The editable install's finder (a meta path finder after the path's), or another.
        for finder in sys.meta_path:
            if finder is importlib.machinery.PathFinder or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(name, None)
            except Exception:  # a finder of another package that cannot answer this
                continue
            if spec is not None:
                break
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def environment() -> dict[str, str]:
    """This process's environment now, for a worker to take (`take_environment`)."""
    return dict(os.environ)


def take_environment(environ: dict[str, str]) -> None:
    """Make this (forked) process's environment `environ`, as a spawned one would have had
    it: the server's own is the parent's of when the server started."""
    os.environ.clear()
    os.environ.update(environ)
