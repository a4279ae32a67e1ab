"""The demo's two passes: the months, then a corrected file for a month already published.

The oversight marts wait for the second pass: each is computed once, and on the corrected
month, rather than once before the correction and again after it (issue 21).
"""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from pipelines.cli.main import main
from pipelines.oversight.mart_runner import MARTS
from pipelines.oversight.pack import read_marts


def _rows(tables: dict) -> dict[str, list]:
    """Each mart's rows, in an order that does not depend on how they were computed."""
    return {
        name: None if table is None else sorted(map(repr, table.to_pylist()))
        for name, table in tables.items()
    }


@pytest.mark.slow
def test_the_demo_computes_each_mart_once_and_after_the_correction(home, shared_demo, capsys):
    """The session's `datashare demo` (tests/conftest.py), in this test's copy of its home."""
    out = (shared_demo / "demo-stdout.txt").read_text(encoding="utf-8")
    shutil.copytree(shared_demo / "home", home.home, dirs_exist_ok=True)
    assert "Then the force sends 1 corrected file(s)" in out

    instance = dg.DagsterInstance.get()
    materialized = {
        name: len(instance.fetch_materializations(dg.AssetKey(["oversight", name]), 10).records)
        for name in MARTS
    }
    assert materialized == dict.fromkeys(MARTS, 1)
    # Computed after the correction: recomputing every mart from the curated tables as they
    # are now changes no figure.
    shown = _rows(read_marts(home.warehouse))
    assert main(["report", "--refresh"]) == 0
    assert _rows(read_marts(home.warehouse)) == shown
