"""What the desk's pages read: `governance` in warehouse.duckdb, read-only.

Every count the desk shows is a query on `governance.breach_register`, the view the review
page, notices, `datashare breaches` and analysts read, so they never disagree. Filters and
sort orders are chosen from fixed lists (never SQL from the request); values are bound as
parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.governance_views import OPEN_STATUSES
from pipelines.warehouse import connect

SEVERITIES = ("critical", "major", "minor")
# The status filter: "to act on" is every open status (what the headline counts).
STATUS_CHOICES = {
    "": ("to act on", OPEN_STATUSES),
    "any": ("any status", None),
    **{s: (s, (s,)) for s in (*OPEN_STATUSES, "resolved", "waived", "superseded")},
}
# Age: days since the breach was raised.
AGE_CHOICES = {"": "any age", "7": "over a week", "30": "over 30 days", "90": "over 90 days"}
SEVERITY_RANK = "CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 ELSE 2 END"
SORTS = {
    "severity": ("severity, oldest first", f"{SEVERITY_RANK}, raised_at, breach_id"),
    "oldest": ("oldest first", "raised_at, breach_id"),
    "newest": ("newest first", "raised_at DESC, breach_id"),
    "contract": ("contract and period", "contract, period, " + SEVERITY_RANK + ", breach_id"),
    "period": ("latest period first", f"period DESC, contract, {SEVERITY_RANK}, breach_id"),
    "recurrence": ("most recurrent first", f"recurrence DESC, {SEVERITY_RANK}, breach_id"),
}
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

    def where(self) -> tuple[str, list]:
        """The WHERE clause and its parameters."""
        clauses, params = [], []
        if self.contract:
            clauses.append("contract = ?")
            params.append(self.contract)
        if self.period:
            clauses.append("period = ?")
            params.append(self.period)
        if self.severity:
            clauses.append("severity = ?")
            params.append(self.severity)
        statuses = STATUS_CHOICES[self.status][1]
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params += list(statuses)
        if self.age:
            clauses.append("raised_at < now() - to_days(?)")
            params.append(int(self.age))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

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
    notices: set[tuple[str, str]] = field(default_factory=set)


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
    """The breaches the query matches: one page of them, their counts, the filter choices."""
    where, params = query.where()
    with connect(warehouse) as con:
        counts = dict(
            con.execute(
                f"SELECT severity, count(*) FROM governance.breach_register{where} GROUP BY 1",
                params,
            ).fetchall()
        )
        total = sum(counts.values())
        pages = max(1, math.ceil(total / PAGE_SIZE))
        query.page = min(query.page, pages)
        rows = dicts(
            con,
            f"SELECT {LIST_COLUMNS} FROM governance.breach_register{where} "
            f"ORDER BY {SORTS[query.sort][1]} LIMIT {PAGE_SIZE} OFFSET ?",
            [*params, (query.page - 1) * PAGE_SIZE],
        )
        contracts = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT contract FROM governance.breach_register ORDER BY 1"
            ).fetchall()
        ]
        periods = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT period FROM governance.breach_register ORDER BY 1 DESC"
            ).fetchall()
        ]
        (open_total,) = con.execute(
            "SELECT count(*) FROM governance.breach_register WHERE status IN "
            f"({', '.join('?' for _ in OPEN_STATUSES)})",
            list(OPEN_STATUSES),
        ).fetchone()
    return BreachPage(
        rows=rows,
        total=total,
        by_severity={s: counts.get(s, 0) for s in SEVERITIES},
        pages=pages,
        contracts=contracts,
        periods=periods,
        open_total=open_total,
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


def has_breach_views(warehouse: Path) -> bool:
    """Whether the warehouse exists with the views the desk reads (one built by an older
    version lacks `breach_history`)."""
    if not warehouse.exists():
        return False
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (found,) = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'governance' "
            "AND view_name = 'breach_history'"
        ).fetchone()
    return bool(found)
