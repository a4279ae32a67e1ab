"""`datashare doctor`: what an engineer reads before a deployment goes live."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli.main import main
from pipelines.home.settings import Settings
from pipelines.intake.pseudonymise import KEY_ENV
from tests.conftest import copy_home, make_home


@pytest.fixture
def ready(shared_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Settings:
    """A copy of the session's demo home (every contract's months taken, so everything doctor
    reads exists: the key, the lake, the instance, the warehouse): copied for each test, as
    no run of its own would add anything doctor reads."""
    copy_home(shared_demo, tmp_path / "home")
    capsys.readouterr()
    return make_home(tmp_path, monkeypatch)


def doctor(capsys) -> tuple[int, str]:
    status = main(["doctor"])
    return status, capsys.readouterr().out


def test_a_working_home_is_ready(ready: Settings, capsys) -> None:
    status, out = doctor(capsys)
    assert status == 0, out
    assert "Ready: nothing would stop a run" in out
    for check in ("contracts", "home", "pseudonymisation key", "drop zone", "lake", "disk",
                  "Dagster instance", "warehouse"):  # fmt: skip
        assert f"ok    {check}:" in out, (check, out)
    assert "schema current" in out and "opens read-only" in out
    # Where each setting came from: the tests set the home and settle time in the environment.
    assert f"setting DATASHARE_HOME: '{ready.home}', from the environment" in out
    assert "setting DATASHARE_LAKE: not set, default used" in out
    # Probing the lake leaves nothing behind.
    assert not any((ready.lake / "_doctor").glob("*"))


def test_a_key_others_can_read_stops_it(ready: Settings, capsys) -> None:
    key = ready.home / "pseudonym.key"
    key.chmod(0o644)
    status, out = doctor(capsys)
    assert status == 1
    assert f"FAIL  pseudonymisation key: {key} is readable by others (mode 644)" in out
    assert f"chmod 600 {key}" in out
    assert "Not ready: 1 problem(s)" in out


def test_the_key_value_is_never_printed(ready: Settings, capsys, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "s3cret-key-value")
    status, out = doctor(capsys)
    assert status == 0, out
    assert "s3cret" not in out
    assert f"setting {KEY_ENV}: set in the environment (value not shown)" in out


def test_no_home_is_said_and_not_made(tmp_path: Path, monkeypatch, capsys) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("DATASHARE_HOME", str(missing))
    status, out = doctor(capsys)
    assert status == 1
    assert f"FAIL  home: there is no home at {missing}" in out
    assert not missing.exists()


def test_a_lake_that_cannot_be_written_stops_it(ready: Settings, capsys, monkeypatch) -> None:
    # Root writes through any mode, so the lake is made unusable another way: a file.
    blocked = ready.home / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("DATASHARE_LAKE", str(blocked))
    status, out = doctor(capsys)
    assert status == 1
    assert f"FAIL  lake: {blocked} is not a folder" in out


def test_a_broken_contract_and_warehouse_are_named(ready: Settings, capsys, monkeypatch) -> None:
    contracts = ready.home / "contracts"
    contracts.mkdir()
    (contracts / "broken.yaml").write_text("apiVersion: v3.1.0\nkind: DataContract\n")
    monkeypatch.setenv("DATASHARE_CONTRACTS", str(contracts))
    ready.warehouse.write_bytes(b"this is not a DuckDB file" * 100)
    status, out = doctor(capsys)
    assert status == 1
    assert "FAIL  contracts:" in out and "`datashare contracts lint` lists them" in out
    assert "FAIL  warehouse:" in out and "does not open read-only" in out
    assert "datashare warehouse rebuild" in out


def test_an_instance_that_does_not_open_stops_it(ready: Settings, capsys) -> None:
    (ready.dagster_home / "dagster.yaml").write_text("storage:\n  nonsense: {}\n")
    status, out = doctor(capsys)
    assert status == 1
    assert "FAIL  Dagster instance: the Dagster instance (SQLite in" in out
    assert "cannot be opened: DagsterInvalidConfigError" in out
    assert "was edited by hand: datashare leaves it as it is" in out
