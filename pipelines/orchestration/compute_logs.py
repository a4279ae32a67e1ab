"""Steps' standard output and error in the runs `datashare run` makes in its own process:
captured to the same files Dagster's local compute log manager writes (the UI's step logs
read them), and shown on the terminal as they are written, as Dagster shows them.

Dagster mirrors each captured stream to the terminal through a `tail -F` process, and
starts beside each tail a Python interpreter that kills it should this process die: four
processes a run, started and ended around every run (40-60 ms of CPU and 70 ms of wall
each at load 8, three runs a month), and the tail, ended with SIGTERM, can lose what
was written last. Here a thread of this process copies what the file gains to the
terminal instead, a last time once the capture ends: nothing to orphan, nothing lost.
So a caller that pipes `datashare run`'s output and stops reading it (the pipe full) holds
the run at a step's end, where Dagster's tail would have been killed and its lines lost.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

import dagster as dg
from dagster._core.execution.compute_logs import _fileno, redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import (
    IO_TYPE_EXTENSION,
    LocalComputeLogManager,
)
from dagster._utils import ensure_file, touch_file

# How often the terminal is brought up to date with what a step wrote (tail -F follows a
# file by inotify, or once a second without it).
FOLLOW_SECONDS = 0.1


class MirroringComputeLogManager(LocalComputeLogManager):
    """Dagster's local compute log manager (same folder, files and completion marks), whose
    capture shows the streams on the terminal from a thread, not from `tail` processes."""

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with _mirrored(sys.stdout, outpath), _mirrored(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        # The mark the UI reads as "the capture is over", as Dagster leaves it.
        touch_file(self.complete_artifact_path(log_key))


def mirror_in_process(instance: dg.DagsterInstance) -> None:
    """Give `instance` (one this process runs jobs in) the mirroring manager, when its
    compute logs are Dagster's local ones; any other (configured by hand) is left as it is."""
    manager = instance.compute_log_manager
    if type(manager) is not LocalComputeLogManager:
        return
    mirroring = MirroringComputeLogManager(
        manager._base_dir, manager.polling_timeout, inst_data=manager.inst_data
    )
    instance._compute_log_manager = mirroring
    mirroring.register_instance(instance)


@contextmanager
def _mirrored(stream: IO, path: str) -> Iterator[None]:
    """`stream`'s file descriptor redirected to the file at `path` (appended to) and the
    file's bytes, from its start, copied to where the descriptor pointed before."""
    ensure_file(path)
    fd = _fileno(stream)
    if fd is None:  # not a descriptor (a caller's own stream): not redirected, as in Dagster
        with redirect_to_file(stream, path):
            yield
        return
    stream.flush()
    follower = _Follower(path, os.dup(fd))
    try:
        with redirect_to_file(stream, path):
            follower.start()
            yield
    finally:
        follower.finish()


class _Follower(threading.Thread):
    """Copies what a file gains to a descriptor until told to finish, then the rest."""

    def __init__(self, path: str, out: int) -> None:
        super().__init__(name=f"datashare-mirror-{os.path.basename(path)}", daemon=True)
        self.source = os.open(path, os.O_RDONLY)
        self.out = out
        self.done = threading.Event()
        self.broken = False  # the terminal went away (a reader that left): stop writing

    def run(self) -> None:
        while not self.done.wait(FOLLOW_SECONDS):
            self._copy()

    def finish(self) -> None:
        self.done.set()
        if self.is_alive():
            self.join()
        try:
            self._copy()
        finally:
            os.close(self.source)
            os.close(self.out)

    def _copy(self) -> None:
        while chunk := os.read(self.source, 1 << 16):
            view = memoryview(chunk)
            while view and not self.broken:
                try:
                    view = view[os.write(self.out, view) :]
                except OSError:
                    self.broken = True
