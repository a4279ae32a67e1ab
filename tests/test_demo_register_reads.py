"""The register as a run of many contracts reads it (the demo's ten).

A run asks the register about its contract a dozen times a month. Each ask used to list
every contract's event files, so on the demo's home (ten contracts, a few hundred files)
the listings were a sixth of its runs. Each ask now lists its contract's folder only, and
what a read of every contract found is kept for each contract's next read, so no event
file is read twice. What any read returns stays what the files hold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.lake.register import DELIVERY_EVENT_SCHEMA, DeliveryEvent, Register
from pipelines.lake.store import FolderLake

CONTRACTS = ("borough_crime", "stop_and_search", "use_of_force")
EVERY = "governance/deliveries/contract=*/*.parquet"


class CountingLake(FolderLake):
    """A folder lake that notes which files each listing returned and which it read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[list[str]] = []
        self.read: list[str] = []

    def glob(self, pattern: str) -> list[str]:
        keys = super().glob(pattern)
        self.listed.append(keys)
        return keys

    def read_all(self, keys: list[str], schema: pa.Schema) -> pa.Table:
        self.read += keys
        return super().read_all(keys, schema)


def _what_the_files_hold(lake: FolderLake, contract: str | None) -> list[tuple[str, str]]:
    """Each distinct event in the lake's files (of `contract`), read afresh."""
    files = FolderLake.glob(lake, EVERY)  # not counted as the register's
    rows = FolderLake.read_all(lake, files, DELIVERY_EVENT_SCHEMA).to_pylist()
    return sorted(
        {(r["delivery_id"], r["event"]) for r in rows if contract in (None, r["contract"])}
    )


def _read(register: Register, contract: str | None) -> list[tuple[str, str]]:
    return sorted((e["delivery_id"], e["event"]) for e in register.events(contract))


def test_a_contracts_read_lists_its_folder_only_and_reads_no_file_twice(tmp_path):
    lake = CountingLake(tmp_path / "lake")
    register = Register(lake)
    for contract in CONTRACTS:
        for i in range(5):
            register.record(DeliveryEvent(contract, "2024-01", f"{contract}-{i}", "validated"))
    files = FolderLake.glob(lake, EVERY)
    lake.listed, lake.read = [], []

    everything = _read(register, None)  # as `datashare run` plans, before its runs
    assert everything == _what_the_files_hold(lake, None)
    for contract in CONTRACTS:
        listings = len(lake.listed)
        assert _read(register, contract) == _what_the_files_hold(lake, contract)
        folder = f"governance/deliveries/contract={contract}/"
        for keys in lake.listed[listings:]:
            assert keys and all(k.startswith(folder) for k in keys), keys
    # Each file was read once, by the read of every contract.
    assert sorted(lake.read) == sorted(files)


# One step: record an event of a contract, fold a contract's files, or read (one contract's
# events, or every contract's when None).
step = st.one_of(
    st.tuples(st.just("record"), st.sampled_from(CONTRACTS)),
    st.tuples(st.just("fold"), st.sampled_from(CONTRACTS)),
    st.tuples(st.just("read"), st.sampled_from((None, *CONTRACTS))),
)


@given(steps=st.lists(step, min_size=1, max_size=25))
@settings(max_examples=40, deadline=None)
def test_any_reads_records_and_folds_read_what_the_files_hold(steps):
    with tempfile.TemporaryDirectory() as tmp:
        lake = FolderLake(Path(tmp) / "lake")
        register = Register(lake)
        for n, (what, contract) in enumerate(steps):
            if what == "record":
                register.record(DeliveryEvent(contract, "2024-01", f"d{n}", "validated"))
            elif what == "fold":
                register.compact(contract)
            else:
                assert _read(register, contract) == _what_the_files_hold(lake, contract)
