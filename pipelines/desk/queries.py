"""What the desk's pages read: `governance` in warehouse.duckdb, read-only.

Every count the desk shows is a query on `governance.breach_register`, the view the review
page, notices, `datashare breaches` and analysts read, so they never disagree. Filters and
sort orders are chosen from fixed lists; values from a request are bound as parameters,
never written into SQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.governance.views import OPEN_STATUSES
from pipelines.warehouse.catalog import connect, has_breach_views  # noqa: F401 (app.py reads it here)

SEVERITIES = ("critical", "major", "minor")
# The status filter: "to act on" is every open status (what the headline counts).
STATUS_CHOICES = {
    "": ("to act on", OPEN_STATUSES),
    "any": ("any status", None),
    **{s: (s, (s,)) for s in (*OPEN_STATUSES, "resolved", "waived", "superseded")},
}
# Age: days since the breach was raised.
AGE_CHOICES = {"": "any age", "7": "over a week", "30": "over 30 days", "90": "over 90 days"}
_RANK = {"critical": 0, "major": 1, "minor": 2}


def _severity(row: dict) -> int:
    return _RANK.get(row["severity"], 3)


SORTS = {
    "severity": (
        "severity, oldest first",
        lambda r: (_severity(r), r["raised_at"], r["breach_id"]),
    ),
    "oldest": ("oldest first", lambda r: (r["raised_at"], r["breach_id"])),
    "newest": ("newest first", lambda r: (-r["raised_at"].timestamp(), r["breach_id"])),
    "contract": (
        "contract and period",
        lambda r: (r["contract"], r["period"], _severity(r), r["breach_id"]),
    ),
    "period": (
        "latest period first",
        lambda r: (_descending(r["period"]), r["contract"], _severity(r), r["breach_id"]),
    ),
    "recurrence": (
        "most recurrent first",
        lambda r: (-r["recurrence"], _severity(r), r["breach_id"]),
    ),
}


def _descending(text: str) -> tuple[int, ...]:
    """A key that sorts text (a period) latest first."""
    return tuple(-ord(c) for c in text)


PAGE_SIZE = 50


@dataclass
class BreachQuery:
    """The filters, sort and page of the breaches page, as the request gave them."""

    contract: str = ""
    period: str = ""
    severity: str = ""
    status: str = ""
    age: str = ""
    sort: str = "severity"
    page: int = 1

    @classmethod
    def from_params(cls, params: dict[str, str]) -> BreachQuery:
        """The query from URL parameters; anything not on a list is dropped."""
        q = cls(
            contract=params.get("contract", "").strip(),
            period=params.get("period", "").strip(),
            severity=params.get("severity", ""),
            status=params.get("status", ""),
            age=params.get("age", ""),
            sort=params.get("sort", "severity"),
        )
        q.severity = q.severity if q.severity in SEVERITIES else ""
        q.status = q.status if q.status in STATUS_CHOICES else ""
        q.age = q.age if q.age in AGE_CHOICES else ""
        q.sort = q.sort if q.sort in SORTS else "severity"
        try:
            q.page = max(1, int(params.get("page", "1")))
        except ValueError:
            q.page = 1
        return q

    def matches(self, row: dict) -> bool:
        """Whether a `governance.breach_register` row passes the filters."""
        statuses = STATUS_CHOICES[self.status][1]
        return (
            (not self.contract or row["contract"] == self.contract)
            and (not self.period or row["period"] == self.period)
            and (not self.severity or row["severity"] == self.severity)
            and (statuses is None or row["status"] in statuses)
            and (not self.age or row["age_days"] > int(self.age))
        )

    def link(self, **changes: object) -> str:
        """The query string of this query with `changes` (page back to 1 unless given)."""
        from urllib.parse import urlencode

        values = {
            "contract": self.contract, "period": self.period, "severity": self.severity,
            "status": self.status, "age": self.age, "sort": self.sort, "page": 1,
        }  # fmt: skip
        values.update(changes)
        kept = {k: v for k, v in values.items() if v not in ("", None) and (k, v) != ("page", 1)}
        return "?" + urlencode(kept) if kept else "?"


@dataclass
class BreachPage:
    """One page of breaches with the counts of everything the filters match."""

    rows: list[dict]
    total: int
    by_severity: dict[str, int]
    pages: int
    contracts: list[str]
    periods: list[str]
    open_total: int = 0
    critical_open: int = 0  # open, notified or acknowledged, and critical
    open_over_30_days: int = 0
    unsent_months: int = 0  # contract-months with an open breach and no notice recorded sent


def dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    """The rows of `sql` as dicts."""
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


LIST_COLUMNS = (
    "breach_id, contract, period, severity, status, rule, clause_number, clause_title, "
    "failing_rows, rows_checked, recurrence, detail, raised_at, updated_at, delivery_status, "
    "date_diff('day', raised_at, now()) AS age_days"
)


def breach_page(warehouse: Path, query: BreachQuery) -> BreachPage:
    """The breaches the query matches: one page of them, their counts, the filter choices.

    One read of `governance.breach_register` (its few hundred rows; each query of the view
    recomputes statuses and recurrence), filtered, counted and sorted from those rows; the
    months whose notice is unsent counted from them too, with the months sent.
    """
    with connect(warehouse) as con:
        every = dicts(con, f"SELECT {LIST_COLUMNS} FROM governance.breach_register")
        sent = dicts(con, "SELECT DISTINCT contract, period FROM governance.exports")
    open_months = {(r["contract"], r["period"]) for r in every if r["status"] in OPEN_STATUSES}
    matching = sorted((r for r in every if query.matches(r)), key=SORTS[query.sort][1])
    pages = max(1, math.ceil(len(matching) / PAGE_SIZE))
    query.page = min(query.page, pages)
    start = (query.page - 1) * PAGE_SIZE
    return BreachPage(
        rows=matching[start : start + PAGE_SIZE],
        total=len(matching),
        by_severity={s: sum(r["severity"] == s for r in matching) for s in SEVERITIES},
        pages=pages,
        contracts=sorted({r["contract"] for r in every}),
        periods=sorted({r["period"] for r in every}, reverse=True),
        open_total=sum(r["status"] in OPEN_STATUSES for r in every),
        critical_open=sum(
            r["status"] in OPEN_STATUSES and r["severity"] == "critical" for r in every
        ),
        open_over_30_days=sum(r["status"] in OPEN_STATUSES and r["age_days"] > 30 for r in every),
        unsent_months=len(open_months - {(m["contract"], m["period"]) for m in sent}),
    )


def breach_detail(warehouse: Path, breach_id: str) -> tuple[dict, list[dict]] | None:
    """One breach's register row and its history (raising first), or None."""
    with connect(warehouse) as con:
        rows = dicts(
            con,
            "SELECT *, date_diff('day', raised_at, now()) AS age_days "
            "FROM governance.breach_register WHERE breach_id = ?",
            [breach_id],
        )
        if not rows:
            return None
        history = dicts(
            con,
            "SELECT * FROM governance.breach_history WHERE breach_id = ? "
            "ORDER BY event_at, CASE step WHEN 'raised' THEN 0 ELSE 1 END",
            [breach_id],
        )
    return rows[0], history


def notice_months(warehouse: Path) -> list[dict]:
    """Each contract-month with an open breach, with its open count by severity, and when a
    notice for it was last exported."""
    with connect(warehouse) as con:
        return dicts(
            con,
            "WITH open AS (SELECT contract, period, count(*) AS open_breaches, "
            "count(*) FILTER (WHERE severity = 'critical') AS critical "
            "FROM governance.breach_register WHERE status IN "
            f"({', '.join('?' for _ in OPEN_STATUSES)}) GROUP BY ALL), "
            "sent AS (SELECT contract, period, max(exported_at) AS last_sent, "
            "arg_max(exported_by, exported_at) AS sent_by "
            "FROM governance.exports GROUP BY ALL) "
            "SELECT o.*, s.last_sent, s.sent_by FROM open o LEFT JOIN sent s "
            "USING (contract, period) ORDER BY period DESC, contract",
            list(OPEN_STATUSES),
        )


def exports_of(warehouse: Path, contract: str, period: str) -> list[dict]:
    """What was exported (notices sent) for one contract-month, latest first."""
    with connect(warehouse) as con:
        return dicts(
            con,
            "SELECT * FROM governance.exports WHERE contract = ? AND period = ? "
            "ORDER BY exported_at DESC",
            [contract, period],
        )


def audit_log(warehouse: Path, limit: int = 200) -> list[dict]:
    """The latest entries of `governance.audit_log` (who did what, when, and why)."""
    with connect(warehouse) as con:
        return dicts(con, 'SELECT * FROM governance.audit_log ORDER BY "at" DESC LIMIT ?', [limit])
