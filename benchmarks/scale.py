"""Years of history at all-London size: how the cost of a run grows with history.

Street crime, the largest contract: the Met's monthly file holds about 90,000 rows, and its
partitions begin in 2019-01, so 94 months (to 2026-10) is all the history it can hold. The
deliveries are the synthetic generator's, shaped like the real published files. As a user
runs it (`datashare run` as a process, start-up included), on one new home:

1. the history arrives in steps (by default 12, 48 and 93 months), each step sent at once
   and taken by one `datashare run`; each step's figure is beside DuckDB's own copy of the
   same files to Parquet, measured in the same run;
2. after each step, one new month on top of that history (the cost a month-end run pays);
3. the lake's and the warehouse's size on disk.

With `--workers`, the same files then go, step by step, through two `datashare worker`
processes on this machine (Dagster's celery executor, the S3 lake on SeaweedFS, PostgreSQL,
Redis, the daemon: `benchmarks/scale_workers.py` says how), and their figures are printed
beside the one-machine ones.

    .venv/bin/python benchmarks/scale.py                       # 94 months x 90,000 rows
    .venv/bin/python benchmarks/scale.py --rows 1000000        # about 94 million rows
    .venv/bin/python benchmarks/scale.py --steps 6,12 --rows 20000   # a quick look
    .venv/bin/python benchmarks/scale.py --steps 6,12 --workers      # ... and two workers

Peak memory is each `datashare run` process's own high-water resident set (GNU time's
%M: the process or its largest child). Figures move with the machine's load, printed at
the start and the end; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from end_to_end import Measure, duckdb_copy, months_to, run, send_months  # noqa: E402
from scale_workers import SENSOR, Peaks, Phase, cluster, phase  # noqa: E402

CONTRACT = "street_crime"
LAST = "2026-10"  # the newest month of history; each step's "new month" comes after it


@dataclass
class Step:
    months: int
    rows: int
    backfill: Measure
    duckdb: Measure
    new_month: Measure
    lake_mb: float
    warehouse_mb: float


def send(home: Path, periods: list[str], rows: int) -> list[Path]:
    return send_months(home, periods, rows, CONTRACT, "{period}-metropolitan-street.csv")


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 2**20


def table(steps: list[Step]) -> str:
    lines = [
        "| months of history | rows taken | run s | peak MB | DuckDB copy s | ratio "
        "| one new month s | its peak MB | lake MB | warehouse MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        lines.append(
            f"| {s.months} | {s.rows:,} | {s.backfill.seconds:.1f} | {s.backfill.peak_mb:,.0f} "
            f"| {s.duckdb.seconds:.1f} | {s.backfill.seconds / s.duckdb.seconds:.1f}x "
            f"| {s.new_month.seconds:.1f} | {s.new_month.peak_mb:,.0f} "
            f"| {s.lake_mb:,.0f} | {s.warehouse_mb:,.1f} |"
        )
    return "\n".join(lines)


@dataclass
class WorkersStep:
    months: int
    rows: int
    backfill: Phase
    new_month: Phase
    lake_mb: float
    step_logs_mb: float
    warehouse_mb: float


def _peaks(phase: Phase) -> str:
    return " / ".join(f"{phase.peaks.get(role, 0):,.0f}" for role in ("daemon", "w1", "w2"))


def _rest(phase: Phase) -> str:
    return " / ".join(f"{v:.1f}" for v in phase.rest.values())


def workers_table(steps: list[WorkersStep], alone: list[Step]) -> str:
    """The two workers' figures, with the one-machine run's time for the same step beside."""
    lines = [
        "| months of history | rows taken | two workers s | of which steps s | one machine s "
        "| runs | peak MB daemon / w1 / w2 | steps w1 / w2 | one new month s "
        "| of which steps s | one machine s | its peak MB daemon / w1 / w2 | lake MB (S3) "
        "| step logs MB | warehouse MB | rest s: asked / launched / run / warehouse "
        "| the new month's |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, a in zip(steps, alone, strict=True):
        steps_by = " / ".join(str(s.backfill.handed.get(w, 0)) for w in ("w1", "w2"))
        lines.append(
            f"| {s.months} | {s.rows:,} | {s.backfill.seconds:.1f} "
            f"| {s.backfill.steps_seconds:.1f} | {a.backfill.seconds:.1f} "
            f"| {s.backfill.runs} | {_peaks(s.backfill)} | {steps_by} "
            f"| {s.new_month.seconds:.1f} | {s.new_month.steps_seconds:.1f} "
            f"| {a.new_month.seconds:.1f} | {_peaks(s.new_month)} "
            f"| {s.lake_mb:,.0f} | {s.step_logs_mb:,.2f} | {s.warehouse_mb:,.1f} "
            f"| {_rest(s.backfill)} | {_rest(s.new_month)} |"
        )
    return "\n".join(lines)


def through_workers(
    work: Path, home: Path, history: list[str], steps: list[int], rows: int, alone: list[Step]
) -> list[WorkersStep]:
    """The one-machine run's files again, step by step, through two workers."""
    done: list[WorkersStep] = []
    with cluster(work / "workers") as found:
        peaks = Peaks(found.roles)
        try:
            sent = 0
            for months in steps:
                files = send(home, history[sent:months], rows)  # made already: the same files
                backfill = phase(found, peaks, files, CONTRACT, months)
                one = phase(found, peaks, send(home, [history[months]], rows), CONTRACT,
                            months + 1)  # fmt: skip
                sent = months + 1
                lake_mb, logs_mb = found.lake_mb()
                done.append(
                    WorkersStep(months, len(files) * rows, backfill, one, lake_mb, logs_mb,
                                size_mb(found.home / "warehouse.duckdb"))
                )  # fmt: skip
                print(workers_table(done, alone[: len(done)]), flush=True)
        finally:
            peaks.close()
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=90_000, help="rows per month")
    parser.add_argument("--steps", default="12,48,93", help="months of history, in steps")
    parser.add_argument("--keep", action="store_true", help="keep the home (printed)")
    parser.add_argument(
        "--workers", action="store_true", help="then the same history through two workers"
    )
    args = parser.parse_args()
    steps = sorted(int(n) for n in args.steps.split(","))
    # The history ends the month before LAST; each step's new month is the one after it.
    history = months_to(LAST, steps[-1] + 1)

    work = Path(tempfile.mkdtemp(prefix="datashare-scale-"))
    home = work / "home"
    print(f"Machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at start; in {work}")
    done: list[Step] = []
    sent = 0
    try:
        for months in steps:
            new = send(home, history[sent:months], args.rows)
            copy_dir = work / f"copy-{months}"
            copy_dir.mkdir()
            duck = duckdb_copy(new, copy_dir)
            shutil.rmtree(copy_dir)
            backfill = run(home, "run")
            send(home, [history[months]], args.rows)
            one = run(home, "run")
            sent = months + 1
            done.append(
                Step(
                    months=months,
                    rows=len(new) * args.rows,
                    backfill=backfill,
                    duckdb=duck,
                    new_month=one,
                    lake_mb=size_mb(home / "lake"),
                    warehouse_mb=size_mb(home / "warehouse.duckdb"),
                )
            )
            print(table(done), flush=True)
        if args.workers:
            workers = through_workers(work, home, history, steps, args.rows, done)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work}")
    print(
        f"\nScale, {CONTRACT}, {args.rows:,} rows a month, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load {os.getloadavg()[0]:.2f} at the end:"
    )
    print(table(done))
    if args.workers:
        print(f"\nThe same, through two workers (daemon's sensor every {SENSOR} s):")
        print(workers_table(workers, done))


if __name__ == "__main__":
    main()
