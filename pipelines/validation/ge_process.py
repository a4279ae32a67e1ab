"""great-expectations in a second process, loaded while this one does intake and row checks.

Importing great-expectations costs about 5 s here, more than everything else a one-month
validation does (its validations then take 0.06 to 0.1 s each). A run that will validate
deliveries starts this helper first (`loading_early`): a spawned process that imports
great-expectations and makes its context at once, on the machine's other core, while this
process imports Dagster, takes the files in and checks their rows. Each delivery's dataset
checks are then sent to it (`dataset_expectations`): the same expectations, verdicts and
Data Docs pages as in process; only where the import is paid changes. A task may be sent
ahead (`submit`) and its answer taken later, so that a backfill checks the next month's rows
while great-expectations judges the last month's profile on the other core.

If the helper dies or cannot start, `call` raises `HelperFailed`, and the caller runs the
checks in its own process instead, saying so in the log: never skipped in silence.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import sys
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
    # Importing great-expectations allocates far more than it frees: even at the program's
    # thresholds the collector made ~50 passes while loading (0.2 s of CPU, finding next to
    # nothing), on what is often a backfill's slowest path. So none while loading; then
    # what was loaded is set aside for good (frozen) and the tasks collect as the
    # `datashare` program does (`pipelines.cli.main`).
    gc.disable()
    try:
        warm()
    except BaseException:
        conn.send(("dead", traceback.format_exc()))
        return
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    gc.enable()
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            _leave()
        function, args = task
        try:
            conn.send(("ok", function(*args)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


def _leave() -> None:
    """End the helper at once when told to stop: every task has been answered and each
    closed its own files, so Python's teardown of great-expectations' modules (1.4 to 1.9 s
    here) would only make the run wait for it, or kill it. Its `atexit` handlers still run
    (logging's, and the finalizers that remove what a task left to them, such as a
    temporary folder: nothing of a delivery may stay behind in one)."""
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Helper:
    """One spawned process and the pipe to it. Tasks are answered in the order they were
    sent (one at a time, as a GX context serves one thread at a time anyway); a lock keeps
    the pipe to one thread at a time."""

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
        self.sent = 0  # tasks sent so far; the nth task's answer is the nth one received
        self.received = 0
        self.answers: dict[int, tuple[str, Any]] = {}  # received, not yet asked for

    def _broke(self, exc: BaseException) -> HelperFailed:
        code = self.process.exitcode
        self.broken = f"the great-expectations process ended (exit code {code}): {exc!r}"
        return HelperFailed(self.broken)

    def submit(self, function: Callable[..., Any], *args: Any) -> Pending:
        """Send a task without waiting for its answer."""
        with self.lock:
            if self.broken:
                raise HelperFailed(self.broken)
            try:
                self.conn.send((function, args))
            except OSError as exc:
                raise self._broke(exc) from exc
            self.sent += 1
            return Pending(self, self.sent)

    def _receive(self) -> None:
        """Take the next answer off the pipe, waiting for it (the caller holds the lock)."""
        if self.broken:
            raise HelperFailed(self.broken)
        try:
            reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise self._broke(exc) from exc
        if reply[0] == "dead":
            self.broken = f"the great-expectations process could not start:\n{reply[1]}"
            raise HelperFailed(self.broken)
        self.received += 1
        self.answers[self.received] = reply

    def answer(self, number: int) -> Any:
        """The answer to the `number`th task, waited for (earlier ones are kept on the way)."""
        with self.lock:
            while number not in self.answers:
                self._receive()
            status, value = self.answers.pop(number)
        if status == "error":
            raise TaskFailed(f"in the great-expectations process:\n{value}")
        return value

    def ready(self, number: int) -> bool:
        """Whether the `number`th task's answer has come, or never will (the helper is
        gone): what `answer` would give without waiting. Never waits itself."""
        with self.lock:
            try:
                while number not in self.answers and self.conn.poll():
                    self._receive()
            except (HelperFailed, OSError):
                return True  # `answer` raises at once
            return number in self.answers or self.broken is not None

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return self.submit(function, *args).result()

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
            # SIGKILL, not SIGTERM: a process started from one that ignores SIGTERM ignores it
            # too (Dagster sets SIGTERM to SIGINT's handler, "ignore" in some hosts), and the
            # run then waited for the whole import. It holds nothing to tidy: every task is done.
            self.process.kill()
            self.process.join()
        self.conn.close()


class Pending:
    """A task sent to the helper, its answer still to be taken (`result`)."""

    def __init__(self, helper: _Helper, number: int) -> None:
        self._helper = helper
        self._number = number

    def result(self) -> Any:
        """The task's result, waited for. Raises `HelperFailed` if the helper is gone,
        `TaskFailed` if the task raised there."""
        return self._helper.answer(self._number)

    def ready(self) -> bool:
        """Whether `result()` would return (or raise) without waiting."""
        return self._helper.ready(self._number)


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


def submit(function: Callable[..., Any], *args: Any) -> Pending:
    """Send `function(*args)` to the helper now and take its result later (`result()`),
    while this process does other work. Raises `HelperFailed` if the helper is gone."""
    if _HELPER is None:
        raise HelperFailed("no great-expectations process was started")
    return _HELPER.submit(function, *args)


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
