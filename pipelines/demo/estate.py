"""The bundled demo: the whole estate, every contract, with a few realistic breaches on purpose.

Every contract gets synthetic deliveries for the months (or quarters) up to the last one
closed before today, so the UI shows a current picture; one month in three has a small share
of defective rows (quarantined), the others are clean. The Census 2021 reference population
is the real published file, bundled. On purpose, in stop and search and use of force:
- one month sent twice under two names: the second is a duplicate, not processed again;
- one month restated: a corrected file sent after the first month was published (the demo
  runs twice: the months, then the correction), so the first is superseded and the second
  pass reports a minor `delivery.restated` naming both files; two files for one month in
  the same pass would instead be a major `delivery.multiple_files`;
- one month first sent with a renamed column (rejected, kept, reported), then re-sent right;
- one month arrives only as a spreadsheet renamed .csv: unreadable (kept, reported), so the
  month stays unpublished and, past its due date, is flagged late;
- one use-of-force month whose manifest disagrees with the file: held back, not published.

Files already in the drop zone are left alone, so running the demo twice changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path

from pipelines.demo.synthetic import write_delivery
from pipelines.governance.delivery_schedule import scheduled_periods, today_in_london
from pipelines.intake.dropzone import MANIFEST_SUFFIX
from schemas.contract import Contract, load_contracts

DEFECT_RATE = 0.003  # in one month of three; the others are clean
# Fewer files than this are written here; more, side by side in worker processes.
WRITE_APART = 12
CENSUS = Path(__file__).with_name("demo_data") / "census2021_london_age3_ethnic8_sex.csv"


@dataclass
class DemoFiles:
    """Delivery files written and found already there; manifests are counted apart, since
    a manifest is not a delivery."""

    new: int = 0
    kept: int = 0
    manifests: int = 0

    def text(self, where: object) -> str:
        beside = f" (and {self.manifests} manifest(s) beside them)" if self.manifests else ""
        return f"Demo deliveries in {where}: {self.new} new, {self.kept} already there{beside}."


def _shift(period: str, months: int) -> str:
    year, month = (int(x) for x in period.split("-"))
    total = year * 12 + month - 1 + months
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


def last_period(today: date | None = None) -> str:
    """The last month closed before today (London): where the demo's deliveries end."""
    today = today or today_in_london()
    return _shift(f"{today.year:04d}-{today.month:02d}", -1)


def demo_periods(contract: Contract, months: int, today: date | None = None) -> list[str]:
    """The contract's periods that have closed, inside the last `months` months to
    `last_period()`."""
    today = today or today_in_london()
    first = _shift(last_period(today), 1 - months)
    if contract.schedule.period == "once":
        return [contract.schedule.first_period]
    return [p for p in scheduled_periods(contract, today) if p >= first]


def write_demo_deliveries(
    dropzone: Path,
    rows: int = 5_000,
    months: int = 24,
    only: set[str] | None = None,
    *,
    corrections: bool = False,
    write: bool = True,
) -> DemoFiles:
    """Write the demo deliveries that are not already in `dropzone`: the months, or with
    `corrections`, the files the force sends once those months are published. With
    `write=False`, only count them (what a call with `write` would write)."""
    files = DemoFiles()
    # The files to write, folder by folder (a month's), each folder's in the order given.
    to_write: dict[Path, list[tuple[Path, Callable[[Path], object]]]] = {}

    def make(path: Path, build: Callable[[Path], object], correction: bool = False) -> None:
        if correction != corrections:
            return
        if path.name.endswith(MANIFEST_SUFFIX):
            files.manifests += 1
        elif path.exists():
            files.kept += 1
        else:
            files.new += 1
        if not path.exists():
            to_write.setdefault(path.parent, []).append((path, build))

    for index, contract in enumerate(load_contracts().values()):
        if only and contract.name not in only:
            continue
        base = dropzone / contract.name
        if contract.name == "census_2021_population":
            period = contract.schedule.first_period
            make(base / period / CENSUS.name, partial(shutil.copyfile, CENSUS))
            continue
        periods = demo_periods(contract, months)
        mishaps = contract.name == "stop_and_search" and len(periods) >= 6
        resent, restated, renamed, missing = (
            (periods[-6], periods[-5], periods[-4], periods[-3]) if mishaps else ("",) * 4
        )
        for i, period in enumerate(periods):
            seed = 1000 * index + i
            good = base / period / f"{period}-{contract.name}.csv"
            if period == missing:
                make(good.with_suffix(".xlsx.csv"), _spreadsheet)
                continue
            if period == renamed:
                # The bad attempt is written (and so taken) before its correction.
                make(
                    base / period / f"0-first-attempt-{good.name}",
                    partial(_renamed_column, contract, seed),
                )
            make(good, _delivery(contract, period, rows, seed, defective=i % 3 == 0))
            if period == resent:
                make(base / period / f"resent-{good.name}", partial(shutil.copyfile, good))
            if period == restated:
                # Sent once the month is published: a restatement, not a second part.
                make(
                    base / period / f"restated-{good.name}",
                    _delivery(contract, period, rows, seed + 500, defective=True),
                    correction=True,
                )
        if contract.name == "use_of_force" and len(periods) >= 6:
            _manifest_mismatch(base, periods[-3], contract.name, make)
    if write:
        _write_all(list(to_write.values()))
    return files


def _write_folder(files: list[tuple[Path, Callable[[Path], object]]]) -> None:
    """One month's files, in order: a first attempt before its correction, a file before
    its copy or manifest."""
    for path, build in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)


def _write_all(folders: list[list[tuple[Path, Callable[[Path], object]]]]) -> None:
    """Write every folder's files; many, side by side in a worker process per core
    (started afresh, as the runs' are: the generator builds rows in threads)."""
    at_once = min(os.cpu_count() or 1, len(folders))
    if sum(len(f) for f in folders) < WRITE_APART or at_once <= 1:
        for folder in folders:
            _write_folder(folder)
        return
    with ProcessPoolExecutor(at_once, multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(_write_folder, folder) for folder in folders]:
            done.result()  # a file that could not be written stops the demo, as before


def _delivery(
    contract: Contract, period: str, rows: int, seed: int, defective: bool
) -> Callable[[Path], object]:
    rate = DEFECT_RATE if defective else 0.0
    return partial(_write_delivery, contract, period, rows, seed, rate)


def _write_delivery(
    contract: Contract, period: str, rows: int, seed: int, rate: float, path: Path
) -> None:
    write_delivery(contract, period, path, rows=rows, seed=seed, defect_rate=rate)


def _renamed_column(contract: Contract, seed: int, path: Path) -> None:
    period = path.parent.name
    write_delivery(contract, period, path, rows=500, seed=seed, defect_rate=DEFECT_RATE)
    header, rest = path.read_text(encoding="utf-8").split("\n", 1)
    header = header.replace("Officer-defined ethnicity", "Officer defined ethnicity")
    path.write_text(f"{header}\n{rest}", encoding="utf-8")


def _spreadsheet(path: Path) -> None:
    # The first bytes of an .xlsx (a zip archive): a workbook renamed .csv.
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 8)


def _manifest_mismatch(base: Path, period: str, name: str, make) -> None:
    delivery = base / period / f"{period}-{name}.csv"
    make(delivery.with_name(delivery.name + ".manifest.json"), partial(_manifest, delivery))


def _manifest(delivery: Path, path: Path) -> None:
    sha = hashlib.sha256(delivery.read_bytes()).hexdigest()
    rows = delivery.read_text(encoding="utf-8").count("\n") - 1
    # The force's count is off by the rows it dropped after computing the checksum.
    path.write_text(json.dumps({"rows": rows + 12, "sha256": sha}))
