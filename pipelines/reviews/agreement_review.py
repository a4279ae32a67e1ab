"""The agreement review: is a data-sharing agreement being honoured, over a window of periods?

The ICO's data sharing code asks that an agreement be reviewed regularly. This module reads
the warehouse (read-only) and writes, for one contract and a window of its periods (by
default the last 12 that have ended), a page fit to print and its Markdown twin:

- deliveries due, on time, late (by how many days) and never received, period by period;
- periods right first time (the first file published with no critical breach);
- breaches by rule and severity over the window, and the rules that fail again and again;
- how long breaches took from raised to resolved, and notices against the agreed response
  days (`noticeResponseDays`); what is open now, by age;
- over-sharing: the unagreed columns withheld, which and in how many periods;
- personal data: classified and pseudonymised fields, erasures under retention, what falls
  due next, and that nothing is held past its retention (checked in the lake itself);
- rows delivered and quarantined per period against the usual volume;
- the contract versions seen and what changed between them (`contracts diff`);
- points for the review meeting, each linking to its evidence.

Every figure is what one of the SQL queries below returns; the page computes only dates
(when a period was due, from the contract's schedule) and differences of dates. Text from
deliveries (file names, column names) is escaped in both forms, and no row value is shown.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import yaml

from pipelines.governance.delivery_schedule import MONTHS, deadlines
from pipelines.governance.views import OPEN_STATUSES
from pipelines.lake.retention import expired, expiry
from pipelines.lake.store import Lake
from pipelines.oversight.charts import Reference, bar_chart, fmt_count
from schemas.contract import Contract
from schemas.contract_diff import DiffReport, diff_documents
from schemas.contract_page import agreement_title, contract_document, notice_response_days

LONDON = ZoneInfo("Europe/London")
DEFAULT_PERIODS = 12
# Ages of open breaches, in days since raised: the buckets the page counts them in.
AGE_BUCKETS = ((30, "under 30 days"), (90, "30 to 89 days"), (180, "90 to 179 days"),
               (None, "180 days or more"))  # fmt: skip

# ---------------------------------------------------------------------------------------
# The queries. Each takes the contract as $contract and the window as $first and $last
# (periods named YYYY-MM, by their first month, compare as text).
# ---------------------------------------------------------------------------------------

# Every file of each period (duplicates of a file already taken are not files of their own).
FILES_SQL = """
SELECT d.period, d.delivery_id, d.status, d.received_at, d.source_path,
       d.rows_delivered, d.rows_curated, d.rows_quarantined,
       p.first_published_at,
       (SELECT count(*) FROM governance.breaches b
        WHERE b.contract = d.contract AND b.delivery_id = d.delivery_id
          AND b.severity = 'critical') AS critical_breaches
FROM governance.deliveries d
LEFT JOIN (SELECT delivery_id, min(event_at) AS first_published_at
           FROM governance.delivery_events
           WHERE contract = $contract AND event = 'published' GROUP BY ALL) p USING (delivery_id)
WHERE d.contract = $contract AND d.status <> 'duplicate'
  AND d.period BETWEEN $first AND $last
ORDER BY d.period, d.received_at
"""

# The first period anything was delivered for: earlier periods predate the records.
FIRST_DELIVERED_SQL = """
SELECT min(period) FROM governance.deliveries WHERE contract = $contract
"""

# Rows of the files that stand now (published, held back, awaiting publication) per period.
VOLUME_SQL = """
SELECT period,
       sum(rows_delivered) AS rows_delivered,
       sum(rows_curated) AS rows_curated,
       sum(rows_quarantined) AS rows_quarantined
FROM governance.deliveries
WHERE contract = $contract AND status IN ('published', 'held', 'validated')
  AND period BETWEEN $first AND $last
GROUP BY period ORDER BY period
"""

# Breaches of the window's periods, with their status now.
BREACHES_SQL = """
SELECT breach_id, period, rule, severity, status, raised_at, clause_number,
       contract_version, recurrence
FROM governance.breach_register
WHERE contract = $contract AND period BETWEEN $first AND $last
ORDER BY period, rule
"""

# Each breach's lifecycle: when first notified, acknowledged, resolved, and closed at all.
LIFECYCLE_SQL = """
SELECT r.breach_id, r.period, r.rule, r.severity, r.status, r.raised_at,
       min(h.event_at) FILTER (WHERE h.status = 'notified') AS notified_at,
       min(h.event_at) FILTER (WHERE h.status = 'acknowledged') AS acknowledged_at,
       min(h.event_at) FILTER (WHERE h.status = 'resolved') AS resolved_at
FROM governance.breach_register r
JOIN governance.breach_history h USING (breach_id)
WHERE r.contract = $contract AND r.period BETWEEN $first AND $last
GROUP BY ALL
ORDER BY r.raised_at, r.breach_id
"""

# What is open now, whatever period it is for.
OPEN_SQL = f"""
SELECT breach_id, period, rule, severity, status, raised_at, clause_number
FROM governance.breach_register
WHERE contract = $contract AND status IN {OPEN_STATUSES}
ORDER BY raised_at, breach_id
"""

# Over-sharing: each file.unagreed_columns breach and the columns it names, quoted as
# validation wrote them ('Name' or "it's"), taken from its detail.
UNAGREED_SQL = """
SELECT period, breach_id,
       list_transform(
           regexp_extract_all(
               regexp_extract(detail, 'does not list \\((.*)\\)\\. Over-sharing', 1),
               '''[^'']*''|"[^"]*"'),
           lambda q: q[2:-2]) AS columns
FROM governance.breaches
WHERE contract = $contract AND rule = 'file.unagreed_columns'
  AND period BETWEEN $first AND $last
ORDER BY period
"""

# Erasures under retention (any period: a record outlives its data), with the rows that
# the erased period's deliveries had.
ERASURES_SQL = """
WITH erased AS (
    SELECT CAST(erased_at AT TIME ZONE 'Europe/London' AS DATE) AS erased_on, period,
           string_agg(DISTINCT area, ', ' ORDER BY area) AS areas,
           count(*) AS files, sum(bytes) AS bytes, min(clause) AS clause,
           min(erased_by) AS erased_by
    FROM governance.erasures WHERE contract = $contract GROUP BY ALL
)
SELECT e.*,
       (SELECT sum(rows_delivered) FROM governance.deliveries d
        WHERE d.contract = $contract AND d.period = e.period
          AND d.status <> 'duplicate') AS rows_delivered
FROM erased e ORDER BY erased_on, period
"""

# The contract versions the deliveries were checked against, as their breaches record.
VERSIONS_SQL = """
SELECT contract_version, min(period) AS first_period, max(period) AS last_period,
       count(DISTINCT period) AS periods, min(raised_at) AS first_seen
FROM governance.breach_records
WHERE contract = $contract AND period BETWEEN $first AND $last
  AND coalesce(contract_version, '') <> ''
GROUP BY contract_version ORDER BY first_seen
"""


# The governance views the queries above read. Each view reads the lake's files afresh
# whenever it is queried (the breach register alone 0.4 to 0.8 s on the demo's home, for 37
# rows), and a review queries them about eight times per contract.
GOVERNANCE_READ = ("deliveries", "delivery_events", "breaches", "breach_register",
                   "breach_history", "breach_records", "erasures")  # fmt: skip


# The governance views and tables of the attached warehouse.
PRESENT_SQL = """
SELECT view_name FROM duckdb_views()
WHERE database_name = 'warehouse' AND schema_name = 'governance'
UNION ALL SELECT table_name FROM duckdb_tables()
WHERE database_name = 'warehouse' AND schema_name = 'governance'
"""


def review_tables(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory database to build many reviews from, as `build_review` would read
    `warehouse` itself: the governance views it reads (`GOVERNANCE_READ`), copied once under
    the same names, and the warehouse attached read-only as `warehouse`, whose curated
    tables stay where they are (they can be larger than memory) and are found as
    `curated.<name>` through the search path. A view the warehouse lacks is not made up:
    the review's query of it fails, as it would on the warehouse."""
    from pipelines.warehouse.catalog import make_lake_readable  # DuckDB's S3 reader

    con = duckdb.connect()
    try:
        quoted = "'" + str(warehouse).replace("'", "''") + "'"
        con.execute(f"ATTACH {quoted} AS warehouse (READ_ONLY)")
        make_lake_readable(con, "warehouse")
        present = {name for (name,) in con.execute(PRESENT_SQL).fetchall()}
        con.execute("CREATE SCHEMA governance")
        for name in GOVERNANCE_READ:
            if name in present:
                con.execute(
                    f"CREATE TABLE governance.{name} AS SELECT * FROM warehouse.governance.{name}"
                )
        # `governance.x` names the copies above (this database's own schema comes first);
        # `curated.x`, which this database has no schema for, the warehouse's table.
        con.execute("SET search_path = 'memory.main,warehouse.curated'")
    except Exception:
        con.close()
        raise
    return con


def _curated_periods_sql(contract: Contract) -> str:
    """The periods the curated table holds now (a wide layout's releases, as delivered)."""
    target = f"curated.{contract.name}_releases" if contract.layout else f"curated.{contract.name}"
    return f"SELECT DISTINCT _period FROM {target} ORDER BY _period"


# ---------------------------------------------------------------------------------------
# The review: figures per section, then the same sections as words and tables.
# ---------------------------------------------------------------------------------------


@dataclass
class Table:
    """A table of a section: headers and rows of text (escaped when rendered)."""

    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One part of the review: an anchor for the points to link to, words, tables."""

    anchor: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    chart: str = ""  # an SVG from pipelines/oversight/charts (which escapes its own text)


@dataclass
class Point:
    """A point for the review meeting, and the section that is its evidence."""

    text: str
    anchor: str


@dataclass
class AgreementReview:
    """One agreement's review over a window: the figures, and the page's sections."""

    contract: str
    title: str
    reference: str
    first: str
    last: str
    today: dt.date
    periods: list[dict[str, Any]]  # one per period of the window: due, received, verdict
    figures: dict[str, Any]  # every count the page states, by name
    sections: list[Section] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict]:
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    cursor = con.execute(sql, used)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def add_periods(period: str, count: int) -> str:
    """The period `count` months after (or before) `period`, named YYYY-MM."""
    year, month = int(period[:4]), int(period[5:7])
    index = year * 12 + (month - 1) + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def window(
    contract: Contract, today: dt.date, first: str | None = None, last: str | None = None
) -> list[str]:
    """The periods of the review: from `first` to `last` on the contract's schedule; by
    default the last `DEFAULT_PERIODS` periods that have ended by `today`."""
    schedule = contract.schedule
    if schedule.period == "once":
        return [schedule.first_period]
    step = MONTHS.get(schedule.period, 1)
    if last is None:  # the last period that has ended, on the schedule
        last = schedule.first_period
        while add_periods(last, 2 * step) <= f"{today:%Y-%m}":
            last = add_periods(last, step)
    if first is None:
        first = add_periods(last, -step * (DEFAULT_PERIODS - 1))
    # Periods lie on the schedule: counted from its first period.
    offset = (_index(first) - _index(schedule.first_period)) % step
    period = add_periods(first, -offset) if offset else first
    periods = []
    while period <= last:
        periods.append(period)
        period = add_periods(period, step)
    return periods


def _index(period: str) -> int:
    return int(period[:4]) * 12 + int(period[5:7]) - 1


def _london(at: dt.datetime | None) -> dt.date | None:
    return at.astimezone(LONDON).date() if at else None


def _days_between(start: dt.datetime, end: dt.datetime) -> int:
    """Whole days from one London date to another (a breach raised on a Monday and resolved
    on the Wednesday took 2 days, whatever the hours)."""
    return (_london(end) - _london(start)).days


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def build_review(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    lake: Lake | None,
    today: dt.date,
    first: str | None = None,
    last: str | None = None,
) -> AgreementReview:
    """The review of `contract` over its window, from the warehouse `con` (and `lake`, to
    confirm nothing is held past retention; None leaves that check out)."""
    periods = window(contract, today, first, last)
    params = {"contract": contract.name, "first": periods[0], "last": periods[-1]}
    review = AgreementReview(
        contract=contract.name,
        title=agreement_title(contract_document(contract.path)),
        reference=str(contract.agreement.get("reference") or ""),
        first=periods[0],
        last=periods[-1],
        today=today,
        periods=[],
        figures={},
    )
    sections = [
        _deliveries(review, con, contract, periods, params),
        _breaches(review, con, periods, params),
        _responses(review, con, contract, params),
        _open_now(review, con, params),
        _over_sharing(review, con, params),
        _personal_data(review, con, contract, lake, today, params),
        _volume(review, con, periods, params),
        _versions(review, con, contract, params),
    ]
    review.sections = sections
    review.points = _points(review)
    return review


def _deliveries(
    review: AgreementReview,
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    periods: list[str],
    params: dict,
) -> Section:
    files = _rows(con, FILES_SQL, params)
    ((first_delivered,),) = con.execute(FIRST_DELIVERED_SQL, {"contract": contract.name}).fetchall()
    watched_from = contract.schedule.late_checks_from or first_delivered
    by_period: dict[str, list[dict]] = {}
    for f in files:
        by_period.setdefault(f["period"], []).append(f)
    rows, table = [], []
    for period in periods:
        due, late_after = deadlines(contract, period)
        mine = by_period.get(period, [])
        first_file = mine[0] if mine else None
        received = _london(first_file["received_at"]) if first_file else None
        published = [f["first_published_at"] for f in mine if f["first_published_at"]]
        row = dict(period=period, due=due, late_after=late_after, files=len(mine),
                   received=received, days_late=None, published=bool(published),
                   right_first_time=False)  # fmt: skip
        if received is not None:
            row["days_late"] = max((received - due).days, 0)
            row["right_first_time"] = bool(
                first_file["first_published_at"] and not first_file["critical_breaches"]
            )
        if received is None and (watched_from is None or period < watched_from):
            row["verdict"], verdict = "before records", "before the first delivery on record"
        elif due > review.today and received is None:
            row["verdict"], verdict = "not yet due", f"not yet due (due {due:%d %b %Y})"
        elif received is None:
            row["verdict"], verdict = "never received", "never received"
        elif row["days_late"] == 0:
            row["verdict"], verdict = "on time", "on time"
        else:
            row["verdict"] = "late"
            grace = " (within the agreed grace)" if received <= late_after else ""
            verdict = f"late by {_days(row['days_late'])}{grace}"
        if received is not None and not published:
            verdict += "; nothing published from it"
        rows.append(row)
        table.append([
            period, f"{due:%d %b %Y}", f"{received:%d %b %Y}" if received else "none",
            str(len(mine)), verdict,
            "yes" if row["right_first_time"] else ("no" if received else ""),
        ])  # fmt: skip
    review.periods = rows
    due_rows = [r for r in rows if r["verdict"] in ("on time", "late", "never received")]
    late = [r for r in due_rows if r["verdict"] == "late"]
    figures = review.figures
    figures["periods_due"] = len(due_rows)
    figures["periods_on_time"] = sum(r["verdict"] == "on time" for r in due_rows)
    figures["periods_late"] = len(late)
    figures["most_days_late"] = max((r["days_late"] for r in late), default=0)
    figures["periods_never_received"] = sum(r["verdict"] == "never received" for r in due_rows)
    figures["periods_right_first_time"] = sum(r["right_first_time"] for r in due_rows)
    figures["periods_before_records"] = sum(r["verdict"] == "before records" for r in rows)
    schedule = contract.schedule
    words = [
        f"Each period is due on day {schedule.due_day_of_following_month} of the month after "
        f"it ends and is late, for the register, {_days(schedule.late_after_days)} after that. "
        "A period counts as received on the day its first file arrived (London time).",
        f"Of {_plural(figures['periods_due'], 'period')} due: "
        f"{figures['periods_on_time']:,} on time, {figures['periods_late']:,} late"
        + (f" (up to {_days(figures['most_days_late'])})" if late else "")
        + f", {figures['periods_never_received']:,} never received.",
        f"Right first time (the first file published with no critical breach): "
        f"{figures['periods_right_first_time']:,} of {figures['periods_due']:,}.",
    ]
    if figures["periods_before_records"]:
        words.append(
            f"{_plural(figures['periods_before_records'], 'period')} of the window "
            "came before the first delivery on record and are not counted."
        )
    headers = ["Period", "Due", "First file received", "Files", "Delivery", "Right first time"]
    return Section("deliveries", "Deliveries", words, [Table(headers, table)])


def _breaches(
    review: AgreementReview, con: duckdb.DuckDBPyConnection, periods: list[str], params: dict
) -> Section:
    breaches = _rows(con, BREACHES_SQL, params)
    figures = review.figures
    figures["breaches"] = len(breaches)
    severities = ("critical", "major", "minor")
    for severity in severities:
        figures[f"breaches_{severity}"] = sum(b["severity"] == severity for b in breaches)
    # Rule by period: how many breaches of each rule (and severity) each period had.
    grid: dict[tuple[str, str], dict[str, int]] = {}
    for b in breaches:
        cell = grid.setdefault((b["rule"], b["severity"]), {})
        cell[b["period"]] = cell.get(b["period"], 0) + 1
    order = sorted(grid, key=lambda k: (severities.index(k[1]) if k[1] in severities else 9, k[0]))
    shown = [p for p in periods if any(p in grid[k] for k in grid)]
    table = Table(
        ["Rule", "Severity", *shown, "Periods"],
        [[rule, severity, *(str(grid[(rule, severity)].get(p, "")) for p in shown),
          str(len(grid[(rule, severity)]))] for rule, severity in order],
    )  # fmt: skip
    words = [
        f"{_plural(len(breaches), 'breach', 'breaches')} raised for the window's periods: "
        + ", ".join(f"{figures[f'breaches_{s}']:,} {s}" for s in severities)
        + "."
    ]
    if not breaches:
        return Section("breaches", "Breaches by rule and severity", words)
    # Rules failing again and again: broken in two or more periods of the window.
    again = sorted(
        ((rule, cells) for (rule, _), cells in grid.items() if len(cells) >= 2),
        key=lambda rc: (-len(rc[1]), rc[0]),
    )
    recurring = {}
    for rule, cells in again:
        recurring[rule] = recurring.get(rule, set()) | set(cells)
    figures["recurring_rules"] = {rule: len(p) for rule, p in recurring.items()}
    still_open = {
        rule: sum(b["rule"] == rule and b["status"] in OPEN_STATUSES for b in breaches)
        for rule in recurring
    }
    figures["recurring_open"] = still_open
    section = Section("breaches", "Breaches by rule and severity", words, [table])
    again_words = (
        f"{_plural(len(recurring), 'rule')} failed in two or more periods."
        if recurring
        else "No rule failed in more than one period."
    )
    section.tables.append(
        Table(
            ["Rule failing again and again", "Periods", "First", "Last", "Open now"],
            [
                [rule, str(len(p)), min(p), max(p), str(still_open[rule])]
                for rule, p in sorted(recurring.items(), key=lambda rp: (-len(rp[1]), rp[0]))
            ],
        )  # fmt: skip
    )
    section.paragraphs.append(again_words)
    return section


def _responses(
    review: AgreementReview, con: duckdb.DuckDBPyConnection, contract: Contract, params: dict
) -> Section:
    agreed = notice_response_days(contract.agreement)
    steps = _rows(con, LIFECYCLE_SQL, params)
    today, figures = review.today, review.figures
    resolved = [s for s in steps if s["resolved_at"]]
    days_to_resolve = [_days_between(s["raised_at"], s["resolved_at"]) for s in resolved]
    notified = [s for s in steps if s["notified_at"]]
    answered = [s for s in notified if s["acknowledged_at"]]
    in_time = [
        s for s in answered
        if agreed is None or _days_between(s["notified_at"], s["acknowledged_at"]) <= agreed
    ]  # fmt: skip
    overdue = [
        s for s in notified
        if agreed is not None and s["status"] == "notified" and not s["acknowledged_at"]
        and (today - _london(s["notified_at"])).days > agreed
    ]  # fmt: skip
    figures.update(
        breaches_resolved=len(resolved),
        median_days_to_resolve=median(days_to_resolve) if days_to_resolve else None,
        most_days_to_resolve=max(days_to_resolve, default=None),
        resolved_within_agreed=sum(agreed is not None and d <= agreed for d in days_to_resolve),
        breaches_notified=len(notified),
        acknowledged_in_time=len(in_time),
        acknowledged_late=len(answered) - len(in_time),
        notices_overdue=len(overdue),
    )
    agreed_words = (
        f"The agreement gives the force {_days(agreed)} to acknowledge a notice of breach "
        "(noticeResponseDays)."
        if agreed
        else "The agreement sets no days to acknowledge a notice of breach."
    )
    words = [agreed_words]
    if resolved:
        words.append(
            f"{_plural(len(resolved), 'breach was', 'breaches were')} resolved, in a median of "
            f"{_days(round(figures['median_days_to_resolve']))} from raised (at most "
            f"{_days(figures['most_days_to_resolve'])})"
            + (f"; {figures['resolved_within_agreed']:,} within {_days(agreed)}, the agreed "
               "response time." if agreed else ".")
        )  # fmt: skip
    else:
        words.append("No breach of the window's periods has been resolved.")
    words.append(
        f"{_plural(len(notified), 'breach was', 'breaches were')} notified to the force: "
        f"{len(in_time):,} acknowledged within the agreed days, "
        f"{figures['acknowledged_late']:,} acknowledged later, "
        f"{len(overdue):,} still unacknowledged past them."
    )

    def day(at: dt.datetime | None) -> str:
        return f"{_london(at):%d %b %Y}" if at else ""

    rows = []
    for s in steps:
        if not (s["notified_at"] or s["acknowledged_at"] or s["resolved_at"]):
            continue  # raised and nothing else yet: in 'open now' (or closed on its own)
        ack = ""
        if s["notified_at"] and s["acknowledged_at"]:
            ack = _days(_days_between(s["notified_at"], s["acknowledged_at"]))
        elif s in overdue:
            ack = f"none after {_days((today - _london(s['notified_at'])).days)}"
        took = _days_between(s["raised_at"], s["resolved_at"]) if s["resolved_at"] else None
        rows.append([s["breach_id"], s["period"], s["rule"], s["severity"], day(s["raised_at"]),
                     day(s["notified_at"]), ack, day(s["resolved_at"]),
                     _days(took) if took is not None else "", s["status"]])  # fmt: skip
    headers = ["Breach", "Period", "Rule", "Severity", "Raised", "Notified", "Acknowledged after",
               "Resolved", "Raised to resolved", "Status now"]  # fmt: skip
    return Section("responses", "How breaches were answered", words,
                   [Table(headers, rows)] if rows else [])  # fmt: skip


def _open_now(review: AgreementReview, con: duckdb.DuckDBPyConnection, params: dict) -> Section:
    rows = _rows(con, OPEN_SQL, params)
    counts = {label: 0 for _, label in AGE_BUCKETS}
    table = []
    for r in rows:
        age = (review.today - _london(r["raised_at"])).days
        label = next(lbl for limit, lbl in AGE_BUCKETS if limit is None or age < limit)
        counts[label] += 1
        table.append([r["breach_id"], r["period"], r["rule"], r["clause_number"] or "",
                      r["severity"], r["status"], _days(age)])  # fmt: skip
    review.figures["open_now"] = len(rows)
    review.figures["open_critical"] = sum(r["severity"] == "critical" for r in rows)
    review.figures["open_by_age"] = counts
    review.figures["oldest_open_days"] = max(
        ((review.today - _london(r["raised_at"])).days for r in rows), default=None
    )
    words = [
        f"{_plural(len(rows), 'breach is', 'breaches are')} open now (open, notified or "
        "acknowledged), whatever period they are for"
        + (": " + ", ".join(f"{n:,} {label}" for label, n in counts.items() if n) if rows else "")
        + "."
    ]
    headers = ["Breach", "Period", "Rule", "Clause", "Severity", "Status", "Age"]
    return Section("open", "Open now, by age", words, [Table(headers, table)] if table else [])


def _over_sharing(review: AgreementReview, con: duckdb.DuckDBPyConnection, params: dict) -> Section:
    rows = _rows(con, UNAGREED_SQL, params)
    months: dict[str, set[str]] = {}
    for r in rows:
        for column in r["columns"] or ["(not named)"]:
            months.setdefault(column, set()).add(r["period"])
    periods = sorted({r["period"] for r in rows})
    review.figures["over_sharing_periods"] = len(periods)
    review.figures["unagreed_columns"] = {c: len(p) for c, p in months.items()}
    if not rows:
        words = ["No file in the window carried a column the agreement does not list."]
        return Section("over-sharing", "Over-sharing", words)
    words = [
        f"Files of {_plural(len(periods), 'period')} carried "
        f"{_plural(len(months), 'column')} the agreement does not list; each was withheld "
        "(not published), and each such file is a file.unagreed_columns breach."
    ]
    table = Table(
        ["Column sent without agreement", "Periods", "Which"],
        [[c, str(len(p)), ", ".join(sorted(p))]
         for c, p in sorted(months.items(), key=lambda cp: (-len(cp[1]), cp[0]))],
    )  # fmt: skip
    return Section("over-sharing", "Over-sharing", words, [table])


def _personal_data(
    review: AgreementReview,
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    lake: Lake | None,
    today: dt.date,
    params: dict,
) -> Section:
    figures = review.figures
    classified = [(c.name, c.classification) for c in contract.columns if c.classification]
    pseudonymised = list(contract.pseudonymised)
    words = [
        "Pseudonymised fields: " + (", ".join(pseudonymised) if pseudonymised else "none") + ".",
    ]
    tables = []
    if classified:
        tables.append(Table(["Field", "Classification"], [[n, c] for n, c in classified]))
    retention = contract.agreement.get("retention")
    erasures = _rows(con, ERASURES_SQL, params)
    figures["erasures"] = len(erasures)
    figures["erased_files"] = sum(e["files"] for e in erasures)
    if erasures:
        words.append(
            f"{_plural(figures['erased_files'], 'file')} of "
            f"{_plural(len({e['period'] for e in erasures}), 'period')} erased under retention."
        )
        tables.append(Table(
            ["Erased on", "Period", "What", "Files", "Bytes", "Rows delivered", "By", "Under"],
            [[f"{e['erased_on']:%d %b %Y}", e["period"], e["areas"], f"{e['files']:,}",
              f"{e['bytes']:,}", f"{e['rows_delivered']:,}" if e["rows_delivered"] else "",
              e["erased_by"], e["clause"]] for e in erasures],
        ))  # fmt: skip
    else:
        words.append("Nothing has been erased under retention yet.")
    months = MONTHS.get(contract.schedule.period, 1)
    if retention:
        held = [p for (p,) in con.execute(_curated_periods_sql(contract)).fetchall()]
        figures["curated_periods_held"] = len(held)
        figures["curated_periods_past_retention"] = sum(
            expiry(p, retention, months) <= today for p in held
        )
        if held:
            nxt = held[0]
            figures["next_erasure"] = (nxt, expiry(nxt, retention, months))
            words.append(
                f"Retention is {retention}: the oldest period held, {nxt}, falls due for "
                f"erasure on {expiry(nxt, retention, months):%d %b %Y}."
            )
        if lake is not None:
            past = expired(contract, lake, today)
            figures["files_past_retention"] = len(past)
            if past:
                words.append(
                    f"{_plural(len(past), 'file')} in the lake "
                    f"({', '.join(sorted({e.period for e in past}))}) "
                    f"are past retention on {today:%d %b %Y}: `datashare retention --apply` "
                    "erases them."
                )
            else:
                words.append(
                    f"Checked in the lake on {today:%d %b %Y}: nothing is held past its retention."
                )
    else:
        words.append("The agreement sets no retention period.")
    return Section("personal-data", "Personal data", words, tables)


def _volume(
    review: AgreementReview, con: duckdb.DuckDBPyConnection, periods: list[str], params: dict
) -> Section:
    rows = {r["period"]: r for r in _rows(con, VOLUME_SQL, params)}
    published = [r["rows_curated"] for r in rows.values() if r["rows_curated"]]
    usual = median(published) if published else None
    review.figures["usual_rows"] = usual
    review.figures["rows_by_period"] = rows
    unusual = []
    table = []
    for period in periods:
        r = rows.get(period)
        if r is None:
            table.append([period, "no file published or held", "", "", ""])
            continue
        share = r["rows_curated"] / usual if usual and r["rows_curated"] is not None else None
        if share is not None and not 0.5 <= share <= 1.5:
            unusual.append((period, share))
        table.append([period, f"{r['rows_delivered'] or 0:,}", f"{r['rows_curated'] or 0:,}",
                      f"{r['rows_quarantined'] or 0:,}",
                      f"{share:.0%}" if share is not None else ""])  # fmt: skip
    review.figures["unusual_volume"] = unusual
    words = [
        "Rows of the files that stand now (published, held back or awaiting publication). "
        + (
            f"The usual volume is the median of the rows published per period: {usual:,.0f}."
            if usual
            else "Nothing was published in the window."
        )
    ]
    if unusual:
        words.append(
            "Outside half to one and a half times the usual volume: "
            + ", ".join(f"{p} ({s:.0%})" for p, s in unusual)
            + "."
        )
    chart = ""
    if rows:
        chart = bar_chart(
            f"Rows per period: {review.title}",
            list(rows),
            [("published", [r["rows_curated"] for r in rows.values()]),
             ("quarantined", [r["rows_quarantined"] for r in rows.values()])],
            value_format=fmt_count,
            references=[Reference("usual volume", float(usual))] if usual else (),
        )  # fmt: skip
    headers = ["Period", "Rows delivered", "Rows published", "Rows quarantined", "Of usual"]
    section = Section("volume", "Rows per period", words, [Table(headers, table)], chart)
    return section


def _versions(
    review: AgreementReview, con: duckdb.DuckDBPyConnection, contract: Contract, params: dict
) -> Section:
    seen = _rows(con, VERSIONS_SQL, params)
    versions = [s["contract_version"] for s in seen]
    if contract.version not in versions:
        versions.append(contract.version)
    review.figures["versions"] = versions
    table = Table(
        ["Version", "First period checked", "Last period checked", "Periods"],
        [[s["contract_version"], s["first_period"], s["last_period"], str(s["periods"])]
         for s in seen],
    )  # fmt: skip
    if len(versions) == 1:
        words = [
            f"One version of the contract was in force over the window: {versions[0]} "
            "(nothing changed)."
        ]
        return Section("versions", "Contract versions", words, [table] if seen else [])
    words = [
        f"{len(versions)} versions were in force over the window: {', '.join(versions)} "
        f"(the contract file is at {contract.version} now)."
    ]
    texts = earlier_texts(contract)
    governance_changes = 0
    tables = [table]
    for old, new in zip(versions, versions[1:], strict=False):
        if old not in texts or new not in texts:
            words.append(
                f"{old} to {new}: the text of {old if old not in texts else new} is not in the "
                "contracts folder's history; `datashare contracts diff OLD NEW` compares two "
                "files."
            )
            continue
        report: DiffReport = diff_documents(texts[old], texts[new])
        governance_changes += len(report.of("governance"))
        tables.append(Table(
            [f"{old} to {new}: change", "Where", "Kind"],
            [[c.message, c.where,
              "GOVERNANCE: needs a variation of the agreement" if c.verdict == "governance"
              else c.verdict] for c in report.changes] or [["no changes", "", ""]],
        ))  # fmt: skip
    review.figures["governance_changes"] = governance_changes
    return Section("versions", "Contract versions", words, tables)


def earlier_texts(contract: Contract) -> dict[str, dict]:
    """Each version's contract document, from the contract file and, where the contracts
    folder is a git checkout, its history (the newest text of each version)."""
    texts = {contract.version: contract_document(contract.path)}
    folder = contract.path.parent
    try:
        log = subprocess.run(
            ["git", "log", "--format=%H", "--", contract.path.name],
            cwd=folder, capture_output=True, text=True, timeout=20, check=True,
        ).stdout.split()  # fmt: skip
        prefix = subprocess.run(
            ["git", "rev-parse", "--show-prefix"],
            cwd=folder, capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return texts
    for commit in log:
        shown = subprocess.run(
            ["git", "show", f"{commit}:{prefix}{contract.path.name}"],
            cwd=folder, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        if shown.returncode:
            continue
        try:
            doc = yaml.safe_load(shown.stdout)
        except yaml.YAMLError:
            continue
        version = str(doc.get("version", "")) if isinstance(doc, dict) else ""
        texts.setdefault(version, doc)
    return texts


def _points(review: AgreementReview) -> list[Point]:
    """The review meeting's agenda: what the figures say needs discussing, in words."""
    f, points = review.figures, []
    if f["periods_late"] or f["periods_never_received"]:
        text = f"{f['periods_late']:,} of {f['periods_due']:,} periods came late"
        if f["periods_late"]:
            text += f" (up to {_days(f['most_days_late'])})"
        if f["periods_never_received"]:
            text += f" and {f['periods_never_received']:,} never came"
        text += ": is the delivery schedule still workable for the force?"
        points.append(Point(text, "deliveries"))
    elif f["periods_due"]:
        text = f"Every one of the {_plural(f['periods_due'], 'period')} due came on time."
        points.append(Point(text, "deliveries"))
    else:
        text = "Nothing is on record for the window: is the agreement still in use?"
        points.append(Point(text, "deliveries"))
    if f["periods_due"] and f["periods_right_first_time"] < f["periods_due"]:
        points.append(Point(
            f"{f['periods_right_first_time']:,} of {f['periods_due']:,} periods were right "
            "first time.", "deliveries"))  # fmt: skip
    for rule, n in sorted(f.get("recurring_rules", {}).items(), key=lambda rn: -rn[1])[:3]:
        points.append(Point(
            f"{rule} failed in {n} periods ({f['recurring_open'][rule]:,} still open): agree "
            "a fix at source, or whether the rule is still right.", "breaches"))  # fmt: skip
    if f["notices_overdue"] or f["acknowledged_late"]:
        points.append(Point(
            f"{f['notices_overdue'] + f['acknowledged_late']:,} notice(s) of breach were not "
            "acknowledged within the agreed days.", "responses"))  # fmt: skip
    if f["open_now"]:
        points.append(Point(
            f"{_plural(f['open_now'], 'breach is', 'breaches are')} open "
            f"({f['open_critical']:,} critical), the oldest for "
            f"{_days(f['oldest_open_days'])}.", "open"))  # fmt: skip
    if f["over_sharing_periods"]:
        points.append(Point(
            "Columns outside the agreement were sent in "
            f"{_plural(f['over_sharing_periods'], 'period')}: ask the force to stop sending "
            "them.", "over-sharing"))  # fmt: skip
    if f.get("files_past_retention"):
        points.append(Point(
            f"{_plural(f['files_past_retention'], 'file is', 'files are')} held past "
            "retention: erase them before the meeting.", "personal-data"))  # fmt: skip
    elif "next_erasure" in f:
        period, on = f["next_erasure"]
        points.append(Point(
            f"Nothing is held past retention; {period} falls due for erasure on "
            f"{on:%d %b %Y}.", "personal-data"))  # fmt: skip
    if f["unusual_volume"]:
        points.append(
            Point(
                "Volume was unusual in "
                + ", ".join(p for p, _ in f["unusual_volume"])
                + ": is anything missing, or did the force's recording change?",
                "volume",
            )
        )
    if len(f["versions"]) > 1:
        changes = f.get("governance_changes", 0)
        points.append(Point(
            f"The contract changed over the window ({', '.join(f['versions'])})"
            + (f", with {_plural(changes, 'governance change')}: check each was agreed as a "
               "variation." if changes else "."), "versions"))  # fmt: skip
    return points
