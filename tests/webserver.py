"""The real `dagster-webserver` on a demo home, for the tests that look at the Dagster UI.

`running_webserver` starts the webserver on a home (its own process group, stopped with its
code server afterwards) and waits until the `datashare` code location has loaded. (The demo
homes are built in the test process, tests/conftest.py; tests/test_two_commands.py runs the
`datashare demo` script as a user does.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 90.0

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Webserver:
    url: str
    home: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """POST a query to /graphql; the `data` of an answer without errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]


def env(home: Path) -> dict[str, str]:
    """This process's environment, pointed at `home` (and at no other drop zone or lake)."""
    env = {**os.environ, "DATASHARE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    # Temporary files (the code server's socket, /tmp/tmpXXXXXXXX) beside the home, in the
    # test's folder: the webserver is killed at the end (`stop`) and cleans up nothing. Only
    # where the socket's path stays well within a Unix socket's 107 bytes.
    if len(str(home.parent)) <= 80:
        env["TMPDIR"] = str(home.parent)
    for name in ("DATASHARE_DROP_ZONE", "DATASHARE_LAKE"):
        env.pop(name, None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def location_loaded(server: Webserver) -> bool:
    """True once the `datashare` code location is loaded; fails fast on a load error."""
    workspace = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]
    assert workspace["__typename"] == "Workspace", workspace
    entries = {e["name"]: e for e in workspace["locationEntries"]}
    entry = entries.get("datashare")
    if not entry or entry["loadStatus"] != "LOADED":
        return False
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    return True


def stop(process: subprocess.Popen) -> None:
    """End the webserver and its code server (its whole process group) at once.

    Killed, not asked to stop: each of the two spent 7-9 s after SIGTERM (a second of
    CPU; Python's last garbage collection of Dagster's objects, seen with faulthandler) at
    the end of a test worker's session, for a home that is a copy thrown away after; they
    write nothing a test reads. What they leave in their TMPDIR (the code server's socket)
    is under the test's folder (`env`)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@contextmanager
def running_webserver(home: Path) -> Iterator[Webserver]:
    """The real `dagster-webserver` on `home`, once its code location has loaded."""
    port = free_port()
    log = home.parent / "webserver.log"
    argv = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        "-w", str(REPO_ROOT / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Webserver(f"http://127.0.0.1:{port}", home)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, f"webserver exited early:\n{tail(log)}"
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=5) as r:
                    if r.status == 200 and location_loaded(server):
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, (
                f"webserver not ready after {STARTUP_TIMEOUT:.0f}s:\n{tail(log)}"
            )
            time.sleep(0.5)
        yield server
    finally:
        stop(process)
