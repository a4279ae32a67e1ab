"""The analysts' view of quarantine: the same rows and reasons, classified fields withheld.

Quarantined records are kept as delivered (pseudonymised identifiers already tokenised)
in the owner-only quarantine area. Analysts read a copy in which every field the contract
classifies as personal, special-category or restricted reads `[withheld]`, made by a
streaming DuckDB copy so that memory stays flat however many rows failed.
"""

from __future__ import annotations

import json

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
    with lake.local_copy(private) as source, lake.writing(masked) as tmp:
        con = duckdb.connect()
        try:
            con.execute("SET preserve_insertion_order = false")
            con.execute(
                f"COPY (SELECT * REPLACE ({record} AS record) FROM read_parquet(?)) "
                f"TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)",
                [str(source)],
            )
        finally:
            con.close()
