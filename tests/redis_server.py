"""A real Redis server for tests: Debian's `redis-server` package, throwaway.

`running_redis` starts one on 127.0.0.1 and a free port, with no persistence and its files in
a fresh temporary folder, and stops it afterwards. `make test` installs the package when it
is missing and it runs as root, as on CI; elsewhere the tests that need it skip with the
reason (and fail on CI, where it must be there).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 30.0


def redis_binary() -> str | None:
    return os.environ.get("DATASHARE_REDIS_SERVER") or shutil.which("redis-server")


def require_redis() -> None:
    """Skip the test (fail it on CI) when Redis cannot be run here."""
    if redis_binary():
        return
    reason = "Redis is not installed: `apt-get install redis-server` (as root, `make test` does it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Redis tests: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    folder: Path

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def monitor(self, log: Path) -> subprocess.Popen:
        """`redis-cli MONITOR` writing every command the server receives into `log`
        (stop it with `.terminate()`)."""
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli (Debian's redis-tools) is needed to watch the broker"
        with log.open("w") as out:
            process = subprocess.Popen(
                [cli, "-h", self.host, "-p", str(self.port), "MONITOR"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A fresh Redis server on 127.0.0.1 and a free port, removed afterwards."""
    binary = redis_binary()
    assert binary, "redis-server is not installed"
    folder = Path(tempfile.mkdtemp(prefix="datashare-redis-"))
    port = _free_port()
    argv = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
        "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
    ]  # fmt: skip
    log = folder / "redis.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _answers(port):
            assert process.poll() is None, f"redis-server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"redis-server not up:\n{log.read_text()}"
            time.sleep(0.1)
        yield RedisServer("127.0.0.1", port, folder)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # throwaway: nothing to keep
            process.wait(timeout=15)
        shutil.rmtree(folder, ignore_errors=True)
