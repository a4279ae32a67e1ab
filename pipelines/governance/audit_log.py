"""Exports out of the pipeline (notices to the force) are recorded for the audit log.

The audit log itself (`governance.audit_log` in the warehouse) is a view over every
event store in the lake: collections and publications, breach-status changes (a lead's, and
a breach superseded on its own when its month was re-sent and published), erasures and
these exports, each with when, by whom (a run or a person), for which period, and why.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pyarrow as pa

from pipelines.lake.store import Lake

EXPORT_SCHEMA = pa.schema(
    [
        ("contract", pa.string()),
        ("period", pa.string()),
        ("what", pa.string()),
        ("exported_by", pa.string()),
        ("why", pa.string()),
        ("exported_at", pa.timestamp("us", tz="UTC")),
    ]
)

AUDIT_LOG_SQL = """
CREATE VIEW governance.audit_log AS
SELECT event_at AS at,
       CASE event WHEN 'received' THEN 'collection' WHEN 'published' THEN 'publication'
                  ELSE 'delivery ' || event END AS action,
       coalesce('run ' || run_id, 'pipeline') AS by_whom,
       contract, period, delivery_id AS subject, coalesce(reason, '') AS why
FROM governance.delivery_events
UNION ALL
SELECT event_at,
       CASE WHEN status = 'open' THEN 'breach reopened' ELSE 'breach ' || status END,
       actor, contract, period, breach_id, note
FROM governance.breach_history
WHERE step <> 'raised'
UNION ALL
SELECT erased_at, 'erasure', erased_by, contract, period, path, clause
FROM governance.erasures
UNION ALL
SELECT exported_at, 'export', exported_by, contract, period, what, why
FROM governance.exports
"""


def record_export(lake: Lake, contract: str, period: str, what: str, by: str, why: str) -> None:
    """Record that `what` left the pipeline, by whom and why."""
    at = datetime.now(UTC)
    key = (
        f"governance/exports/contract={contract}/"
        f"{at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    )
    row = dict(contract=contract, period=period, what=what, exported_by=by, why=why, exported_at=at)
    lake.write_table(key, pa.Table.from_pylist([row], EXPORT_SCHEMA))
