"""Shared fixtures: a fresh DATASHARE_HOME per test, and the real published data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipelines.settings import Settings, load_settings
from schemas.contract import Contract, load_contracts

REAL_DATA = Path(
    os.environ.get("DATASHARE_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "real")
)
REAL_STOP_AND_SEARCH = REAL_DATA / "stop_and_search" / "2022-06-metropolitan-stop-and-search.csv"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An empty installation in tmp_path, with Dagster's instance inside it."""
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    monkeypatch.delenv("DATASHARE_DROP_ZONE", raising=False)
    monkeypatch.delenv("DATASHARE_LAKE", raising=False)
    settings = load_settings()
    settings.ensure_folders()
    return settings


@pytest.fixture(scope="session")
def stop_and_search() -> Contract:
    return load_contracts()["stop_and_search"]


@pytest.fixture(scope="session")
def real_stop_and_search() -> Path:
    assert REAL_STOP_AND_SEARCH.exists(), (
        f"the real June 2022 file is expected at {REAL_STOP_AND_SEARCH} "
        "(set DATASHARE_REAL_DATA to the shared/real folder)"
    )
    return REAL_STOP_AND_SEARCH


def drop(settings: Settings, contract: str, period: str, source: Path, name: str | None = None):
    """Put a file in the drop zone as the force would."""
    target = settings.dropzone / contract / period / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
