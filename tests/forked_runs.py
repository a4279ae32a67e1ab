"""Processes of their own for the fault and lake-safety tests, forked from one process that
imported what a run imports (Dagster, the CLI, the definitions) instead of each a new
interpreter importing them again (about two seconds of CPU each).

Each is a program as its script runs it: `datashare` (`pipelines.cli.main:program`) or
`python -m tests.sensor_launch` (`tests.sensor_launch:main`), with the environment and
folder it is given, in a session of its own, its output in a file. It starts its own
great-expectations helper, as a user's `datashare run` does. The forker itself starts no
thread pool before it forks (Dagster's `forkserver` preloads the same way for a launched
run's steps), so nothing is copied half-held.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_FORKER = """
import importlib, json, os, signal, sys, traceback
# SIGINT and SIGTERM as a user's shell gives them, not as this test process may have them
# (after Dagster ran here, under pytest-xdist, SIGTERM is ignored, and so it would be in
# the run's `tail -F` of each step's log: Dagster would wait 30 s for it to end).
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
import pipelines.cli.main, pipelines.orchestration.definitions
import pipelines.orchestration.pending_runs
import tests.sensor_launch
print("ready", flush=True)
for line in sys.stdin:
    asked = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        quiet = os.open(os.devnull, os.O_RDONLY)
        out = os.open(asked["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, to in ((0, quiet), (1, out), (2, out)):
            os.dup2(to, fd)
        os.chdir(asked["cwd"])
        os.environ.clear()
        os.environ.update(asked["env"])
        module, name = asked["program"].split(":")
        sys.argv = [module, *asked["argv"]]
        try:
            code = getattr(importlib.import_module(module), name)()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0)
    print("pid", pid, flush=True)
    print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
os._exit(0)  # asked to end: no teardown of what it imported (seconds, for nothing)
"""


class Forker:
    """The process that forks the others, one at a time (each is reaped before the next)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _FORKER], cwd=REPO_ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.process.stdout.readline() == b"ready\n", "the forker did not start"
        self.last: Forked | None = None

    def start(self, program: str, argv: list[str], env: dict[str, str], out: Path) -> Forked:
        """`program` (`module:function`) with `argv`, its output written to `out`. One left
        running by a test that failed is killed and reaped first: the forker serves the
        next only once the last is reaped."""
        self._end_last()
        asked = {"program": program, "argv": argv, "env": env, "cwd": str(REPO_ROOT)}
        self.process.stdin.write(json.dumps({**asked, "out": str(out)}).encode() + b"\n")
        self.process.stdin.flush()
        self.last = Forked(self.process, out)
        return self.last

    def _end_last(self) -> None:
        """The last process, if a test that failed left it running, killed and reaped (the
        forker reads its next order only once it has reaped the last)."""
        if self.last is not None and self.last.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.last.pid, signal.SIGKILL)
            self.last.wait(timeout=60)

    def close(self) -> None:
        self._end_last()  # else the forker waits on it, and both outlive the module
        self.process.stdin.close()  # its loop ends, and it with it
        self.process.wait(timeout=60)


class Forked:
    """A process the forker made, as much of `subprocess.Popen` as the tests use: its pid
    (its process group's too), its exit status once the forker has reaped it, its output."""

    def __init__(self, forker: subprocess.Popen, out: Path) -> None:
        self._out = forker.stdout.fileno()
        self._said = b""
        self.output = out
        self.pid = self._said_as(b"pid", self._line(None))
        assert self.pid > 1, "not a process of its own"
        self.returncode: int | None = None

    @staticmethod
    def _said_as(kind: bytes, line: bytes) -> int:
        """The number in the forker's line `kind N` (each line says what it is)."""
        said, number = line.split()
        assert said == kind, f"the forker said {line!r} where {kind!r} was due"
        return int(number)

    def _line(self, timeout: float | None) -> bytes | None:
        while b"\n" not in self._said:
            if not select.select([self._out], [], [], timeout)[0]:
                return None
            more = os.read(self._out, 64)
            assert more, "the forker ended"
            self._said += more
        line, self._said = self._said.split(b"\n", 1)
        return line

    def poll(self) -> int | None:
        if self.returncode is None and (line := self._line(0)) is not None:
            self.returncode = self._said_as(b"exit", line)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            line = self._line(timeout)
            assert line is not None, f"the process did not end in {timeout} s"
            self.returncode = self._said_as(b"exit", line)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        """Its output once it has ended (as `Popen.communicate` gives it)."""
        self.wait(timeout)
        return self.output.read_text(errors="replace"), None
