"""The analysts' view of quarantine: the same rows and reasons, classified fields withheld.

Quarantined records are kept as delivered (pseudonymised identifiers already tokenised)
in the owner-only quarantine area. Analysts read a copy in which every field the contract
classifies as personal, special-category or restricted reads `[withheld]`, made by a
streaming DuckDB copy so that memory stays flat however many rows failed.
"""

from __future__ import annotations

import json
import threading

import duckdb

from pipelines.lake.store import Lake
from schemas.contract import Contract

WITHHELD = "[withheld]"


def mask_quarantine(contract: Contract, lake: Lake, period: str, delivery_id: str) -> None:
    """Write the masked copy of one delivery's quarantine file (if it has one)."""
    private = lake.quarantine_path(contract.name, period, delivery_id)
    if not lake.exists(private):
        return
    fields = [contract.column(n).source_name for n in contract.classified]
    patch = json.dumps({name: WITHHELD for name in fields})
    raw = json.dumps({"raw_line": WITHHELD})
    # A row that could not be split into fields is a raw line: withheld whole if the
    # contract classifies anything, since any part of it could be a classified value.
    record = (
        f"CASE WHEN json_exists(record, '$.raw_line') THEN '{raw}' "
        f"ELSE json_merge_patch(record, '{patch}')::VARCHAR END"
        if fields
        else "record"
    )
    masked = lake.masked_quarantine_path(contract.name, period, delivery_id)
    with lake.local_copy(private) as source, lake.writing(masked) as tmp, _COPYING:
        _copier().execute(
            f"COPY (SELECT * REPLACE ({record} AS record) FROM read_parquet(?)) "
            f"TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)",
            [str(source)],
        )


# One in-memory DuckDB per process for every month's copy, made on first use. A new one per
# delivery (opened, its JSON functions loaded, closed) cost about 20 ms of CPU for a
# quarantine of a few dozen rows, against 3 ms with it kept: 0.6 s of a 37-month backfill.
# It holds no table; each copy streams from one file to another, as before. A DuckDB
# connection serves one thread at a time, hence the lock.
_COPIER: duckdb.DuckDBPyConnection | None = None
_COPYING = threading.Lock()


def _copier() -> duckdb.DuckDBPyConnection:
    """This process's DuckDB for the masked copies (the caller holds `_COPYING`)."""
    global _COPIER
    if _COPIER is None:
        _COPIER = duckdb.connect()
        _COPIER.execute("SET preserve_insertion_order = false")
    return _COPIER
