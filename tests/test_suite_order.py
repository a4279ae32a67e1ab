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


def _order(hash_seed: int) -> list[str]:
    """The test ids a worker would run, in its order, under `hash_seed`."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly",
         "tests/test_oversight.py"],
        cwd=ROOT,
        env={**os.environ, "PYTEST_XDIST_WORKER": "gw0", "PYTHONHASHSEED": str(hash_seed)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_every_worker_collects_the_tests_in_the_same_order():
    # test_oversight.py's tests share several module-scoped homes: the units they are
    # joined into were put together in a set's order (seeds 0 to 3 gave two orders).
    orders = [_order(seed) for seed in range(4)]
    assert orders[0] and all(order == orders[0] for order in orders[1:])
