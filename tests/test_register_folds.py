"""The register's events folded every 16 files, on a home the previous version built.

Every read of the register in a new process opens each event file: at one fold per 64
files a two-year demo's contracts never folded, and its idle second pass opened 605 event
files. A contract's files are now folded every `COMPACT_AT` (16). The files are the same
kind as before (one per event, and `compacted-` folds), so a register the previous version
wrote is read as it was, and folded at this version's next record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pipelines.lake import register as register_module
from pipelines.lake.register import DeliveryEvent, Register
from pipelines.lake.store import FolderLake
from tests.previous_version import previous_version_code

PREVIOUS = "98bdac2"  # the last commit before folds every 16 files (its COMPACT_AT was 64)
FOLDER = "governance/deliveries/contract=stop_and_search"

WRITE_AND_READ = """
import json, sys
from pipelines.lake.register import COMPACT_AT, DeliveryEvent, Register
from pipelines.lake.store import FolderLake
register = Register(FolderLake(sys.argv[1]))
for i in range(40):
    period = f"2023-{i % 12 + 1:02d}"
    if i % 3 == 0:
        register.record_once(DeliveryEvent("stop_and_search", period, f"d{i}", "received"),
                             f"received-d{i}")
    register.record(DeliveryEvent("stop_and_search", period, f"d{i}", "validated"))
print(json.dumps({"compact_at": COMPACT_AT, "events": [
    [e["delivery_id"], e["event"], e["event_at"].isoformat()]
    for e in register.events("stop_and_search")
]}))
"""


def _as_read(events: list[dict]) -> list[list[str]]:
    return [[e["delivery_id"], e["event"], e["event_at"].isoformat()] for e in events]


def test_a_register_the_previous_version_wrote_reads_the_same_and_is_folded_at_the_next_record(
    tmp_path: Path,
):
    code = previous_version_code(PREVIOUS, tmp_path / "previous")
    root = tmp_path / "lake"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WRITE_AND_READ), str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
    )
    assert done.returncode == 0, done.stderr
    before = json.loads(done.stdout.strip().splitlines()[-1])
    assert before["compact_at"] == 64  # the previous version's: nothing folded
    files = sorted(p.name for p in (root / FOLDER).iterdir())
    assert len(files) == 54 and not any(n.startswith("compacted-") for n in files)

    lake = FolderLake(root)
    register = Register(lake)
    assert _as_read(register.events("stop_and_search")) == before["events"]
    register.record(DeliveryEvent("stop_and_search", "2024-01", "new", "validated"))
    after = _as_read(register.events("stop_and_search"))
    assert after[:-1] == before["events"] and after[-1][:2] == ["new", "validated"]
    # Folded at that record: one fold and the 14 write-once records (kept a day); and a
    # process reading the register afresh reads the same events, in the same order.
    names = sorted(p.name for p in (root / FOLDER).iterdir())
    assert [n for n in names if not n.startswith("received-")][0].startswith("compacted-")
    assert len(names) == 1 + 14
    register_module._READ.clear()
    assert _as_read(Register(FolderLake(root)).events("stop_and_search")) == after


def test_a_contracts_timed_files_stay_under_the_fold_as_months_arrive(tmp_path: Path):
    # 24 months of three events each, as the demo's contracts get them.
    lake = FolderLake(tmp_path / "lake")
    register = Register(lake)
    for month in range(24):
        period = f"2024-{month % 12 + 1:02d}" if month < 12 else f"2025-{month % 12 + 1:02d}"
        marker = DeliveryEvent("stop_and_search", period, f"d{month}", "received")
        assert register.record_once(marker, f"received-d{month}")
        for event in ("validated", "published"):
            register.record(DeliveryEvent("stop_and_search", period, f"d{month}", event))
        timed = [n for n in os.listdir(tmp_path / "lake" / FOLDER) if not n.startswith("rec")]
        assert len(timed) < register_module.COMPACT_AT
    assert len(register.events("stop_and_search")) == 72
