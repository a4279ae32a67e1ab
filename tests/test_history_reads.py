"""A run's reads of the breach files do not grow with history (issue 21, the history row).

Each delivery leaves one breach file, so a lake with eight years of monthly deliveries holds
a hundred of them. A run read them all two dozen times: the late check asked every
contract's breaches twice (whether a held delivery had nothing usable in it), the
timeliness step once more, and the summary three times (late breaches before and after
the timeliness step, and the breaches of the deliveries it judged). Now the late check
reads the breach files of deliveries ever held back only (only those can have a critical
breach), the summary reads the files of the deliveries the run judged, and the late
breaches raised are counted from what the timeliness step says it raised.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.demo.synthetic import write_delivery
from pipelines.governance.delivery_schedule import UNUSABLE_RULES, delivered_periods
from pipelines.home.settings import Settings
from pipelines.lake import register as register_module
from pipelines.lake.register import Breach, DeliveryEvent, Register
from pipelines.lake.store import FolderLake
from pipelines.validation.dataset_expectations import VOLUME_HISTORY
from schemas.contract import load_contracts

CONTRACT = "stop_and_search"


class CountingLake(FolderLake):
    """A folder lake that notes every breach file it opens."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.breach_files: list[str] = []

    def parquet_file(self, key: str):
        if key.startswith("governance/breaches/"):
            self.breach_files.append(key)
        return super().parquet_file(key)


# A delivery as the register ends up holding it: its last status and, if it was judged,
# its breaches (rule, severity).
DELIVERY = st.tuples(
    st.sampled_from(["published", "held", "rejected", "superseded"]),
    st.lists(
        st.tuples(
            st.sampled_from([*UNUSABLE_RULES, "type.required", "volume.band"]),
            st.sampled_from(["critical", "major", "minor"]),
        ),
        max_size=3,
    ),
)


def _history(lake: FolderLake, months: dict[str, list[tuple[str, list]]]) -> None:
    """`months` written as runs write them: per delivery its events (received, then held or
    validated and published, ...) and its one breach file."""
    register = Register(lake)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    for period, deliveries in months.items():
        for n, (status, breaches) in enumerate(deliveries):
            delivery = f"{period}-{n}"
            # Validation holds every delivery with a critical breach; a rejected one has
            # a critical breach of its own and nothing else.
            if status != "rejected" and any(s == "critical" for _, s in breaches):
                status = "held"
            steps = {
                "published": ["received", "validated", "published"],
                "held": ["received", "held"],
                "rejected": ["received", "rejected"],
                "superseded": ["received", "validated", "published", "superseded"],
            }[status]
            for event in steps:
                at += timedelta(seconds=1)
                register.record(DeliveryEvent(CONTRACT, period, delivery, event, event_at=at))
            rows = [
                Breach(CONTRACT, "1.0.0", period, delivery, rule, "c", severity, "a", 1, 10, "d")
                for rule, severity in breaches
            ]
            register.write_breaches(CONTRACT, period, delivery, rows)


def _as_before(register: Register) -> tuple[set[str], set[str]]:
    """`delivered_periods` as it was: every breach of the contract read."""
    unusable = {
        b["delivery_id"]
        for b in register.breaches(CONTRACT)
        if b["rule"] in UNUSABLE_RULES and b["severity"] == "critical"
    }
    usable, sent = set(), set()
    for d in register.deliveries(CONTRACT).values():
        sent.add(d["period"])
        if d["event"] != "rejected" and d["delivery_id"] not in unusable:
            usable.add(d["period"])
    return usable, sent - usable


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    months=st.dictionaries(
        st.sampled_from([f"2024-{m:02d}" for m in range(1, 13)]),
        st.lists(DELIVERY, min_size=1, max_size=3),
        max_size=6,
    )
)
def test_the_late_check_reads_the_breaches_of_held_deliveries_only(tmp_path_factory, months):
    lake = CountingLake(tmp_path_factory.mktemp("lake"))
    _history(lake, months)
    register = Register(lake)
    expected = _as_before(Register(FolderLake(lake.root)))
    lake.breach_files = []

    assert delivered_periods(register, CONTRACT) == expected
    held = {e["delivery_id"] for e in register.events(CONTRACT) if e["event"] == "held"}
    assert sorted(lake.breach_files) == sorted(
        lake.breaches_path(CONTRACT, d.rsplit("-", 1)[0], d) for d in held
    )


def test_a_deliverys_breaches_are_read_from_its_own_file(tmp_path):
    lake = CountingLake(tmp_path / "lake")
    _history(
        lake,
        {f"2024-{m:02d}": [("published", [("type.required", "major")])] for m in range(1, 13)},
    )
    register = Register(lake)
    every = register.breaches(CONTRACT)
    lake.breach_files = []

    wanted = {"2024-03-0": "2024-03", "2024-07-0": "2024-07"}
    got = register.delivery_breaches(CONTRACT, wanted)
    assert got == [b for b in every if b["delivery_id"] in wanted]
    assert len(lake.breach_files) == 2
    # A delivery's file not where its period says (not so in this version) is still found.
    assert register.delivery_breaches(CONTRACT, {"2024-05-0": "2024-06"}) == [
        b for b in every if b["delivery_id"] == "2024-05-0"
    ]


def _send(settings, period: str) -> None:
    path = settings.dropzone / CONTRACT / period / f"{period}.csv"
    write_delivery(load_contracts()[CONTRACT], period, path, rows=40, seed=int(period[-2:]))


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper, not one a run
def test_the_summary_counts_the_late_breaches_this_run_raised_and_its_own_breaches(home, capsys):
    from pipelines.cli.main import main

    # January and April: February and March are missed months, late long ago.
    for period in ("2025-01", "2025-04"):
        _send(home, period)
    assert main(["run"]) in (0, 1)
    out = capsys.readouterr().out
    assert f"{CONTRACT}: no usable delivery for 2025-02, 2025-03" in out
    assert "(2 flagged by this run;" in out

    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        late = con.execute(
            "SELECT count(*) FROM governance.breaches WHERE rule = 'delivery.late'"
        ).fetchone()[0]
        judged = con.execute(
            "SELECT count(*) FROM governance.breaches WHERE rule <> 'delivery.late'"
        ).fetchone()[0]
    assert late == 2
    raised = re.search(r"breaches raised:\s+([\d,]+)", out)
    assert raised and int(raised.group(1).replace(",", "")) == judged

    # A later month: the same two are still late, flagged by the earlier run; this run's
    # breaches are its own month's only.
    _send(home, "2025-05")
    assert main(["run"]) in (0, 1)
    out = capsys.readouterr().out
    assert "(2 flagged by an earlier run;" in out and "flagged by this run" not in out
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        may = con.execute(
            "SELECT count(*) FROM governance.breaches WHERE period = '2025-05'"
        ).fetchone()[0]
    raised = re.search(r"breaches raised:\s+([\d,]+)", out)
    assert raised and int(raised.group(1).replace(",", "")) == may


class OpeningLake(FolderLake):
    """A folder lake that notes every event file it opens."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[str] = []

    def parquet_file(self, key: str):
        if key.startswith("governance/deliveries/"):
            self.opened.append(key)
        return super().parquet_file(key)


def _months_in_a_day(register: Register, months: int) -> None:
    """`months` deliveries taken within a day, as runs record them: each a write-once
    "received" record (folded only a day later) and two timed events."""
    for m in range(months):
        period = f"{2019 + m // 12}-{m % 12 + 1:02d}"
        delivery = f"d{m:03d}"
        received = DeliveryEvent(CONTRACT, period, delivery, "received")
        assert register.record_once(received, f"received-{delivery}")
        for event in ("validated", "published"):
            register.record(DeliveryEvent(CONTRACT, period, delivery, event))


def _fresh_read(lake: FolderLake) -> list[tuple]:
    """The contract's events as a new process reads them."""
    register_module._READ.clear()
    return [tuple(e.values()) for e in Register(lake).events(CONTRACT)]


@pytest.mark.parametrize("months", [12, 48])
def test_a_new_process_opens_the_fold_and_the_records_since_not_every_months(tmp_path, months):
    lake = OpeningLake(tmp_path / "lake")
    _months_in_a_day(Register(lake), months)
    every = [Path(p).name for p in (lake.root / "governance/deliveries").rglob("*.parquet")]
    assert sum(n.startswith("received-") for n in every) == months  # all still in place

    lake.opened = []
    read = _fresh_read(lake)
    # What the files hold, each event once, oldest first: read file by file, plainly.
    plain = FolderLake(lake.root)
    files = plain.glob(f"governance/deliveries/contract={CONTRACT}/*.parquet")
    rows = {
        tuple(r.values()) for f in files for r in Register(plain).lake.read_table(f).to_pylist()
    }
    assert sorted(read, key=lambda r: r[4]) == read and set(read) == rows
    # Opened: the fold (twice: its copy of the records, then its rows) and the records and
    # events written since it, at most a fold's worth (8 months of two timed events).
    assert len(lake.opened) <= 2 + 3 * 8

    # The warehouse's view of the events sees each once: the copy is not among the rows.
    with duckdb.connect() as con:
        (count,) = con.execute(
            "SELECT count(*) FROM read_parquet(?, union_by_name = true)",
            [str(lake.root / "governance/deliveries/*/*.parquet")],
        ).fetchone()
    assert count == 3 * months


def test_a_fold_without_the_copy_is_read_as_before(tmp_path):
    """A fold an earlier version wrote carries no copy of the records: each is opened."""
    lake = OpeningLake(tmp_path / "lake")
    register = Register(lake)
    _months_in_a_day(register, 12)
    (fold,) = lake.glob(f"governance/deliveries/contract={CONTRACT}/compacted-*.parquet")
    table = lake.read_table(fold)
    lake.write_table(fold, table.replace_schema_metadata({}))  # as the earlier version wrote it
    expected = _fresh_read(FolderLake(lake.root))

    lake.opened = []
    assert _fresh_read(lake) == expected
    assert sum(Path(k).name.startswith("received-") for k in lake.opened) == 12


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper, not one a run
def test_one_new_months_run_reads_as_many_register_files_at_12_months_as_at_3(
    home, monkeypatch, capsys
):
    """The run as a user starts it, one new month on top of 3 and then 12 months of
    history: the lake's files it opens (event files, breach files, the rest) and the
    listings it makes stay the same, but for where the last fold falls (at most a fold's
    worth of event files) and the volume check's window of months."""
    from pipelines.cli.main import main

    counted: list[Counter] = []

    def counting(name: str):
        real = getattr(FolderLake, name)

        def spy(self, key, *args, **kwargs):
            if counted:
                area = "/".join(str(key).split("/")[:2])
                counted[-1][f"{name} {area}"] += 1
            return real(self, key, *args, **kwargs)

        monkeypatch.setattr(FolderLake, name, spy)

    for name in ("parquet_file", "glob", "glob_below", "exists"):
        counting(name)

    def run(periods: list[str], count: bool) -> None:
        for period in periods:
            _send(home, period)
        register_module._READ.clear()  # a new process's register
        if count:
            counted.append(Counter())
        assert main(["run"]) in (0, 1)
        assert f"Ran {len(periods)} contract-month(s)" in capsys.readouterr().out
        if count:
            counted.append(Counter())  # (what comes after is not counted)

    months = [f"2024-{m:02d}" for m in range(1, 13)] + ["2025-01"]
    run(months[:3], count=False)
    run(months[3:4], count=True)
    run(months[4:12], count=False)
    run(months[12:], count=True)
    at_3, at_12 = counted[0], counted[2]

    events = "parquet_file governance/deliveries"
    assert at_3.pop(events, 0) <= 2 + 3 * 8 and at_12.pop(events, 0) <= 2 + 3 * 8
    # The volume check compares the month with the last VOLUME_HISTORY months' profiles: a
    # window by design, which a longer history no longer widens.
    profiles = "exists governance/profiles"
    assert at_3.pop(profiles, 0) <= at_12.pop(profiles, 0) <= VOLUME_HISTORY
    assert at_12 == at_3
    assert at_3["parquet_file governance/breaches"] == 1  # the new month's own


def _summary_reads(tmp_path: Path, monkeypatch, months: int) -> tuple[list[str], int, int]:
    """The run's closing summary of the warehouse (its counts) over `months` months of
    deliveries, each with its breach file: the summary's lines, how many times DuckDB
    opened a breach file meanwhile, and how many times one look over them (every breach
    record, read once from its view) opens them."""
    from pipelines.orchestration import pending_runs, run_summary
    from pipelines.warehouse.catalog import build_warehouse, connect

    contracts = load_contracts()
    lake = FolderLake(tmp_path / "lake")
    _history(
        lake,
        {
            f"{2019 + m // 12}-{m % 12 + 1:02d}": [
                ("published", [("type.required", "major"), ("volume.band", "minor")])
            ]
            for m in range(months)
        },
    )
    warehouse = build_warehouse(lake, contracts, tmp_path / "warehouse.duckdb")
    settings = Settings(tmp_path, tmp_path / "dropzone", lake.root, warehouse, tmp_path / "dg")
    opened: list[int] = []

    def breach_opens(con: duckdb.DuckDBPyConnection) -> int:
        ((n,),) = con.execute(
            "SELECT count(*) FROM duckdb_logs WHERE type = 'FileSystem' "
            "AND message LIKE '%governance/breaches/%' AND message LIKE '%\"op\":\"OPEN\"%'"
        ).fetchall()
        return n

    class Logged:
        """The summary's DuckDB, counting the breach files it opens before it closes."""

        def __init__(self) -> None:
            self.con = duckdb.connect()
            self.con.execute("CALL enable_logging('FileSystem')")

        def __getattr__(self, name: str):
            return getattr(self.con, name)

        def close(self) -> None:
            opened.append(breach_opens(self.con))
            self.con.close()

    monkeypatch.setattr(run_summary, "duckdb", SimpleNamespace(connect=Logged))
    lines = pending_runs.RunReport(settings, contracts)._warehouse_counts()
    assert len(lake.glob("governance/breaches/contract=*/*/*.parquet")) == months
    with connect(warehouse) as con:
        con.execute("CALL enable_logging('FileSystem')")
        con.execute("SELECT * FROM governance.breach_records").fetchall()
        opened.append(breach_opens(con))
    return lines, opened[0], opened[1]


def test_the_summary_reads_each_breach_file_once_and_counts_as_the_warehouse(tmp_path, monkeypatch):
    """The closing summary's counts are the warehouse's views' own, and to count them it
    opens each breach file (one per delivery, so one per month of history) as often as one
    look over them does: 9 months more history cost it no more opens than they cost that
    look. The breach register's view, queried in the warehouse, read each file some ten
    times (issue 21, history row: +0.3 s at 94 months; on the old code 43 opens at 3
    months and 151 at 12, where one look is 7 and 25)."""
    from pipelines.warehouse.catalog import connect

    reads = {}
    for months in (3, 12):
        lines, opened, one_look = _summary_reads(tmp_path / str(months), monkeypatch, months)
        reads[months] = (opened, one_look)
        with connect(tmp_path / str(months) / "warehouse.duckdb") as con:
            expected = {
                table: con.execute(f"SELECT count(*) FROM governance.{table}").fetchall()[0][0]
                for table in ("deliveries", "quarantine", "breaches")
            }
            ((open_, critical),) = con.execute(
                "SELECT count(*) FILTER (WHERE status IN ('open', 'notified', 'acknowledged')), "
                "count(*) FILTER (WHERE status IN ('open', 'notified', 'acknowledged') "
                "AND severity = 'critical') FROM governance.breach_register"
            ).fetchall()
        assert expected["breaches"] == 2 * months and open_ == 2 * months
        for table, n in expected.items():
            assert f"  governance.{table}: {n:,} rows" in lines
        assert f"  open breaches:      {open_:,} ({critical:,} critical)" in lines
    (short, short_look), (long, long_look) = reads[3], reads[12]
    assert long - short <= long_look - short_look, reads


class ListingLake(FolderLake):
    """A folder lake that notes every listing of a contract's event folder."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []

    def glob(self, pattern: str) -> list[str]:
        if pattern.startswith("governance/deliveries/"):
            self.listed.append(pattern)
        return super().glob(pattern)


def test_the_late_check_lists_a_contracts_events_once_per_check(tmp_path):
    """The late check of a contract (the timeliness step's, and the run's own, twice a run)
    reads its events once: one read, listed twice to be sure no fold tore it. It read them
    three times (for what was delivered, what was usable, and since when it is watched),
    and a contract's folder holds a file per month sent within the day (issue 21, history
    row: ~90 files at 94 months, a listing of them each time)."""
    from pipelines.governance.delivery_schedule import check_schedule

    lake = ListingLake(tmp_path / "lake")
    _history(lake, {f"2024-{m:02d}": [("published", [])] for m in range(1, 13)})
    register_module._READ.clear()  # a new process's register
    contract = load_contracts()[CONTRACT]
    lake.listed = []
    report = check_schedule(contract, lake, Register(lake), today=datetime(2025, 6, 1).date())
    assert lake.listed == [f"governance/deliveries/contract={CONTRACT}/*.parquet"] * 2
    # What it finds is what reading the events three times found: 2025-01 on, late.
    assert [p.period for p in report.late][:1] == ["2025-01"]
    assert report.watched_from == "2024-01"
