"""A process reads each contract file once: the contract model (`schemas.contract`) and the
agreement page's clauses (`schemas.contract_page`, which the warehouse catalog joins breaches
to) share one parse of its YAML, as long as the file is unchanged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.governance.views import clause_table
from schemas import contract as contract_module
from schemas import contract_page
from schemas.contract import load_contract, load_contracts
from schemas.contract_page import contract_document


def _clear_caches() -> None:
    contract_module._load_contract.cache_clear()
    if shared := getattr(contract_module, "contract_yaml", None):
        shared.cache_clear()
    if page := getattr(contract_page, "_document", None):  # before the parse was shared
        page.cache_clear()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files parsed from here on (each YAML parse of a file, by its path)."""
    _clear_caches()
    seen: list[str] = []
    real = yaml.load

    def counted(stream, Loader):  # noqa: N803 (yaml's own name)
        seen.append(str(getattr(stream, "name", "?")))
        return real(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load", counted)
    yield seen
    _clear_caches()


def test_the_model_and_the_clauses_read_each_contract_file_once(parses: list[str]):
    """What a run that rebuilds the catalog reads: every contract's model, then every
    contract's clauses; each file is parsed once (it was twice: ten parses of 1,200-line
    files more in each rebuild), and the page reads the document the file holds."""
    contracts = load_contracts()
    clauses = clause_table(contracts)
    for contract in contracts.values():
        with open(contract.path, encoding="utf-8") as fh:
            fresh = yaml.safe_load(fh)
        assert contract_document(contract.path) == fresh
    parsed = [name for name in parses if name.endswith(".yaml")]
    files = sorted(str(c.path) for c in contracts.values())
    # Once each for the model and the clauses; the check above parses its own copy.
    assert sorted(parsed[: len(files)]) == files
    assert parsed[len(files) :] == files  # the test's own fresh reads, one each, nothing else
    assert clauses.num_rows > 0 and set(clauses["contract"].to_pylist()) == set(contracts)


def test_an_edited_contract_is_read_again_by_both(parses: list[str], tmp_path: Path):
    """An edit (a new modification time) is seen by the model and by the page alike."""
    source = load_contracts()["stop_and_search"].path
    path = tmp_path / source.name
    shutil.copy(source, path)
    assert load_contract(path).version == contract_document(path)["version"]
    text = path.read_text(encoding="utf-8")
    line = f"version: {load_contract(path).version}"
    assert line in text
    path.write_text(text.replace(line, "version: 9.9.9", 1), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_contract(path).version == contract_document(path)["version"] == "9.9.9"
    assert parses.count(str(path)) == 2  # once before the edit, once after
