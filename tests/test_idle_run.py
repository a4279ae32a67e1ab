"""An idle `datashare run` (nothing new in the drop zone) only reads what it reports.

It is the command an operator runs most; it should answer in about a second, so it must not
import the validation stack (pandera, polars, Dagster, great-expectations), the contract
lint (jsonschema and the ODCS schema: `datashare contracts lint`'s) or read every oversight
mart's definition when there is nothing to validate and no mart to compute.
"""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from pipelines.cli.main import REPO_ROOT, main
from tests.conftest import drop

HEAVY = (
    "pandera",
    "polars",
    "dagster",
    "great_expectations",
    "pipelines.oversight.mart_runner",
    "schemas.contract_lint",
    "jsonschema",
)

# A fresh interpreter, as `datashare run` starts: what the idle run imported, and its output.
IDLE_RUN = """
import contextlib, io, json, sys
from pipelines.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["--home", sys.argv[1], "run"])
print(json.dumps({"code": code, "out": out.getvalue(),
                  "imported": [m for m in sys.argv[2:] if m in sys.modules]}))
"""


@pytest.mark.usefixtures("ge_helper")  # the first run's: the worker's helper
def test_an_idle_run_imports_no_validation_stack_and_counts_open_breaches_as_the_register(
    home, real_stop_and_search
):
    drop(home, "stop_and_search", "2022-06", real_stop_and_search)
    assert main(["run"]) == 0

    done = subprocess.run(
        [sys.executable, "-c", IDLE_RUN, str(home.home), *HEAVY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    idle = json.loads(done.stdout.strip().splitlines()[-1])
    assert idle["code"] == 0
    assert "Nothing new in the drop zone" in idle["out"]
    assert idle["imported"] == []

    # The summary's count is governance.breach_register's, to the breach.
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        open_, critical = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE severity = 'critical') "
            "FROM governance.breach_register "
            "WHERE status IN ('open', 'notified', 'acknowledged')"
        ).fetchone()
    assert open_ > 0
    assert f"  open breaches:      {open_:,} ({critical:,} critical)" in idle["out"]
