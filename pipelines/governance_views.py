"""What the register says now: the governance views both the warehouse and the CLI read.

The lake keeps facts that never change (delivery events, breach records, lifecycle steps);
what they mean now is derived here, once, in SQL, so that `warehouse.duckdb` (the review
page, notices, analysts) and `datashare breaches` (which reads the lake itself, through an
in-memory DuckDB) say the same thing:

- `governance.deliveries`: each delivery's current status, and what was published from it.
- `governance.breaches`: each breach as recorded, with the clause of the agreement page it
  breaks (`clause_number`, `clause_title`, as `datashare contracts show` numbers them) and
  no failing share where no rows were checked.
- `governance.breach_deliveries`: what became of each breach's delivery, and the later
  published delivery of its month, if any.
- `governance.breach_history`: each breach's steps: raised, changed by a lead, and
  superseded on its own when the month it broke was re-sent and published.
- `governance.breach_register`: each breach with its status now and its recurrence.

Supersession is derived, not written: a breach of a delivery that was rejected or held back
becomes `superseded` at the moment a delivery of the same month received after it was first
published (a superseded delivery's, when the delivery that replaced it was published; for a
month in parts, only a later file of the same name replaces a part), if it
was still open, notified or acknowledged then. Old homes need no
migration, and a lead's later step (a reopen) still wins, being later.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from schemas.contract import Contract
from schemas.contract_page import clause_patterns, contract_document

# A breach still to act on; `superseded`, `resolved` and `waived` are closed.
OPEN_STATUSES = ("open", "notified", "acknowledged")
# Statuses of a delivery from which nothing is published now.
NOT_PUBLISHED = ("rejected", "held", "superseded")

CLAUSE_SCHEMA = pa.schema(
    [
        ("contract", pa.string()),
        ("match", pa.string()),  # exact, prefix or any
        ("pattern", pa.string()),
        ("rank", pa.int32()),
        ("clause_number", pa.string()),
        ("clause_title", pa.string()),
    ]
)


def parts_table(contracts: dict[str, Contract]) -> pa.Table:
    """The contracts whose months come in parts (`governance.month_parts`)."""
    names = [n for n, c in contracts.items() if c.schedule.files_per_period == "parts"]
    return pa.table({"contract": pa.array(names, pa.string())})


def clause_table(contracts: dict[str, Contract]) -> pa.Table:
    """Every contract's clause patterns (`contract_page.clause_patterns`), as a table."""
    rows = []
    for name, contract in contracts.items():
        doc = contract_document(contract.path)
        for rank, (match, pattern, clause) in enumerate(clause_patterns(doc)):
            rows.append(
                dict(contract=name, match=match, pattern=pattern, rank=rank,
                     clause_number=clause.number, clause_title=clause.words)
            )  # fmt: skip
    return pa.Table.from_pylist(rows, CLAUSE_SCHEMA)


DELIVERIES_SQL = """
CREATE VIEW governance.deliveries AS
SELECT contract, period, delivery_id,
       arg_max(event, event_at) AS status,
       min(event_at) AS received_at,
       max(event_at) AS updated_at,
       arg_min(source_path, event_at) FILTER (WHERE source_path IS NOT NULL) AS source_path,
       max(source_size) AS source_size,
       max(file_format) AS file_format,
       max(landing_path) AS landing_path,
       max(rows_delivered) AS rows_delivered,
       max(rows_curated) AS rows_passed,
       CASE WHEN arg_max(event, event_at) = 'published' THEN max(rows_curated)
            WHEN max(rows_curated) IS NOT NULL THEN 0 END AS rows_curated,
       max(rows_quarantined) AS rows_quarantined,
       arg_max(reason, event_at) FILTER (WHERE reason IS NOT NULL) AS reason
FROM governance.delivery_events
WHERE event <> 'duplicate'
GROUP BY ALL
UNION ALL
SELECT contract, period, delivery_id, 'duplicate', event_at, event_at,
       source_path, source_size, NULL, NULL, NULL, NULL, NULL, NULL, reason
FROM governance.delivery_events
WHERE event = 'duplicate'
"""

DELIVERY_COMMENTS = {
    "rows_passed": "Rows of the file that passed every check that holds a row back, whatever "
    "became of the delivery (a held-back or superseded delivery publishes none of them).",
    "rows_curated": "Rows of the file in the curated table now: 0 when nothing from the "
    "delivery is published (held back, rejected, superseded, not yet published). A file row "
    "of a wide layout (one column per month) is one curated row per month.",
}

BREACHES_SQL = """
CREATE VIEW governance.breaches AS
WITH rules AS (SELECT DISTINCT contract, rule FROM governance.breach_records),
clause_of AS (
    SELECT r.contract, r.rule,
           arg_min(c.clause_number, c.rank) AS clause_number,
           arg_min(c.clause_title, c.rank) AS clause_title
    FROM rules r JOIN governance.clauses c ON c.contract = r.contract AND (
        (c.match = 'exact' AND r.rule = c.pattern)
        OR (c.match = 'prefix' AND starts_with(r.rule, c.pattern))
        OR c.match = 'any')
    GROUP BY ALL
)
SELECT b.* REPLACE (CASE WHEN b.rows_checked > 0 THEN b.failing_share END AS failing_share),
       c.clause_number, c.clause_title
FROM governance.breach_records b
LEFT JOIN clause_of c USING (contract, rule)
"""

BREACH_DELIVERIES_SQL = f"""
CREATE VIEW governance.breach_deliveries AS
WITH state AS (
    SELECT contract, period, delivery_id, arg_max(event, event_at) AS status,
           min(event_at) AS received_at,
           arg_min(source_path, event_at) FILTER (WHERE source_path IS NOT NULL) AS source_path
    FROM governance.delivery_events WHERE event <> 'duplicate' GROUP BY ALL
),
published AS (
    SELECT contract, period, delivery_id, min(event_at) AS published_at
    FROM governance.delivery_events WHERE event = 'published' GROUP BY ALL
),
replaced AS (
    -- A delivery from which nothing is published, and a delivery of its month received
    -- after it that was published: the force's re-send. A superseded delivery was
    -- replaced by whichever was published after it arrived (publishing decided so).
    SELECT s.contract, s.delivery_id,
           arg_min(p.delivery_id, p.published_at) AS later_delivery_id,
           min(p.published_at) AS later_published_at
    FROM state s
    JOIN published p ON p.contract = s.contract AND p.period = s.period
        AND p.delivery_id <> s.delivery_id
    JOIN state r ON r.contract = p.contract AND r.delivery_id = p.delivery_id
        AND (r.received_at > s.received_at
             OR (s.status = 'superseded' AND p.published_at > s.received_at))
        -- A month in parts (deliverySchedule.filesPerPeriod): a part is replaced only by
        -- a later file of the same name, never by another part.
        AND (s.contract NOT IN (SELECT contract FROM governance.month_parts)
             OR regexp_extract(r.source_path, '[^/]*$') = regexp_extract(s.source_path, '[^/]*$'))
    WHERE s.status IN {NOT_PUBLISHED}
    GROUP BY ALL
),
month_published AS (
    SELECT contract, period, arg_min(delivery_id, published_at) AS later_delivery_id,
           min(published_at) AS later_published_at
    FROM published GROUP BY ALL
),
breach AS (SELECT DISTINCT breach_id, contract, period, delivery_id FROM governance.breach_records)
SELECT b.breach_id, b.contract, b.period, b.delivery_id,
       s.status AS delivery_status, s.source_path,
       own.published_at AS delivery_published_at,
       coalesce(r.later_delivery_id, m.later_delivery_id) AS later_delivery_id,
       later.source_path AS later_delivery_path,
       coalesce(r.later_published_at, m.later_published_at) AS later_published_at
FROM breach b
LEFT JOIN state s ON s.contract = b.contract AND s.delivery_id = b.delivery_id
LEFT JOIN published own ON own.contract = b.contract AND own.delivery_id = b.delivery_id
LEFT JOIN replaced r ON r.contract = b.contract AND r.delivery_id = b.delivery_id
LEFT JOIN month_published m ON b.delivery_id IS NULL
    AND m.contract = b.contract AND m.period = b.period
LEFT JOIN state later ON later.contract = b.contract
    AND later.delivery_id = coalesce(r.later_delivery_id, m.later_delivery_id)
"""

BREACH_HISTORY_SQL = f"""
CREATE VIEW governance.breach_history AS
WITH breach AS (
    SELECT DISTINCT breach_id, contract, period, delivery_id, raised_at
    FROM governance.breach_records
),
raised AS (
    SELECT breach_id, contract, period, 'raised' AS step, 'open' AS status,
           CASE WHEN delivery_id IS NULL THEN 'the late-delivery check'
                ELSE 'validation' END AS actor,
           'raised' AS note, raised_at AS event_at
    FROM breach
),
changed AS (
    SELECT e.breach_id, e.contract, b.period, 'changed' AS step, e.status, e.actor, e.note,
           e.event_at
    FROM governance.breach_events e
    LEFT JOIN (SELECT DISTINCT breach_id, period FROM breach) b USING (breach_id)
),
superseded AS (
    SELECT f.breach_id, f.contract, f.period, 'superseded' AS step, 'superseded' AS status,
           'pipeline' AS actor,
           'its delivery was replaced: delivery ' || left(f.later_delivery_id, 12)
               || coalesce(' (' || f.later_delivery_path || ')', '')
               || ' was published for the month' AS note,
           greatest(f.later_published_at, b.raised_at) AS event_at
    FROM governance.breach_deliveries f JOIN breach b USING (breach_id)
    WHERE f.delivery_id IS NOT NULL AND f.later_delivery_id IS NOT NULL
      AND coalesce((SELECT arg_max(e.status, e.event_at) FROM governance.breach_events e
                    WHERE e.breach_id = f.breach_id AND e.event_at <= f.later_published_at),
                   'open') IN {OPEN_STATUSES}
)
SELECT * FROM raised UNION ALL SELECT * FROM changed UNION ALL SELECT * FROM superseded
"""

BREACH_REGISTER_SQL = """
CREATE VIEW governance.breach_register AS
WITH now AS (
    SELECT breach_id, arg_max(status, event_at) AS status,
           max(event_at) FILTER (WHERE step <> 'raised') AS updated_at
    FROM governance.breach_history GROUP BY breach_id
)
SELECT b.* REPLACE (
           CASE f.delivery_status WHEN 'held' THEN 'delivery held'
                WHEN 'rejected' THEN 'delivery rejected' ELSE b.action END AS action),
       coalesce(n.status, 'open') AS status,
       n.updated_at,
       count(DISTINCT b.period) OVER (
           PARTITION BY b.contract, b.rule ORDER BY b.period
           RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS recurrence,
       b.action AS action_recorded,
       f.delivery_status, f.source_path, f.delivery_published_at,
       f.later_delivery_id, f.later_delivery_path, f.later_published_at
FROM governance.breaches b
LEFT JOIN now n USING (breach_id)
LEFT JOIN governance.breach_deliveries f USING (breach_id)
"""

BREACH_COLUMN_COMMENTS = {
    "clause_number": "The clause of the agreement page (datashare contracts show) the breach "
    "breaks, as notices cite it: 6.1, 7, 8.1.2, ...",
    "clause_title": "That clause's heading, or the rule and what it checks.",
    "clause": "Where the contract file states what was broken (for engineers).",
    "failing_share": "Failing rows over rows checked; empty when no rows were checked (a "
    "breach of the delivery as a whole: unreadable, late, held back by its manifest).",
}
BREACH_COMMENTS = {
    "governance.breaches": "Each contract rule broken by each delivery, with the clause of the "
    "agreement page it breaks (clause_number, clause_title; `clause` is where the contract "
    "file states it).",
    "governance.breach_deliveries": "What became of each breach's delivery, and the later "
    "delivery of the same month that was published (for a late month: the one that came).",
    "governance.breach_history": "Each step of each breach: raised, changed by a lead "
    "(governance.breach_events), and superseded when its month was re-sent and published.",
    "governance.breach_register": "Breaches with their status now (open, notified, "
    "acknowledged, resolved, waived, or superseded: its delivery was replaced by a published "
    "re-send), what was done with their delivery (action; action_recorded is what validation "
    "wrote) and in how many periods the same rule has been broken so far.",
}


def create_breach_views(con: duckdb.DuckDBPyConnection) -> None:
    """The breach views, over `governance.breach_records`, `breach_events`,
    `delivery_events`, `clauses` and `month_parts` (tables or views already in `con`)."""
    for sql in (BREACHES_SQL, BREACH_DELIVERIES_SQL, BREACH_HISTORY_SQL, BREACH_REGISTER_SQL):
        con.execute(sql)


def in_memory(
    breach_records: pa.Table,
    breach_events: pa.Table,
    delivery_events: pa.Table,
    clauses: pa.Table,
    month_parts: pa.Table | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory catalog of the same views over tables read from the lake;
    `month_parts` (`parts_table`; none if not given) names the contracts in parts."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA governance")
    for name, table in (
        ("breach_records", breach_records),
        ("breach_events", breach_events),
        ("delivery_events", delivery_events),
        ("clauses", clauses),
        ("month_parts", parts_table({}) if month_parts is None else month_parts),
    ):
        con.register("_source", table)
        con.execute(f"CREATE TABLE governance.{name} AS SELECT * FROM _source")
        con.unregister("_source")
    con.execute(DELIVERIES_SQL)
    create_breach_views(con)
    return con
