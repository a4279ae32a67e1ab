"""Validation benchmark: the pipeline's validate-and-publish against three references.

    .venv/bin/python benchmarks/validation_benchmark.py [--rows 1000000 5000000]
        [--workdir DIR] [--skip-pandas] [--repeat N] [--profile-rows N | --no-profile]

For each row count it writes (once, cached in the work folder by rows, seed and defect
rate) a synthetic stop-and-search delivery with `pipelines.demo.synthetic.write_delivery`, then
runs, each in its own fresh Python process:

- `duckdb_copy`: DuckDB's own CSV-to-Parquet copy of the file, all text, no checks: the
  physical limit on this machine;
- `pipeline`: `validate_delivery` on the stop_and_search contract into a temporary lake,
  then publishing (the staged file renamed over the curated month);
- `pandera_pandas`: the whole file read by `pandas.read_csv(dtype=str)`, a pandera pandas
  `DataFrameSchema` with the same checks built from the contract, `lazy=True`, failing rows
  split off by the failure cases' index, passing rows written to Parquet (as text);
- `gx_pandas`: the same frame through great-expectations 1.x (ephemeral context, pandas
  data source, one expectation per check, a validation definition run with the COMPLETE
  result format), failing rows split off by each expectation's `unexpected_index_list`.

Every approach reports how many rows it found failing a quarantining rule (rules the
contract marks `keep` are checked but keep their rows): the three checking approaches must
agree, and a file with defects must yield more than zero (great-expectations can report
failure with empty index lists, which would pass every row; see DESIGN.md).

Wall time is the work alone (after imports). Peak memory is the child's own high-water
resident set (`VmHWM` in /proc/self/status, per address space), not `getrusage`: a child's
`ru_maxrss` can include the parent's size when it was started (Linux carries the high-water
mark across exec), and `RUSAGE_CHILDREN` is the maximum over every child reaped so far, so
it would show the biggest earlier approach for all later ones.

Finally the pipeline is run once more at `--profile-rows` under a sampling profiler that
charges wall time to the statements of `pipelines/validation/row_validation.py` (including what
they call), grouped into CSV reading (in the main thread, the wait for the read-ahead
thread), duplicate-key pre-pass, row checks and typing (one polars query per batch),
failure-case processing, writing Parquet (handing tables to the writer thread, waiting when
it is behind), and other. Only the standard library
is needed; pyinstrument or cProfile give more detail, but their hooks slow pure-Python
code several times over and so misstate its share.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "stop_and_search"
PERIOD = "2024-07"
APPROACHES = ("duckdb_copy", "pipeline", "pandera_pandas", "gx_pandas")
PANDAS_APPROACHES = ("pandera_pandas", "gx_pandas")
TIME_TARGET = 1.5  # validate-and-publish within 1.5x of DuckDB's own copy
MEMORY_TARGET_MB = 1024  # peak resident memory under 1 GB
FLAT_TOLERANCE = 0.10  # "the same at 5M as at 1M": within 10%
RESULT_PREFIX = "BENCHMARK-RESULT "


# --- parent: generate, run each approach in a child, report ------------------------------


@dataclass
class Run:
    approach: str
    rows: int
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_mb: float | None = None
    failed_rows: int | None = None
    passed_rows: int | None = None
    note: str = ""


def _child(args: list[str], log: Path, timeout: float) -> dict | None:
    """Run this script as a child; return its result dict, or None (the log says why)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), GX_ANALYTICS_ENABLED="False")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n(killed after {timeout:.0f} s)\n")
            return None
    text = log.read_text(errors="replace")
    results = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not results:
        return None
    return json.loads(results[-1][len(RESULT_PREFIX) :])


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def delivery_path(workdir: Path, rows: int, seed: int, defect_rate: float) -> Path:
    return workdir / f"{CONTRACT}-{rows}rows-seed{seed}-defects{defect_rate:g}.csv"


def ensure_delivery(workdir: Path, rows: int, seed: int, defect_rate: float) -> Path:
    path = delivery_path(workdir, rows, seed, defect_rate)
    if path.exists():
        print(f"using cached {path} ({path.stat().st_size / 1e6:,.0f} MB)", file=sys.stderr)
        return path
    print(f"writing {path} ({rows:,} rows) ...", file=sys.stderr, flush=True)
    log = workdir / f"generate-{rows}.log"
    args = ["generate", str(path), str(rows), str(seed), str(defect_rate)]
    if _child(args, log, timeout=3600) is None or not path.exists():
        raise SystemExit(f"could not write {path}:\n{_tail(log)}")
    return path


def _warm(path: Path) -> None:
    """Read the file once so that no approach pays for a cold page cache."""
    with open(path, "rb") as fh:
        while fh.read(64 << 20):
            pass


def run_approach(
    approach: str, csv: Path, rows: int, workdir: Path, repeat: int, timeout: float
) -> Run:
    run = Run(approach, rows)
    for attempt in range(repeat):
        out = workdir / "out" / f"{approach}-{rows}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log = workdir / f"{approach}-{rows}.log"
        print(f"  {approach} at {rows:,} rows (run {attempt + 1}/{repeat}) ...", file=sys.stderr)
        result = _child([approach, str(csv), str(out)], log, timeout)
        shutil.rmtree(out, ignore_errors=True)
        if result is None:
            run.note = f"failed or timed out; see {log}"
            print(_tail(log), file=sys.stderr)
            return run
        run.wall_s = min(run.wall_s or float("inf"), result["wall_s"])
        run.cpu_s = min(run.cpu_s or float("inf"), result.get("cpu_s") or float("inf"))
        run.peak_mb = max(run.peak_mb or 0.0, result["peak_mb"])
        run.failed_rows, run.passed_rows = result["failed_rows"], result["passed_rows"]
        run.note = result.get("note", "")
    return run


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(runs: list[Run]) -> str:
    lines = [
        "| approach | rows | wall s | CPU s | peak RSS MB | time vs DuckDB copy "
        "| CPU vs DuckDB copy | memory vs DuckDB copy | rows failing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r.rows: r for r in runs if r.approach == "duckdb_copy"}
    for r in runs:
        ref = base.get(r.rows)
        t_ratio = r.wall_s / ref.wall_s if r.wall_s and ref and ref.wall_s else None
        c_ratio = r.cpu_s / ref.cpu_s if r.cpu_s and ref and ref.cpu_s else None
        m_ratio = r.peak_mb / ref.peak_mb if r.peak_mb and ref and ref.peak_mb else None
        failed = "-" if r.approach == "duckdb_copy" else _fmt(r.failed_rows, ",")
        name = r.approach + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {name} | {r.rows:,} | {_fmt(r.wall_s, '.2f')} | {_fmt(r.cpu_s, '.2f')} "
            f"| {_fmt(r.peak_mb, ',.0f')} | {_fmt(t_ratio, '.2f')}x | {_fmt(c_ratio, '.2f')}x "
            f"| {_fmt(m_ratio, '.2f')}x | {failed} |"
        )
    return "\n".join(lines)


def verdict(runs: list[Run]) -> list[str]:
    pipe = {r.rows: r for r in runs if r.approach == "pipeline" and r.wall_s}
    copy = {r.rows: r for r in runs if r.approach == "duckdb_copy" and r.wall_s}
    if not pipe:
        return ["No verdict: the pipeline did not run."]
    out = []
    big = 5_000_000 if 5_000_000 in pipe else max(pipe)
    if big in copy:
        ratio = pipe[big].wall_s / copy[big].wall_s
        met = "MET" if ratio <= TIME_TARGET else "MISSED"
        note = "" if big == 5_000_000 else " (5M rows not run: largest run shown)"
        out.append(
            f"- Time: validate-and-publish at {big:,} rows took {pipe[big].wall_s:.2f} s, "
            f"{ratio:.2f}x DuckDB's own copy ({copy[big].wall_s:.2f} s); target at most "
            f"{TIME_TARGET}x: **{met}**{note}."
        )
    peaks = sorted((rows, r.peak_mb) for rows, r in pipe.items())
    worst = max(p for _, p in peaks)
    listed = ", ".join(f"{p:,.0f} MB at {rows:,} rows" for rows, p in peaks)
    met = "MET" if worst < MEMORY_TARGET_MB else "MISSED"
    out.append(f"- Memory: peak {listed}; target under {MEMORY_TARGET_MB} MB: **{met}**.")
    if len(peaks) > 1:
        small, large = peaks[0], peaks[-1]
        growth = large[1] / small[1] - 1
        flat = "MET" if growth <= FLAT_TOLERANCE else "MISSED"
        out.append(
            f"- Flat memory: {large[0]:,} rows peaks {growth:+.0%} against {small[0]:,} rows; "
            f"target the same (within {FLAT_TOLERANCE:.0%}): **{flat}**."
        )
    for rows, p in pipe.items():
        others = {
            r.approach: r.failed_rows
            for r in runs
            if r.rows == rows and r.approach in PANDAS_APPROACHES and r.failed_rows is not None
        }
        disagree = {a: n for a, n in others.items() if n != p.failed_rows}
        if others and not disagree:
            out.append(
                f"- Check: at {rows:,} rows every checking approach found the same "
                f"{p.failed_rows:,} failing rows."
            )
        if disagree:
            out.append(
                f"- Check: at {rows:,} rows the pipeline quarantined {p.failed_rows:,} rows but "
                + ", ".join(f"{a} found {n:,}" for a, n in disagree.items())
                + ": the approaches do not check the same things."
            )
    return out


def print_profile(profile: dict, unprofiled_s: float | None) -> None:
    rows, total = profile["rows"], profile["total_s"]
    plain = f"; the unprofiled run above took {unprofiled_s:.2f} s" if unprofiled_s else ""
    print(f"\n## Where the pipeline's time goes at {rows:,} rows\n")
    print(f"validate-and-publish while sampled: {total:.2f} s{plain}.\n")
    print("| part | s | share |\n|---|---:|---:|")
    for name, seconds in profile["groups"]:
        print(f"| {name} | {seconds:.2f} | {seconds / total:.0%} |")
    if not profile["unique_keys"]:
        print(
            f"\n(The {CONTRACT} contract declares no unique key, so the duplicate-key "
            "pre-pass does not run.)"
        )
    print(
        "\nCostliest statements in pipelines/validation/row_validation.py"
        " (including what they call):\n"
    )
    for line, seconds, text in profile["top"]:
        print(f"    {seconds:6.2f} s  row_validation.py:{line:<4} {text}")


def parent(args: argparse.Namespace) -> None:
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    skipped: list[str] = []
    load_before = os.getloadavg()[:1]
    for rows in args.rows:
        csv = ensure_delivery(workdir, rows, args.seed, args.defect_rate)
        _warm(csv)
        for approach in APPROACHES:
            if approach in PANDAS_APPROACHES and (args.skip_pandas or rows > args.pandas_max_rows):
                skipped.append(f"{approach} at {rows:,} rows")
                continue
            runs.append(run_approach(approach, csv, rows, workdir, args.repeat, args.timeout))
    profile = None
    if not args.no_profile:
        csv = ensure_delivery(workdir, args.profile_rows, args.seed, args.defect_rate)
        _warm(csv)
        out = workdir / "out" / "profile"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log = workdir / "profile.log"
        print(f"  profiling the pipeline at {args.profile_rows:,} rows ...", file=sys.stderr)
        profile = _child(["profile", str(csv), str(out)], log, args.timeout)
        shutil.rmtree(out, ignore_errors=True)
        if profile is None:
            print(f"profile failed:\n{_tail(log)}", file=sys.stderr)

    load = ", ".join(f"{x:.1f}" for x in (*load_before, *os.getloadavg()))
    print(
        f"\n## Validation benchmark: {CONTRACT}, {os.cpu_count()} cores, "
        f"defect rate {args.defect_rate:g}, best of {args.repeat}\n\n"
        f"(1-minute load average before and after, then 5- and 15-minute at the end: {load}; "
        "other work on the machine slows every approach.)\n"
    )
    print(markdown_table(runs))
    if skipped:
        why = (
            "--skip-pandas"
            if args.skip_pandas
            else f"over --pandas-max-rows {args.pandas_max_rows:,}"
        )
        print(f"\n(Not run, {why}: {'; '.join(skipped)}.)")
    print("\n" + "\n".join(verdict(runs)))
    if profile:
        unprofiled = next(
            (r.wall_s for r in runs if r.approach == "pipeline" and r.rows == profile["rows"]),
            None,
        )
        print_profile(profile, unprofiled)


# --- children ----------------------------------------------------------------------------


def _peak_mb() -> float:
    """This process's own high-water resident set size, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: ru_maxrss is in KB here too, on every other Unix in bytes

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_CPU_BEGAN = [0.0]


def _began() -> float:
    """Mark the start of a child's work: its wall clock, returned, and its CPU clock."""
    _CPU_BEGAN[0] = time.process_time()
    return time.perf_counter()


def _report(wall_s: float, failed: int | None, passed: int | None, note: str = "") -> None:
    # CPU seconds of every thread of the process since `_began`: on a machine shared with
    # other runs, wall seconds swing by half or more and CPU seconds far less.
    result = dict(
        wall_s=wall_s,
        cpu_s=time.process_time() - _CPU_BEGAN[0],
        peak_mb=_peak_mb(),
        failed_rows=failed,
        passed_rows=passed,
        note=note,
    )
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def child_generate(path: str, rows: str, seed: str, defect_rate: str) -> None:
    from pipelines.demo.synthetic import write_delivery
    from schemas.contract import load_contracts

    contract = load_contracts()[CONTRACT]
    began = _began()
    write_delivery(contract, PERIOD, Path(path), int(rows), int(seed), float(defect_rate))
    _report(time.perf_counter() - began, None, None)


def child_duckdb_copy(csv: Path, out: Path) -> None:
    import duckdb

    target = out / "copy.parquet"
    con = duckdb.connect()
    began = _began()
    con.execute("SET preserve_insertion_order=false")
    source, dest = (str(p).replace("'", "''") for p in (csv, target))
    copied = con.execute(
        f"COPY (SELECT * FROM read_csv('{source}', all_varchar=true)) "
        f"TO '{dest}' (FORMAT parquet, COMPRESSION zstd)"
    ).fetchall()  # consume the result: DuckDB 2.0 blocks the next query on an unread one
    wall = time.perf_counter() - began
    con.close()
    _report(wall, 0, int(copied[0][0]))


def _delivery_id(csv: Path) -> str:
    return hashlib.sha256(csv.name.encode()).hexdigest()


def _validate_and_publish(csv: Path, out: Path):
    """The pipeline: validate into a lake, then swap the staged file in as the month."""
    from pipelines.lake.store import open_lake
    from pipelines.validation.row_validation import validate_delivery
    from schemas.contract import load_contracts

    contract = load_contracts()[CONTRACT]
    lake = open_lake(out / "lake")
    delivery_id = _delivery_id(csv)

    def run():
        outcome = validate_delivery(contract, csv, PERIOD, delivery_id, lake)
        staged = lake.staging_path(contract.name, PERIOD, delivery_id)
        lake.promote(staged, lake.curated_path(contract.name, PERIOD))  # as publishing does
        return outcome

    return contract, run


def child_pipeline(csv: Path, out: Path) -> None:
    _, run = _validate_and_publish(csv, out)
    began = _began()
    outcome = run()
    wall = time.perf_counter() - began
    _report(wall, outcome.rows_quarantined, outcome.rows_curated)


@dataclass(frozen=True)
class PandasRule:
    """One row check, named as the engine names it, in a form pandas libraries can run."""

    id: str
    source: str  # the delivered column
    kind: str  # required, shape, timestamp, in_set, range, in_period
    arg: object = None


def pandas_rules(contract, period: str) -> tuple[list[PandasRule], set[str]]:
    """The contract's row checks as the engine compiles them, and the quarantining ids.

    Only the kinds of check stop_and_search uses are translated; anything else stops the
    benchmark rather than comparing approaches that check different things.
    """
    from schemas.row_checks import (
        _INTEGER_SHAPE,
        _NUMBER_SHAPE,
        PERIOD_MONTHS,
        compile_row_checks,
        format_shape,
        period_bounds,
    )

    if contract.unique_keys or contract.cross_rules or contract.layout:
        raise SystemExit(
            f"{contract.name}: unique keys, cross rules and wide layouts are not ported"
        )
    _, engine_rules = compile_row_checks(contract, period)
    quarantining = {r.id for r in engine_rules if r.on_failure == "quarantine"}
    start, end = period_bounds(period, PERIOD_MONTHS[contract.schedule.period])
    rules: list[PandasRule] = []
    for col in contract.columns:
        src = col.source_name
        if col.required:
            rules.append(PandasRule(f"{col.name}.required", src, "required"))
        match col.logical_type:
            case "string":
                pass
            case "number":
                rules.append(PandasRule(f"{col.name}.type", src, "shape", _NUMBER_SHAPE))
            case "integer":
                rules.append(PandasRule(f"{col.name}.type", src, "shape", _INTEGER_SHAPE))
            case "boolean":
                rules.append(PandasRule(f"{col.name}.type", src, "in_set", ("True", "False")))
            case "timestamp" if "z" in (col.timestamp_format or ""):
                fmt = col.timestamp_format.replace("%:z", "%z")  # Python's %z takes +00:00
                shape = format_shape(col.timestamp_format)
                rules.append(PandasRule(f"{col.name}.type", src, "shape", shape))
                rules.append(PandasRule(f"{col.name}.type", src, "timestamp", fmt))
            case other:
                raise SystemExit(f"{contract.name}.{col.name}: {other} columns are not ported")
        if col.minimum is not None or col.maximum is not None:
            low = col.minimum if col.minimum is not None else float("-inf")
            high = col.maximum if col.maximum is not None else float("inf")
            rules.append(PandasRule(f"{col.name}.range", src, "range", (low, high)))
        if col.pattern:
            rules.append(PandasRule(f"{col.name}.pattern", src, "shape", col.pattern))
        for vr in col.value_rules:
            rules.append(PandasRule(vr.name, src, "in_set", tuple(vr.valid_values)))
        if col.in_period_rule is not None:
            fmt = col.timestamp_format.replace("%:z", "%z")
            rules.append(PandasRule(col.in_period_rule.name, src, "in_period", (fmt, start, end)))
    missing = {r.id for r in engine_rules} - {r.id for r in rules}
    if missing:
        raise SystemExit(f"rules not ported to pandas: {sorted(missing)}")
    return rules, quarantining


def _read_pandas(csv: Path):
    import pandas as pd

    # All text; only an empty cell is blank ("NA" is a value), as in the pipeline.
    return pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])


def _write_split(frame, failing_index, out: Path) -> tuple[int, int]:
    import numpy as np

    bad = np.zeros(len(frame), dtype=bool)
    bad[np.fromiter(failing_index, dtype=np.int64)] = True
    frame[~bad].to_parquet(out / "passing.parquet", compression="zstd", index=False)
    frame[bad].to_parquet(out / "failing.parquet", compression="zstd", index=False)
    return int(bad.sum()), int((~bad).sum())


def child_pandera_pandas(csv: Path, out: Path) -> None:
    import pandas as pd
    import pandera.pandas as pa

    from schemas.contract import load_contracts

    contract = load_contracts()[CONTRACT]
    rules, quarantining = pandas_rules(contract, PERIOD)

    def check(rule: PandasRule):
        match rule.kind:
            case "shape":
                return lambda s, p=rule.arg: s.str.fullmatch(p)
            case "timestamp":
                return lambda s, f=rule.arg: pd.to_datetime(
                    s, format=f, errors="coerce", utc=True
                ).notna()
            case "in_set":
                return lambda s, v=list(rule.arg): s.isin(v)
            case "range":
                low, high = rule.arg

                def within_range(s):  # not `in_range`: pandera would call its own check
                    number = pd.to_numeric(s, errors="coerce")
                    return number.between(low, high) | number.isna()

                return within_range

        fmt, start, end = rule.arg

        def within_period(s):
            when = pd.to_datetime(s, format=fmt, errors="coerce", utc=True)
            return when.between(pd.Timestamp(start), pd.Timestamp(end), inclusive="left") | (
                when.isna()
            )

        return within_period

    required = {r.source: r.id for r in rules if r.kind == "required"}
    columns = {}
    for col in contract.columns:
        src = col.source_name
        checks = [
            pa.Check(check(r), name=r.id) for r in rules if r.source == src and r.kind != "required"
        ]
        columns[src] = pa.Column(str, nullable=src not in required, checks=checks)
    schema = pa.DataFrameSchema(columns, strict=False, ordered=False)

    began = _began()
    frame = _read_pandas(csv)
    failing: set[int] = set()
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        broken = cases[cases["index"].isna()]
        if len(broken):  # a check that raised, or a schema-level error: no row to split
            raise SystemExit(f"pandera could not run every check:\n{broken}") from err
        rule = cases["check"].where(cases["check"] != "not_nullable", cases["column"].map(required))
        failing = set(cases.loc[rule.isin(quarantining), "index"].astype("int64"))
    failed, passed = _write_split(frame, failing, out)
    _report(time.perf_counter() - began, failed, passed)


def child_gx_pandas(csv: Path, out: Path) -> None:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from schemas.contract import load_contracts

    contract = load_contracts()[CONTRACT]
    rules, quarantining = pandas_rules(contract, PERIOD)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("bench").add_dataframe_asset(CONTRACT)
    batch = asset.add_batch_definition_whole_dataframe("whole delivery")
    suite = context.suites.add(gx.ExpectationSuite(name=CONTRACT))
    derived: dict[str, tuple[str, str, object]] = {}  # typed twin column -> how to make it
    for rule in rules:
        meta = {"rule": rule.id}
        column = rule.source
        match rule.kind:
            case "required":
                expectation = gx.expectations.ExpectColumnValuesToNotBeNull(column=column)
            case "shape":
                expectation = gx.expectations.ExpectColumnValuesToMatchRegex(
                    column=column, regex=f"^(?:{rule.arg})$"
                )
            case "timestamp":
                expectation = gx.expectations.ExpectColumnValuesToMatchStrftimeFormat(
                    column=column, strftime_format=rule.arg
                )
            case "in_set":
                expectation = gx.expectations.ExpectColumnValuesToBeInSet(
                    column=column, value_set=list(rule.arg)
                )
            case "range":
                twin = f"{column} (number)"
                derived[twin] = (column, "number", None)
                low, high = rule.arg
                expectation = gx.expectations.ExpectColumnValuesToBeBetween(
                    column=twin, min_value=low, max_value=high
                )
            case "in_period":
                fmt, start, end = rule.arg
                twin = f"{column} (UTC)"
                derived[twin] = (column, "timestamp", fmt)
                expectation = gx.expectations.ExpectColumnValuesToBeBetween(
                    column=twin, min_value=start, max_value=end, strict_max=True
                )
        expectation.meta = meta
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="delivery", data=batch, suite=suite)
    )

    began = _began()
    frame = _read_pandas(csv)
    checked = frame.copy(deep=False)
    for twin, (column, kind, fmt) in derived.items():
        if kind == "number":
            checked[twin] = pd.to_numeric(checked[column], errors="coerce")
        else:
            checked[twin] = pd.to_datetime(checked[column], format=fmt, errors="coerce", utc=True)
    result = definition.run(
        batch_parameters={"dataframe": checked}, result_format={"result_format": "COMPLETE"}
    )
    failing: set[int] = set()
    for item in result.results:
        if item.exception_info.get("raised_exception"):
            raise SystemExit(f"{item.expectation_config.type}: {item.exception_info}")
        indexes = item.result.get("unexpected_index_list") or []
        if len(indexes) != item.result.get("unexpected_count", 0):
            raise SystemExit(
                f"{item.expectation_config.type} on {item.expectation_config.kwargs['column']}: "
                f"{item.result.get('unexpected_count')} unexpected but {len(indexes)} indexes: "
                "a split on these results would pass failing rows"
            )
        if item.expectation_config.meta["rule"] in quarantining:
            failing.update(int(i) for i in indexes)
    del checked
    failed, passed = _write_split(frame, failing, out)
    note = "" if failed or "defects0" in csv.name else "NO failing rows found: result not computed?"
    _report(time.perf_counter() - began, failed, passed, note)


# --- the profile ---------------------------------------------------------------------------

READING = "CSV reading (header and encoding pass, waiting for the read-ahead thread)"
NUMBERING = "  of which source-row numbering (_SourceRowNumbers.take)"
DUPLICATES = "duplicate-key pre-pass"
CHECKS = "row checks, typing and profile counts (one polars call per batch: judged_columns)"
FAILURES = "failure-case processing (failure cases, tallies, split, quarantine rows)"
WRITING = "writing Parquet (to_arrow, the background writer, ParquetWriter)"
OTHER = "other (breaches, setup, publish)"
GROUPS = (READING, DUPLICATES, CHECKS, FAILURES, WRITING, OTHER)

_WRITING_WORDS = re.compile(
    r"\b(curated|curated_writer|background|BackgroundWriter|ExitStack|ParquetWriter)\b"
)
_FAILURE_WORDS = re.compile(
    r"\b(failing_counts|tallies|tallied|tally|verdict|is_quarantined|kept|kept_rows|rest|failing|quarantined|"
    r"quarantine_writer|broken)\b"
)


def _category(function: str, text: str) -> str:
    if function == "_duplicate_keys" or "_duplicate_keys(" in text:
        return DUPLICATES
    if re.search(r"\bjudged(_with|_columns)?\(", text):
        return CHECKS
    if function == "take" or ".take(" in text:
        return NUMBERING
    if function in ("_batches", "read_header", "_open_delivery", "_open_text"):
        return READING
    if function == "validate_delivery":
        if re.search(r"\b(_batches|read_header)\(", text):
            return READING
        if _WRITING_WORDS.search(text):
            return WRITING
        if _FAILURE_WORDS.search(text):
            return FAILURES
    return OTHER


def statement_lines(module) -> dict[int, tuple[str, str]]:
    """Each source line of `module` -> (enclosing function, text of its statement).

    Compound statements (for, with, if, try) own only their header lines.
    """
    source = inspect.getsource(module)
    lines = source.splitlines()
    owner: dict[int, tuple[str, str]] = {}
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.stmt) or node is func:
                continue
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                last = body[0].lineno - 1
            else:
                last = node.end_lineno or node.lineno
            text = " ".join(line.strip() for line in lines[node.lineno - 1 : last])
            for number in range(node.lineno, last + 1):
                owner[number] = (func.name, text)
    return owner


class LineSampler:
    """Wall time per source line of one module, sampled from a background thread.

    Every two milliseconds or so the thread looks at the main thread's stack, finds the
    innermost frame of the module and charges the time since the last look to that frame's
    current line; so a line's time includes what it calls. Native code that releases the
    GIL (polars, pyarrow) is sampled while it runs; code that holds the GIL is charged,
    a few milliseconds late, to where the main thread is when it lets go. Unlike a
    trace or profile hook (cProfile, sys.settrace) this does not slow down every Python
    instruction, which inflates pure-Python loops three- to fourfold on Python 3.11.
    """

    def __init__(self, module, interval: float = 0.002) -> None:
        self.filename = module.__file__
        self.interval = interval
        self.spent: dict[int, float] = defaultdict(float)
        self.outside = 0.0  # time with no frame of the module on the stack
        self._stop = threading.Event()
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._target)
            now = time.perf_counter()
            elapsed, last = now - last, now
            while frame is not None and frame.f_code.co_filename != self.filename:
                frame = frame.f_back
            if frame is None:
                self.outside += elapsed
            else:
                self.spent[frame.f_lineno] += elapsed

    def __enter__(self) -> LineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def child_profile(csv: Path, out: Path) -> None:
    from pipelines.validation import row_validation

    contract, run = _validate_and_publish(csv, out)
    owner = statement_lines(row_validation)
    sampler = LineSampler(row_validation)
    began = _began()
    with sampler:
        outcome = run()
    total = time.perf_counter() - began

    groups: dict[str, float] = defaultdict(float)
    for line, seconds in sampler.spent.items():
        function, text = owner.get(line, ("?", ""))
        groups[_category(function, text)] += seconds
    groups[OTHER] += total - sum(sampler.spent.values())  # outside row_validation: publish
    numbering = groups.pop(NUMBERING, 0.0)
    groups[READING] += numbering
    ordered = []
    for name in GROUPS:
        ordered.append((name, groups.get(name, 0.0)))
        if name == READING:
            ordered.append((NUMBERING, numbering))
    top = sorted(sampler.spent.items(), key=lambda item: -item[1])[:10]
    result = dict(
        rows=outcome.rows_delivered,
        total_s=total,
        groups=ordered,
        unique_keys=bool(contract.unique_keys),
        top=[(line, s, owner.get(line, ("?", ""))[1][:90]) for line, s in top],
        peak_mb=_peak_mb(),
    )
    print(RESULT_PREFIX + json.dumps(result), flush=True)


CHILDREN = {
    "duckdb_copy": child_duckdb_copy,
    "pipeline": child_pipeline,
    "pandera_pandas": child_pandera_pandas,
    "gx_pandas": child_gx_pandas,
    "profile": child_profile,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        kind, *rest = argv[1:]
        if kind == "generate":
            child_generate(*rest)
        else:
            CHILDREN[kind](Path(rest[0]), Path(rest[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "datashare-bench"
    )
    parser.add_argument(
        "--skip-pandas",
        action="store_true",
        help="skip pandera and great-expectations on pandas (minutes and GBs at 5M rows)",
    )
    parser.add_argument(
        "--pandas-max-rows",
        type=int,
        default=5_000_000,
        help="skip the whole-file pandas approaches above this (20M rows need over 20 GB)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defect-rate", type=float, default=0.002)
    parser.add_argument("--repeat", type=int, default=1, help="runs per approach; best is kept")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per child run")
    parser.add_argument("--profile-rows", type=int, default=1_000_000)
    parser.add_argument("--no-profile", action="store_true")
    parent(parser.parse_args(argv))


if __name__ == "__main__":
    main()
