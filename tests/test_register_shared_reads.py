"""The register as a run reads it while it holds a month's lease (issue 21).

A run asks the register about its contract a dozen times a month, and each ask listed the
contract's folder twice (once to read, once to make sure no fold tore the listing): a
37-month backfill made 1,080 listings of some 50 files each. While this process holds a
lease on one of the contract's months no other run changes what it works on, so the
contract's reads share one listing made after the lease was taken, kept up with this
process's own writes (never read back). Taking a lease again lists again, so what the run
before wrote is read; without a lease every read lists, as before. What any read returns
stays what the files hold, in the same order.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.lake.leases import month_lease
from pipelines.lake.register import DELIVERY_EVENT_SCHEMA, DeliveryEvent, Register, rows_of
from pipelines.lake.store import FolderLake

FOLDER = "governance/deliveries/contract=a/"


class CountingLake(FolderLake):
    """A folder lake that counts the listings of contract `a`'s events and the files read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listings = 0
        self.read: list[str] = []

    def glob(self, pattern: str) -> list[str]:
        self.listings += pattern.startswith(FOLDER)
        return super().glob(pattern)

    def read_all(self, keys: list[str], schema: pa.Schema) -> pa.Table:
        self.read += keys
        return super().read_all(keys, schema)


def _in_the_files(lake: FolderLake) -> list[tuple]:
    """Contract `a`'s events as a new process reads them: every file, each event once,
    oldest first."""
    files = FolderLake.glob(lake, f"{FOLDER}*.parquet")
    rows = rows_of(FolderLake.read_all(lake, files, DELIVERY_EVENT_SCHEMA))
    distinct = list(dict.fromkeys(tuple(r.values()) for r in rows))
    at = list(DELIVERY_EVENT_SCHEMA.names).index("event_at")
    return sorted(distinct, key=lambda r: r[at])


def _read(register: Register) -> list[tuple]:
    return [tuple(e.values()) for e in register.events("a")]


def _another_runs_event(lake: FolderLake, delivery_id: str) -> None:
    """An event file as another process's `Register.record` writes it (this process's
    reads are not told of it)."""
    event = DeliveryEvent("a", "2024-02", delivery_id, "validated")
    name = f"{event.event_at:%Y%m%dT%H%M%S%f}-{delivery_id}-validated-{uuid.uuid4().hex[:6]}"
    row = {**event.__dict__, "event_at": datetime.now(UTC)}
    lake.write_table(f"{FOLDER}{name}.parquet", pa.Table.from_pylist([row], DELIVERY_EVENT_SCHEMA))


def test_a_run_holding_a_month_lists_its_contract_once_and_reads_back_nothing_it_wrote(
    tmp_path,
):
    lake = CountingLake(tmp_path / "lake")
    register = Register(lake)
    for i in range(5):  # what earlier runs recorded
        register.record(DeliveryEvent("a", "2024-01", f"old{i}", "validated"))
    for i in range(2):
        _another_runs_event(lake, f"other{i}")
    lake.listings, lake.read = 0, []

    with month_lease(lake, "a", "2024-03"):
        for i in range(4):  # the month's asks, between its own records
            assert _read(register) == _in_the_files(lake)
            register.deliveries("a")
            assert register.record_once(
                DeliveryEvent("a", "2024-03", f"new{i}", "received"), f"received-new{i}"
            )
            register.record(DeliveryEvent("a", "2024-03", f"new{i}", "validated"))
        assert _read(register) == _in_the_files(lake)
        # One listing and its check, for 13 asks and 12 writes (before: two per ask, 26).
        assert lake.listings == 2
        # What the earlier runs wrote, read once; none of this run's 8 files read back.
        assert sorted(lake.read) == sorted(
            k for k in FolderLake.glob(lake, f"{FOLDER}*.parquet") if "new" not in k
        )

    # Between leases another run records: the next lease lists again and reads it.
    _another_runs_event(lake, "after")
    with month_lease(lake, "a", "2024-04"):
        assert [e["delivery_id"] for e in register.events("a")][-1] == "after"
        assert _read(register) == _in_the_files(lake)
    assert lake.listings == 4
    # No lease held: every read lists (and checks its listing), as it always did.
    _read(register)
    assert lake.listings == 6


def test_a_fold_by_the_run_holding_the_lease_reads_the_same_events(tmp_path, monkeypatch):
    monkeypatch.setattr("pipelines.lake.register.COMPACT_AT", 6)
    lake = CountingLake(tmp_path / "lake")
    register = Register(lake)
    with month_lease(lake, "a", "2024-01"):
        for i in range(15):  # folded twice on the way (at 6 files, and at 6 again)
            register.record(DeliveryEvent("a", "2024-01", f"d{i}", "validated"))
            assert _read(register) == _in_the_files(lake)
        names = [k.rsplit("/", 1)[1] for k in FolderLake.glob(lake, f"{FOLDER}*.parquet")]
        assert sum(n.startswith("compacted-") for n in names) == 1
        assert len(names) < 15
    assert _read(register) == _in_the_files(lake)


# One step of a run: record an event, record a write-once marker, fold the files, read,
# take or give back a month's lease, or (with no lease held: a lease keeps others away)
# another run's event.
step = st.sampled_from(["record", "marker", "fold", "read", "lease", "release", "other"])


@given(steps=st.lists(step, min_size=1, max_size=24))
@settings(max_examples=25, deadline=None)
def test_any_mix_of_leases_writes_folds_and_reads_reads_what_the_files_hold(steps):
    with tempfile.TemporaryDirectory() as tmp:
        lake = FolderLake(Path(tmp) / "lake")
        register = Register(lake)
        held: list = []
        try:
            for n, what in enumerate(steps):
                if what == "record":
                    register.record(DeliveryEvent("a", "2024-01", f"d{n}", "validated"))
                elif what == "marker":
                    marker = DeliveryEvent("a", "2024-01", f"m{n}", "received")
                    assert register.record_once(marker, f"received-m{n}")
                elif what == "fold":
                    register.compact("a")
                elif what == "lease":
                    lease = month_lease(lake, "a", f"2024-{len(held) + 1:02d}")
                    lease.__enter__()
                    held.append(lease)
                elif what == "release" and held:
                    held.pop().__exit__(None, None, None)
                elif what == "other" and not held:
                    _another_runs_event(lake, f"o{n}")
                assert _read(register) == _in_the_files(lake)
        finally:
            while held:
                held.pop().__exit__(None, None, None)
