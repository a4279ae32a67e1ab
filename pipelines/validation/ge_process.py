"""great-expectations in a second process, loaded while this one does intake and row checks.

Importing great-expectations costs about 5 s here, more than everything else a one-month
validation does (its validations then take 0.06 to 0.1 s each). A run that will validate
deliveries starts this helper first (`loading_early`): a spawned process that imports
great-expectations and makes its context at once, on the machine's other core, while this
process imports Dagster, takes the files in and checks their rows. Each delivery's dataset
checks are then sent to it (`dataset_expectations`): the same expectations, verdicts and
Data Docs pages as in process; only where the import is paid changes.

If the helper dies or cannot start, `call` raises `HelperFailed`, and the caller runs the
checks in its own process instead, saying so in the log: never skipped in silence.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any


class HelperFailed(RuntimeError):
    """The helper process died, or could not load great-expectations."""


class TaskFailed(RuntimeError):
    """A task raised in the helper; the message carries its traceback there."""


def _serve(conn: Connection, warm: Callable[[], None]) -> None:
    """The helper's loop: load, then run each (function, args) sent, until told to stop."""
    try:
        warm()
    except BaseException:
        conn.send(("dead", traceback.format_exc()))
        return
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        function, args = task
        try:
            conn.send(("ok", function(*args)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class _Helper:
    """One spawned process and the pipe to it; one task at a time (a lock), as a GX context
    serves one thread at a time anyway."""

    def __init__(self, warm: Callable[[], None]) -> None:
        # Spawned, not forked: a fork of a process whose polars or Arrow pools run can deadlock.
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, warm), name="great-expectations", daemon=True
        )
        self.process.start()
        child.close()
        self.lock = threading.Lock()
        self.broken: str | None = None

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        with self.lock:
            if self.broken:
                raise HelperFailed(self.broken)
            try:
                self.conn.send((function, args))
                status, value = self.conn.recv()
            except (EOFError, OSError) as exc:
                code = self.process.exitcode
                self.broken = f"the great-expectations process ended (exit code {code}): {exc!r}"
                raise HelperFailed(self.broken) from exc
            if status == "dead":
                self.broken = f"the great-expectations process could not start:\n{value}"
                raise HelperFailed(self.broken)
            if status == "error":
                raise TaskFailed(f"in the great-expectations process:\n{value}")
            return value

    def stop(self) -> None:
        """End the helper: asked politely when idle, ended outright if still importing (a run
        whose months needed no dataset checks must not wait for an import it never used)."""
        if self.lock.acquire(timeout=0):
            try:
                self.conn.send(None)
            except OSError:
                pass
            finally:
                self.lock.release()
        # Every task has had its answer by now, so nothing the helper still does matters to
        # the run: and its own way out (tearing down great-expectations' modules) takes 1.4
        # to 1.9 s here, so waiting half a second for it only delayed every run by that
        # much before ending it anyway.
        self.process.join(timeout=0.05)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()


_HELPER: _Helper | None = None


def running() -> bool:
    """Whether a helper was started for this run (and not stopped)."""
    return _HELPER is not None


def call(function: Callable[..., Any], *args: Any) -> Any:
    """Run `function(*args)` in the helper (a module-level function; arguments and result
    are pickled). Raises `HelperFailed` if the helper is gone, `TaskFailed` if it raised."""
    if _HELPER is None:
        raise HelperFailed("no great-expectations process was started")
    return _HELPER.call(function, *args)


@contextmanager
def loading_early(warm: Callable[[], None]) -> Iterator[None]:
    """Start a helper that calls `warm` (a module-level function loading great-expectations)
    at once, for the block; stopped when it ends. Nested use keeps the outer helper."""
    global _HELPER
    if _HELPER is not None:
        yield
        return
    _HELPER = _Helper(warm)
    try:
        yield
    finally:
        helper, _HELPER = _HELPER, None
        helper.stop()
