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

import itertools
import os
import re
import threading
import weakref

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


# Column comments of every governance table and view, for the warehouse to write (a test
# fails on any column of the warehouse left without one). A column that several views share
# says the same thing in each.
_DELIVERY_COLUMNS = {
    "contract": "The contract (data_contracts/<contract>.yaml); unfiled for a file outside the "
    "drop zone's <contract>/<YYYY-MM>/ layout.",
    "period": "The period the delivery is for, as text YYYY-MM (a quarter or a year is named "
    "by its first month): the drop zone folder it came in.",
    "delivery_id": "SHA-256 of the delivered file's bytes: the delivery's identity (curated "
    "rows carry it as _delivery_id).",
    "source_path": "Where the file was in the drop zone (folder path or s3:// key).",
    "source_size": "Size of the delivered file in bytes.",
    "file_format": "The format the file was read as, from its name's last suffix (csv, gz, "
    "...), or not read.",
    "landing_path": "The unchanged copy of the file kept in the lake's landing area.",
    "rows_delivered": "Data rows in the delivered file (the header not counted).",
    "rows_quarantined": "Rows of the file held back by a check (governance.quarantine has "
    "them with their reasons).",
    "reason": "Why, in plain words: a rejection, hold or duplicate sighting's cause.",
}
_DELIVERY_EVENT_COLUMNS = {
    **_DELIVERY_COLUMNS,
    "event": "What happened: received, validated, held, published, rejected, superseded or "
    "duplicate (the same bytes seen again).",
    "event_at": "When it happened (UTC).",
    "source_mtime_ns": "The file's modification time in the drop zone (nanoseconds since "
    "1970) when it was read; on the events of receipt (received, rejected, duplicate), "
    "empty on later ones.",
    "run_id": "The Dagster run that recorded the event (empty outside a run).",
    "source_version": "The drop zone's version of the file when read (size:modification "
    "time, or size:ETag on S3), how a re-sighting is recognised; on the events of receipt, "
    "empty on later ones.",
}
_BREACH_COLUMNS = {
    "breach_id": "The breach's identity, stable across re-runs of the same delivery and rule.",
    "contract": _DELIVERY_COLUMNS["contract"],
    "contract_version": "The contract version the delivery was checked against.",
    "period": "The period (YYYY-MM) of the delivery that broke the rule, or the late period.",
    "delivery_id": "The delivery that broke the rule (empty for a late period with none).",
    "rule": "The contract rule broken (e.g. officer_defined_ethnicity_known, delivery.late).",
    "clause": "Where the contract file states what was broken (for engineers).",
    "severity": "critical, major or minor, as the contract sets for the rule.",
    "action": "What was done with the delivery or its rows (rows quarantined, rows kept, "
    "delivery held, delivery rejected, ...).",
    "failing_rows": "Rows that broke the rule.",
    "rows_checked": "Rows the rule was checked on (0 for a breach of the delivery as a whole).",
    "failing_share": BREACH_COLUMN_COMMENTS["failing_share"],
    "sample_rows": "Up to 20 data row numbers (from 1) of failing rows, for the force to find "
    "the pattern.",
    "detail": "What was wrong, in the register's words (the notice's sentence).",
    "raised_at": "When validation (or the late check) raised the breach (UTC).",
}
_LATER_COLUMNS = {
    "delivery_status": "What became of the breach's delivery: its status now (published, "
    "held, rejected, superseded, ...).",
    "source_path": "Where the breach's delivery was in the drop zone.",
    "delivery_published_at": "When the breach's delivery was published, if it was.",
    "later_delivery_id": "The delivery of the same month published after it (the force's "
    "re-send; for a late month, the one that came), if any.",
    "later_delivery_path": "Where that later delivery was in the drop zone.",
    "later_published_at": "When that later delivery was published.",
}
_STEP_COLUMNS = {
    "status": "The breach's status after the step: open, notified, acknowledged, resolved, "
    "waived or superseded.",
    "actor": "Who took the step: validation, the late-delivery check, the pipeline or a lead "
    "by name.",
    "note": "Why, in the words of whoever took the step.",
    "event_at": "When the step was taken (UTC).",
}
_QUARANTINE_COLUMNS = {
    "contract": "The contract the row was delivered under.",
    "_delivery_id": "SHA-256 of the delivered file the row came from.",
    "_source_row": "Data row number of the row in the delivered file, from 1.",
    "_period": "The period (YYYY-MM) the delivery is for.",
    "period": "The period (YYYY-MM) the delivery is for (the same as _period).",
    "rules": "Every contract rule the row broke.",
    "reasons": "Why the row was held back, one plain sentence per rule.",
    "record": "The row as delivered (JSON, by delivered header); classified fields read "
    "[withheld].",
}
GOVERNANCE_COLUMN_COMMENTS: dict[str, dict[str, str]] = {
    "governance.delivery_events": {
        **_DELIVERY_EVENT_COLUMNS,
        "rows_curated": "On a validated or held event: rows of the file that passed the "
        "checks, which publishing would curate. What is in the curated table now is "
        "governance.deliveries.rows_curated.",
    },
    "governance.deliveries": {
        **_DELIVERY_COLUMNS,
        "status": "The delivery's status now: received, validated, held, published, rejected, "
        "superseded, or duplicate (a row per sighting of bytes already delivered).",
        "received_at": "When the delivery was first received (UTC).",
        "updated_at": "When its status last changed (UTC).",
        **DELIVERY_COMMENTS,
    },
    "governance.breach_records": _BREACH_COLUMNS,
    "governance.breaches": {**_BREACH_COLUMNS, **BREACH_COLUMN_COMMENTS},
    "governance.breach_deliveries": {
        **{k: _BREACH_COLUMNS[k] for k in ("breach_id", "contract", "period", "delivery_id")},
        **_LATER_COLUMNS,
    },
    "governance.breach_history": {
        **{k: _BREACH_COLUMNS[k] for k in ("breach_id", "contract", "period")},
        "step": "raised, changed (by a lead, from governance.breach_events) or superseded "
        "(its month was re-sent and published).",
        **_STEP_COLUMNS,
    },
    "governance.breach_events": {
        **{k: _BREACH_COLUMNS[k] for k in ("breach_id", "contract")},
        **_STEP_COLUMNS,
        "status": "The status a lead set (notified, acknowledged, resolved, waived, or open "
        "again).",
    },
    "governance.breach_register": {
        **_BREACH_COLUMNS,
        **BREACH_COLUMN_COMMENTS,
        **_LATER_COLUMNS,
        "action": "What was done with the delivery: delivery held or delivery rejected when "
        "that is what became of it, else what validation wrote (action_recorded).",
        "action_recorded": "What validation wrote as done with the delivery or its rows.",
        "status": "Status now: open, notified, acknowledged, resolved, waived, or superseded "
        "(its delivery was replaced by a published re-send).",
        "updated_at": "When the status last changed (empty while it is as raised).",
        "recurrence": "In how many periods, up to this one, the contract's same rule has been "
        "broken.",
    },
    "governance.clauses": {
        "contract": "The contract whose agreement page the clause is on.",
        "match": "How pattern is matched against a rule name: exact, prefix or any.",
        "pattern": "The rule name (or its prefix) the clause covers.",
        "rank": "Order of trial: the first matching row (lowest rank) gives the clause.",
        "clause_number": "The clause's number on the agreement page (6.1, 8.1.2, ...).",
        "clause_title": "The clause's heading.",
    },
    "governance.month_parts": {
        "contract": "A contract whose months come in parts (deliverySchedule.filesPerPeriod: "
        "parts).",
    },
    "governance.erasures": {
        "contract": "The contract whose file was erased.",
        "period": "The period (YYYY-MM) the erased file was for.",
        "area": "The lake area it was in: landing, staging, quarantine, quarantine_masked or "
        "curated.",
        "path": "The erased file's path in the lake.",
        "bytes": "Its size in bytes.",
        "clause": "The retention clause of the agreement under which it was erased.",
        "erased_by": "Who erased it (datashare retention --apply --by).",
        "erased_at": "When it was erased (UTC).",
    },
    "governance.exports": {
        "contract": "The contract the export concerns.",
        "period": "The period (YYYY-MM) the export concerns.",
        "what": "What left the pipeline: a notice to the force (its file, how many breaches) "
        "and the address it was emailed to, if it was.",
        "exported_by": "Who exported it.",
        "why": "Why it was exported.",
        "exported_at": "When it was exported (UTC).",
    },
    "governance.audit_log": {
        "at": "When it happened (UTC).",
        "action": "collection, publication, delivery <status>, breach <status> (breach "
        "reopened), erasure or export.",
        "by_whom": "The run (run <id>), the pipeline, or the person.",
        "contract": "The contract it concerns.",
        "period": "The period (YYYY-MM) it concerns.",
        "subject": "What it was done to: a delivery_id, a breach_id, an erased path or an "
        "exported file.",
        "why": "Why, in the words recorded with it.",
    },
    "governance.quarantine_history": _QUARANTINE_COLUMNS,
    "governance.quarantine": _QUARANTINE_COLUMNS,
}


BREACH_VIEWS_SQL = (BREACHES_SQL, BREACH_DELIVERIES_SQL, BREACH_HISTORY_SQL, BREACH_REGISTER_SQL)


def create_breach_views(con: duckdb.DuckDBPyConnection, read_once: bool = False) -> None:
    """The breach views, over `governance.breach_records`, `breach_events`,
    `delivery_events`, `clauses` and `month_parts` (tables or views already in `con`).
    `read_once`: made as `reading_once` rewrites them, for record sets that are views over
    the lake's files."""
    for sql in BREACH_VIEWS_SQL:
        con.execute(reading_once(sql) if read_once else sql)


# The record sets that are, in the warehouse, views over the lake's files; and the views of
# this module made over them, in an order in which each comes after those it reads.
RECORD_SETS = ("delivery_events", "breach_records", "breach_events")
_VIEWS = {
    re.match(r"\s*CREATE VIEW governance\.(\w+) AS\n", sql).group(1): sql
    for sql in (DELIVERIES_SQL, *BREACH_VIEWS_SQL)
}
_NAMED = re.compile(rf"\bgovernance\.({'|'.join((*RECORD_SETS, *_VIEWS))})\b")


def reading_once(sql: str) -> str:
    """`sql`, a view over the record sets (`RECORD_SETS`) and this module's views (one of
    them, or another such as `governance.audit_log`), rewritten so that a query of it reads
    each record set once, giving the same rows.

    DuckDB inlines a view at each reference, and the register refers to the delivery events
    and breach records nine times through the views it is made of: over the lake's files,
    nine reads of a growing set of files (each file an HTTP request or more on S3), which
    need not even see the same files while a run writes. Here each record set it reads is a
    materialized CTE, read once, and each view it reads is a CTE over those, its SQL
    derived from the same text as the view's, so the two cannot drift apart.
    """
    name, body = _split(sql)
    needed: list[str] = []

    def visit(text: str) -> None:
        for ref in _NAMED.findall(text):
            if ref not in needed:
                if ref in _VIEWS:
                    visit(_split(_VIEWS[ref])[1])
                needed.append(ref)

    visit(body)
    ctes = [
        f"_{ref} AS MATERIALIZED (SELECT * FROM governance.{ref})"
        for ref in RECORD_SETS
        if ref in needed
    ]
    ctes += [f"_{ref} AS (\n{_local(_split(_VIEWS[ref])[1])}\n)" for ref in _VIEWS if ref in needed]
    if not ctes:
        return sql
    return (
        f"CREATE VIEW governance.{name} AS\nWITH " + ",\n".join(ctes)
        + f"\nSELECT * FROM (\n{_local(body)}\n)"
    )  # fmt: skip


def _split(sql: str) -> tuple[str, str]:
    """A view's name and the query it is."""
    found = re.match(r"\s*CREATE VIEW governance\.(\w+) AS\n(.*)", sql, re.DOTALL)
    return found.group(1), found.group(2).strip()


def _local(text: str) -> str:
    """`text` reading `reading_once`'s CTEs (`_name`) in place of the governance objects."""
    return _NAMED.sub(r"_\1", text)


def in_memory(
    breach_records: pa.Table,
    breach_events: pa.Table,
    delivery_events: pa.Table,
    clauses: pa.Table,
    month_parts: pa.Table | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory catalog of the same views over tables read from the lake;
    `month_parts` (`parts_table`; none if not given) names the contracts in parts. Close
    it (or drop it) when done: its database goes with it."""
    con = _new_database()
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


# The in-memory DuckDB each `in_memory` catalog is a database of: attached new for each
# call, and detached once that call's connection is gone. A DuckDB of its own per call cost
# ~15 ms of CPU to open and 3-7 ms to close, a third of the call; a database attached to
# this one, under 1 ms. One thread: a register of a few thousand rows gains nothing from a
# second, and copying each table in with one took half the CPU it took with two (35 -> 15
# ms for the five).
_SHARED: duckdb.DuckDBPyConnection | None = None
_ATTACHED: list[tuple[str, weakref.ref]] = []
_SHARED_LOCK = threading.Lock()
_NAMES = itertools.count()


def _new_database() -> duckdb.DuckDBPyConnection:
    """A connection of its own whose default database is a new, empty in-memory one."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = duckdb.connect(config={"threads": 1})
        for gone in [a for a in _ATTACHED if a[1]() is None]:
            _SHARED.execute(f"DETACH {gone[0]}")
            _ATTACHED.remove(gone)
        name = f"register_{next(_NAMES)}"
        _SHARED.execute(f"ATTACH ':memory:' AS {name}")
        con = _SHARED.cursor()
        _ATTACHED.append((name, weakref.ref(con)))
    con.execute(f"USE {name}")
    return con


def _forget_shared() -> None:
    """In a forked child: the parent's DuckDB is not used (its locks may be held by a thread
    the child does not have); the child opens its own. The parent's is left, not closed."""
    global _SHARED, _SHARED_LOCK
    if _SHARED is not None:
        _FORKED_AWAY.append(_SHARED)
    _SHARED, _SHARED_LOCK = None, threading.Lock()
    _ATTACHED.clear()


_FORKED_AWAY: list[duckdb.DuckDBPyConnection] = []
os.register_at_fork(after_in_child=_forget_shared)
