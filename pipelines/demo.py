"""The bundled demo: synthetic monthly deliveries, with a few realistic breaches on purpose.

- six good-but-imperfect months of stop and search (a small share of defective rows);
- March sent twice under two names (the second is a duplicate, not processed again);
- July with a renamed column (the delivery is rejected, kept, and reported);
- August is a spreadsheet saved with a .csv name (unreadable, kept, and reported).

Files already in the drop zone are left alone, so running the demo twice changes nothing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines.synthetic import write_delivery
from schemas.contract import load_contracts

GOOD_PERIODS = ("2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06")
DEFECT_RATE = 0.003


@dataclass
class DemoFiles:
    new: int = 0
    kept: int = 0


def _name(period: str) -> str:
    return f"{period}-metropolitan-stop-and-search.csv"


def write_demo_deliveries(dropzone: Path, rows: int = 20_000) -> DemoFiles:
    """Write the demo deliveries that are not already in `dropzone`."""
    contract = load_contracts()["stop_and_search"]
    base = dropzone / contract.name
    files = DemoFiles()

    def make(path: Path, build) -> None:
        if path.exists():
            files.kept += 1
            return
        build(path)
        files.new += 1

    for i, period in enumerate(GOOD_PERIODS):
        make(
            base / period / _name(period),
            lambda p, period=period, i=i: write_delivery(
                contract, period, p, rows=rows, seed=2025_00 + i, defect_rate=DEFECT_RATE
            ),
        )
    march = base / "2025-03" / _name("2025-03")
    make(base / "2025-03" / f"resent-{_name('2025-03')}", lambda p: shutil.copyfile(march, p))

    def renamed_column(path: Path) -> None:
        write_delivery(contract, "2025-07", path, rows=rows, seed=2025_07, defect_rate=DEFECT_RATE)
        text = path.read_text(encoding="utf-8")
        header, rest = text.split("\n", 1)
        header = header.replace("Officer-defined ethnicity", "Officer defined ethnicity")
        path.write_text(f"{header}\n{rest}", encoding="utf-8")

    make(base / "2025-07" / _name("2025-07"), renamed_column)

    def spreadsheet(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The first bytes of an .xlsx (a zip archive): what arrives when a workbook is renamed.
        path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 8)

    make(base / "2025-08" / _name("2025-08"), spreadsheet)
    return files
