"""The breach register that data-sharing leads work from.

Each breach (one rule broken by one delivery) has a lifecycle: open, notified (sent to
the force), acknowledged, then resolved or waived. Every step is an immutable event in the
lake with who, when and a note; the history is kept, never overwritten. A breach of a
delivery that the force replaced with a published re-send becomes superseded on its own
(derived when read, see pipelines/governance/views.py); a lead may reopen it.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from pipelines.governance.views import clause_table, in_memory, parts_table
from pipelines.lake.register import DELIVERY_EVENT_SCHEMA, Register
from pipelines.lake.store import Lake
from schemas.contract import load_contracts

# `superseded` is never set by a lead: a breach becomes superseded on its own when its
# delivery is replaced by a published re-send of the month (pipelines/governance/views.py).
STATUSES = ("open", "notified", "acknowledged", "resolved", "waived", "superseded")
# action -> (statuses it may start from, status it leads to)
TRANSITIONS = {
    "notify": (("open",), "notified"),
    "ack": (("open", "notified"), "acknowledged"),
    "resolve": (("open", "notified", "acknowledged"), "resolved"),
    "waive": (("open", "notified", "acknowledged"), "waived"),
    "reopen": (("resolved", "waived", "superseded"), "open"),
}

BREACH_EVENT_SCHEMA = pa.schema(
    [
        ("breach_id", pa.string()),
        ("contract", pa.string()),
        ("status", pa.string()),
        ("actor", pa.string()),
        ("note", pa.string()),
        ("event_at", pa.timestamp("us", tz="UTC")),
    ]
)


class BreachChangeError(ValueError):
    """A lifecycle step that is not allowed, with the reason in plain words."""


@dataclass
class BreachEvent:
    breach_id: str
    contract: str
    status: str
    actor: str
    note: str
    event_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class BreachRegister:
    """Breaches as recorded by validation, with their lifecycle and recurrence."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.register = Register(lake)

    def _event_table(self) -> pa.Table:
        files = self.lake.glob("governance/breach_events/contract=*/*.parquet")
        if not files:
            return BREACH_EVENT_SCHEMA.empty_table()
        return self.lake.read_all(files, BREACH_EVENT_SCHEMA)

    def _tables(self) -> _Tables:
        """The register as read from the lake, the tables the breach views are made over."""
        contracts = load_contracts()
        return _Tables(
            self.register.breach_table(),
            self._event_table(),
            pa.Table.from_pylist(self.register.events(), DELIVERY_EVENT_SCHEMA),
            clause_table(contracts),
            parts_table(contracts),
        )

    def entries(
        self,
        contract: str | None = None,
        period: str | None = None,
        severity: str | None = None,
        status: str | None = None,
    ) -> list[dict]:
        """Every breach with its status, history, recurrence, clause and what became of its
        delivery, filtered: the rows of `governance.breach_register`, read from the lake
        through the same views (so the CLI and the warehouse never disagree)."""
        return _entries(self._tables(), contract, period, severity, status)

    def get(self, breach_id: str) -> dict:
        """The one breach whose id starts with `breach_id`."""
        return _one(self.entries(), breach_id)

    def change(self, breach_id: str, action: str, actor: str, note: str) -> dict:
        """Move a breach one step through its lifecycle; returns the updated entry.

        The lake is read once: the entry returned is made over the tables that read gave,
        with the new event added to the breach events, as a fresh `get` would read them
        (reading the whole register again was a third of what a change cost, with the
        real June 2022 file published and 300 steps on record)."""
        if action not in TRANSITIONS:
            raise BreachChangeError(f"Unknown action {action!r}.")
        allowed_from, target = TRANSITIONS[action]
        tables = self._tables()
        entry = _one(_entries(tables), breach_id)
        if entry["status"] not in allowed_from:
            raise BreachChangeError(
                f"{entry['breach_id']} is {entry['status']}; it cannot be moved to {target} "
                f"(only from {', '.join(allowed_from)})."
            )
        if action in ("waive", "reopen") and not note.strip():
            raise BreachChangeError(f"Say why with --note: a {action} needs a reason on record.")
        event = BreachEvent(entry["breach_id"], entry["contract"], target, actor, note)
        stamp = event.event_at.strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{event.breach_id}-{target}-{uuid.uuid4().hex[:6]}.parquet"
        key = f"governance/breach_events/contract={event.contract}/{name}"
        written = pa.Table.from_pylist([asdict(event)], BREACH_EVENT_SCHEMA)
        self.lake.write_table(key, written)
        tables.breach_events = pa.concat_tables([tables.breach_events, written])
        return _one(_entries(tables), entry["breach_id"])


@dataclass
class _Tables:
    """What the breach views are made over (`pipelines.governance.views.in_memory`)."""

    breaches: pa.Table
    breach_events: pa.Table
    delivery_events: pa.Table
    clauses: pa.Table
    parts: pa.Table

    def same_as(self, other: _Tables) -> bool:
        """True when every table holds the same rows as `other`'s (however chunked)."""
        return all(getattr(self, f.name).equals(getattr(other, f.name)) for f in fields(self))


# What the views said about the tables read last in this process (history rows, register
# rows, each as column names and tuples). The views are a function of the tables alone, and
# making them (an in-memory DuckDB, its tables and views, two queries) was nine tenths of a
# read of the register: a desk page, a lead's step or a check reading a register no one
# changed since reads the tables again, but asks the views nothing new (issue 21).
_Rows = tuple[list[str], list[tuple]]
_LAST: tuple[_Tables, _Rows, _Rows] | None = None
_LAST_LOCK = threading.Lock()


def _view_rows(tables: _Tables) -> tuple[_Rows, _Rows]:
    """`governance.breach_history` (oldest step first) and `governance.breach_register` over
    `tables`: as the views said last time when the tables are the same, made again if not."""
    global _LAST
    with _LAST_LOCK:
        if _LAST is not None and _LAST[0].same_as(tables):
            return _LAST[1], _LAST[2]
    con = in_memory(
        tables.breaches, tables.breach_events, tables.delivery_events, tables.clauses, tables.parts
    )
    with con:
        history = _rows(con, "SELECT * FROM governance.breach_history ORDER BY event_at")
        register = _rows(con, "SELECT * FROM governance.breach_register")
    with _LAST_LOCK:
        # A copy: the caller may put other tables in its own (`change` adds its event).
        _LAST = (replace(tables), history, register)
    return history, register


def _entries(
    tables: _Tables,
    contract: str | None = None,
    period: str | None = None,
    severity: str | None = None,
    status: str | None = None,
) -> list[dict]:
    """`BreachRegister.entries` over tables already read (fresh dicts each call: a caller
    may change what it is given)."""
    history_rows, register_rows = _view_rows(tables)
    history: dict[str, list[dict]] = defaultdict(list)
    for event in _dicts(history_rows):
        history[event["breach_id"]].append(event)
    rows = _dicts(register_rows)
    out = []
    for row in rows:
        entry = {**row, "history": history.get(row["breach_id"], [])}
        if contract and entry["contract"] != contract:
            continue
        if period and entry["period"] != period:
            continue
        if severity and entry["severity"] != severity:
            continue
        if status and entry["status"] != status:
            continue
        out.append(entry)
    order = {s: i for i, s in enumerate(("critical", "major", "minor"))}
    return sorted(
        out,
        key=lambda e: (e["contract"], e["period"], order[e["severity"]], e["raised_at"]),
    )


def _one(entries: list[dict], breach_id: str) -> dict:
    """The entry whose id starts with `breach_id`, or why there is none to change."""
    matches = [e for e in entries if e["breach_id"].startswith(breach_id)]
    if not matches:
        raise BreachChangeError(f"No breach {breach_id!r} in the register.")
    if len({m["breach_id"] for m in matches}) > 1:
        raise BreachChangeError(f"{breach_id!r} matches several breaches; give more of the id.")
    return matches[0]


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> _Rows:
    cursor = con.execute(sql)
    return [d[0] for d in cursor.description], cursor.fetchall()


def _dicts(rows: _Rows) -> list[dict]:
    """Each row as a dict of its own: a list in it (`sample_rows`) is copied, not shared
    with the rows kept for the next read."""
    names, values = rows
    return [{n: _own(v) for n, v in zip(names, row, strict=True)} for row in values]


def _own(value: object) -> object:
    return deepcopy(value) if isinstance(value, list | dict) else value
