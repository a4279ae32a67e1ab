"""What every `datashare run` pays before its real work: an idle run (nothing new) imports
neither pandas nor Dagster nor the validation stack, and the register reads what it read
before without them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.lake.register import DELIVERY_EVENT_SCHEMA, rows_of
from pipelines.lake.store import open_lake
from tests.conftest import copy_home

ROOT = Path(__file__).resolve().parents[1]
# What an idle run has no use for: each costs from a tenth of a second (pyarrow.dataset,
# once pandas is in) to seconds (Dagster, great-expectations) on every run.
NOT_IN_AN_IDLE_RUN = (
    "pandas", "pyarrow.dataset", "dagster", "great_expectations", "pandera", "polars",
    "sqlalchemy", "jsonschema", "boto3", "fsspec", "pyarrow.compute",
)  # fmt: skip


def _imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` says the process imported."""
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", stderr, re.M))


def test_an_idle_run_imports_neither_pandas_nor_dagster_nor_the_validation_stack(
    shared_demo: Path, tmp_path: Path
):
    home = copy_home(shared_demo, tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipelines.cli.main", "--home", str(home),
         "run"],
        cwd=ROOT,
        env={**os.environ, "DATASHARE_SETTLE_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.startswith("Nothing new in the drop zone"), done.stdout[:500]
    imported = _imported(done.stderr)
    assert "pyarrow" in imported and "duckdb" in imported  # the parse found the imports
    assert not imported & set(NOT_IN_AN_IDLE_RUN), sorted(imported & set(NOT_IN_AN_IDLE_RUN))


ZONES = ("UTC", "Europe/London", "America/New_York", "Asia/Kolkata")
MOMENTS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    unit=st.sampled_from(("s", "ms", "us")),
    moments=st.lists(st.one_of(st.none(), MOMENTS), max_size=6),
)
def test_the_registers_rows_are_pyarrows_own_whatever_the_times(zone, unit, moments):
    """Read without pandas, every time is the one pyarrow gives: the same instant, the same
    zone, the same kind of zone object (so the register's rows compare, sort and print as
    they did)."""
    kind = pa.timestamp(unit, tz=zone)
    table = pa.table(
        {
            "at": pa.array(moments, pa.timestamp("us", tz="UTC")).cast(kind, safe=False),
            "what": pa.array([str(i) for i in range(len(moments))], pa.string()),
        }
    )
    ours, theirs = rows_of(table), table.to_pylist()
    assert ours == theirs
    for mine, its in zip(ours, theirs, strict=True):
        if mine["at"] is not None:
            assert type(mine["at"].tzinfo) is type(its["at"].tzinfo)
            assert str(mine["at"].tzinfo) == str(its["at"].tzinfo)
            assert mine["at"].utcoffset() == its["at"].utcoffset()


@settings(max_examples=25, deadline=None)
@given(
    files=st.lists(
        st.tuples(
            st.integers(0, 3),  # events in the file
            st.booleans(),  # written before `source_version` existed
            st.booleans(),  # its columns in another order
        ),
        min_size=1,
        max_size=5,
    )
)
def test_the_register_reads_its_files_as_one_dataset_scan_did(tmp_path_factory, files):
    """Files written by earlier versions (a column missing, another order) read as the
    single `pyarrow.dataset` scan read them: the missing column empty, the rest as written."""
    root = tmp_path_factory.mktemp("lake")
    lake = open_lake(root)
    folder = root / "governance" / "deliveries" / "contract=c"
    folder.mkdir(parents=True)
    keys = []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for number, (events, old, shuffled) in enumerate(files):
        rows = [
            {
                "contract": "c",
                "period": "2024-01",
                "delivery_id": f"d{number}",
                "event": "received",
                "event_at": start + timedelta(minutes=number * 10 + i),
                "rows_delivered": i,
                "source_version": None if old else f"v{i}",
            }
            for i in range(events)
        ]
        table = pa.Table.from_pylist(rows, DELIVERY_EVENT_SCHEMA)
        if old:
            table = table.drop_columns(["source_version"])
        if shuffled:
            table = table.select(list(reversed(table.column_names)))
        pq.write_table(table, folder / f"{number}.parquet")
        keys.append(f"governance/deliveries/contract=c/{number}.parquet")
    scan = ds.dataset(
        [str(root / k) for k in keys], schema=DELIVERY_EVENT_SCHEMA, format="parquet"
    ).to_table()
    read = lake.read_all(keys, DELIVERY_EVENT_SCHEMA)
    assert read.schema == DELIVERY_EVENT_SCHEMA
    assert rows_of(read) == scan.to_pylist()
    assert lake.read_all([], DELIVERY_EVENT_SCHEMA).equals(DELIVERY_EVENT_SCHEMA.empty_table())


OPEN_THE_INSTANCE = """
import sys
from pipelines.home.settings import load_settings
from pipelines.orchestration.instance import open_instance
settings = load_settings(sys.argv[1])
settings.ensure_folders()
with open_instance(settings) as instance:
    print(len(instance.get_runs()), instance.event_log_storage.__class__.__name__)
"""


def test_opening_the_instance_imports_no_syntax_highlighting(tmp_path: Path):
    """Dagster's SQL storage imports alembic, whose mako imported pygments' formatters and
    some thirty lexers (Python, JavaScript, Perl, Ruby...; 0.15 s of 0.18 s here) to colour
    error pages nothing here renders: a run's process opens its instance (a new home's,
    made whole) without them, and with alembic, which the storage still uses. (pygments'
    core still comes with rich's tracebacks, which Dagster's logging imports.)"""
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", OPEN_THE_INSTANCE, str(home)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home / "dagster")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0", "KeptOpenSqliteEventLogStorage"]
    imported = _imported(done.stderr)
    assert {"alembic", "mako.exceptions", "sqlalchemy"} <= imported  # the storage's own
    # (The lexers' name table, `pygments.lexers._mapping`, comes with rich's; the lexers
    # themselves and the HTML formatter only with mako's plugin.)
    highlighting = {
        m
        for m in imported
        if m.startswith(("pygments.lexers.", "pygments.formatters"))
        and m != "pygments.lexers._mapping"
    }
    assert not highlighting, sorted(highlighting)


# What a `datashare` process's great-expectations helper runs first: multiprocessing's
# `spawn` imports the parent's main module again in the child, here a script that begins
# as the `datashare` console script does.
AS_THE_CONSOLE_SCRIPT = """
import gc
import importlib
import sys

from pipelines.cli.main import main


def imported(name: str) -> None:
    importlib.import_module(name)


def loaded() -> list[str]:
    return sorted(sys.modules)


if __name__ == "__main__":
    from pipelines.validation import ge_process

    with ge_process.loading_early(gc.collect):
        # The module the helper's tasks (and `warm_session`) come from.
        ge_process.call(imported, "pipelines.validation.dataset_expectations")
        print(" ".join(ge_process.call(loaded)))
"""
# The sub-commands' modules and what they bring, and DuckDB (the breach register's): the
# helper has no use for them.
NOT_IN_THE_HELPER = (
    "pipelines.cli.breaches", "pipelines.cli.contracts", "pipelines.cli.lake",
    "pipelines.cli.worker", "pipelines.governance.breach_register",
    "pipelines.governance.audit_log", "pipelines.oversight.lake_ddl", "schemas.contract_page",
    "duckdb",
)  # fmt: skip


def test_the_great_expectations_helper_imports_neither_the_commands_nor_duckdb(
    tmp_path: Path,
):
    """The helper a validating `datashare run` spawns re-imports the command line's module
    (its main) before it loads great-expectations: that import brings no sub-command's
    modules (the breach register, the contract pages, the lake's DDL: ~0.1 s of the
    helper's CPU, on a one-month run's critical path while the helper loads); and the
    module its tasks come from does not bring DuckDB (0.035 s), which only the main
    process's breaches need."""
    script = tmp_path / "datashare_like.py"
    script.write_text(AS_THE_CONSOLE_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    in_the_helper = set(done.stdout.split())
    assert "__mp_main__" in in_the_helper and "pipelines.cli.main" in in_the_helper
    assert "pipelines.validation.dataset_expectations" in in_the_helper
    unused = in_the_helper & set(NOT_IN_THE_HELPER)
    assert not unused, sorted(unused)


def test_the_command_line_still_has_every_command():
    """Its sub-commands, imported when `main` runs, are all there, with their help."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for command in ("demo", "run", "ui", "warehouse", "retention", "doctor", "breaches",
                    "contracts", "report", "review", "desk", "users", "agreement", "explain",
                    "worker", "lake"):  # fmt: skip
        assert command in done.stdout
