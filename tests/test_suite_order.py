"""`make test` shares the suite out over pytest-xdist's workers, and xdist refuses to run at
all when two workers collect the tests in different orders ("Different tests were collected
between gw0 and gw1"). Each worker is its own Python process, with its own string hashing:
the order `tests/conftest.py` gives the tests must not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A module whose tests share module-scoped fixtures in overlapping pairs, as
# test_oversight.py's share its homes: conftest.py joins such tests into units of work, and
# once did so in a set's order. (A small module of its own rather than test_oversight.py:
# collecting that one imports the whole engine, a few seconds a seed; this costs a second.)
SAMPLE = """
import pytest

@pytest.fixture(scope="module")
def alpha(): return 1

@pytest.fixture(scope="module")
def beta(): return 2

@pytest.fixture(scope="module")
def gamma(): return 3

@pytest.fixture(scope="module")
def delta(): return 4

def test_a(alpha): pass
def test_b(beta): pass
def test_c(gamma): pass
def test_d(delta): pass
def test_ab(alpha, beta): pass
def test_cd(gamma, delta): pass
def test_alone(): pass
def test_bc(beta, gamma): pass
"""
# Only the suite's own hooks decide the order: pytest's other plugins (Hypothesis's,
# typeguard's, anyio's, xdist's) cost most of a collection's second and order nothing.
NO_PLUGINS = ("-p", "no:randomly", "-p", "no:hypothesispytest", "-p", "no:typeguard",
              "-p", "no:anyio", "-p", "no:xdist", "-p", "no:cacheprovider")  # fmt: skip
# Nor the project's warning filters: two name Dagster's warning classes, and resolving them
# imports Dagster, a second of CPU in each collection (1.7 s -> 0.6 s) for nothing it orders.
NO_DAGSTER = ("-o", "filterwarnings=ignore::DeprecationWarning")


def _order(sample: Path, hash_seed: int) -> list[str]:
    """The test ids a worker would run, in its order, under `hash_seed`."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *NO_PLUGINS,
         "-p", "tests.conftest", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
         *NO_DAGSTER, str(sample)],
        cwd=ROOT,
        env={**os.environ, "PYTEST_XDIST_WORKER": "gw0", "PYTHONHASHSEED": str(hash_seed)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_every_worker_collects_the_tests_in_the_same_order(tmp_path):
    # Under the old conftest (units joined in a set's order) seeds 0 to 3 gave three
    # different orders of this module (test_oversight.py's: two).
    sample = tmp_path / "test_sample.py"
    sample.write_text(SAMPLE, encoding="utf-8")
    orders = [_order(sample, seed) for seed in range(4)]
    assert len(orders[0]) == 8 and all(order == orders[0] for order in orders[1:])
