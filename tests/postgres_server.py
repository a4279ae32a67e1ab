"""A real PostgreSQL server for tests: Debian's `postgresql` package, a throwaway cluster.

`running_postgres` makes a cluster in a fresh temporary folder (`initdb`), starts it on
127.0.0.1 and a free port with its socket in that folder (`pg_ctl`), makes a login role
with a password, and stops and removes it all afterwards. PostgreSQL refuses to run as
root, so as root every server command runs as the `postgres` system user (which Debian's
package creates) through `runuser`; as anyone else, as that user. `make test` installs the
package when it is missing and it runs as root, as on CI; elsewhere the tests that need it
skip with the reason (and fail on CI, where it must be there).
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

SERVER_USER = "postgres"  # the system user Debian's package creates
ROLE = "datashare"  # the login role the tests' instances use
STARTUP_TIMEOUT = 60
# The role's SCRAM iterations. libpq derives the key from the password at every connection
# (PostgreSQL's default 4096 iterations: 2.4 ms of the client's CPU each), and Dagster's
# PostgreSQL storage connects for every query: a daemon kill test makes 700 connections.
# Still SCRAM, and a wrong password is refused as before; the secret is not what is tested.
SCRAM_ITERATIONS = 1


def bin_dir() -> Path | None:
    """The folder of PostgreSQL's server programs (`initdb`, `pg_ctl`), newest first."""
    configured = os.environ.get("DATASHARE_PG_BIN")
    if configured:
        return Path(configured) if (Path(configured) / "initdb").exists() else None
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable() -> str | None:
    """Why no throwaway server can be run here, or None if one can."""
    if bin_dir() is None:
        return (
            "PostgreSQL is not installed: `apt-get install postgresql` (as root, `make test` "
            "does it), or DATASHARE_PG_BIN=/usr/lib/postgresql/<version>/bin"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no `{SERVER_USER}` user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and there is no `runuser` to run PostgreSQL as postgres"
    return None


def require_postgres() -> None:
    """Skip the test (fail it on CI) when PostgreSQL cannot be run here."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str  # the login role
    password: str
    folder: Path  # the cluster's folder (data, socket, log)
    _admin: tuple[str, ...] = ()  # prefix that runs a command as the server's user

    def url(self, database: str, with_password: bool = False) -> str:
        """`postgresql://user[:password]@host:port/database`."""
        secret = f":{quote(self.password, safe='')}" if with_password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{database}"

    def write_pgpass(self, path: Path) -> Path:
        """A libpq password file (0600, as libpq requires) for this server's role."""
        path.write_text(f"{self.host}:{self.port}:*:{self.user}:{self.password}\n")
        path.chmod(0o600)
        return path

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the cluster's superuser over its socket; its output."""
        return _run(
            [*self._admin, str(bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-v",
             "ON_ERROR_STOP=1", "-h", str(self.folder), "-p", str(self.port), "-U",
             SERVER_USER, "-d", database, "-c", sql],
            cwd=str(self.folder),
        )  # fmt: skip

    def create_database(self, name: str) -> str:
        """A new database owned by the login role; its URL (without the password)."""
        self.psql(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return self.url(name)


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for `password` (RFC 5803's form, which
    `CREATE ROLE ... PASSWORD` takes as it is), with `iterations`."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = [base64.b64encode(part).decode() for part in (salt, stored, server)]
    return f"SCRAM-SHA-256${iterations}:{b64[0]}${b64[1]}:{b64[2]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], cwd: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done.stdout


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster on 127.0.0.1 and a free port, removed afterwards."""
    binaries = bin_dir()
    assert binaries is not None, unavailable()
    admin: tuple[str, ...] = ()
    # A folder of its own in the system temporary folder, which the server's user can
    # reach (pytest's folders under root are root's alone).
    folder = Path(tempfile.mkdtemp(prefix="datashare-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVER_USER)
        os.chown(folder, account.pw_uid, account.pw_gid)
        admin = ("runuser", "-u", SERVER_USER, "--")
    data, log = folder / "data", folder / "server.log"
    port = _free_port()
    server = PostgresServer("127.0.0.1", port, ROLE, secrets.token_urlsafe(18), folder, admin)
    started = False
    try:
        try:
            # The superuser reaches it over its socket without a password; everyone else
            # over TCP with one (SCRAM), as on a real server.
            _run(
                [*admin, str(binaries / "initdb"), "-D", str(data), "-U", SERVER_USER, "-E",
                 "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                 "--no-sync"],
                cwd=str(folder),
            )  # fmt: skip
            # Durability is not what these tests are about: no fsync, so it is quick.
            options = (
                f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200"
            )
            _run(
                [*admin, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                 "-t", str(STARTUP_TIMEOUT), "-o", options, "start"],
                cwd=str(folder),
            )  # fmt: skip
            started = True
            verifier = scram_verifier(server.password)
            server.psql(f"CREATE ROLE \"{ROLE}\" LOGIN PASSWORD '{verifier}'")
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc}\n{tail}") from exc
        yield server
    finally:
        if started:
            subprocess.run(
                [*admin, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                 "stop"],
                capture_output=True, timeout=60, cwd=str(folder),
            )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
