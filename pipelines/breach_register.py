"""The breach register that data-sharing leads work from.

Each breach (one rule broken by one delivery) has a lifecycle: open, notified (sent to
the force), acknowledged, then resolved or waived. Every step is an immutable event in the
lake with who, when and a note; the history is kept, never overwritten.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from pipelines.lake import Lake
from pipelines.register import Register

STATUSES = ("open", "notified", "acknowledged", "resolved", "waived")
# action -> (statuses it may start from, status it leads to)
TRANSITIONS = {
    "notify": (("open",), "notified"),
    "ack": (("open", "notified"), "acknowledged"),
    "resolve": (("open", "notified", "acknowledged"), "resolved"),
    "waive": (("open", "notified", "acknowledged"), "waived"),
    "reopen": (("resolved", "waived"), "open"),
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

    def _events(self) -> list[dict]:
        files = self.lake.glob("governance/breach_events/contract=*/*.parquet")
        if not files:
            return []
        rows = self.lake.read_all(files, BREACH_EVENT_SCHEMA)
        return sorted(rows.to_pylist(), key=lambda r: r["event_at"])

    def entries(
        self,
        contract: str | None = None,
        period: str | None = None,
        severity: str | None = None,
        status: str | None = None,
    ) -> list[dict]:
        """Every breach with its status, history, recurrence and delivery status, filtered."""
        breaches = self.register.breaches()
        history: dict[str, list[dict]] = defaultdict(list)
        for event in self._events():
            history[event["breach_id"]].append(event)
        deliveries = self.register.deliveries()
        # Recurrence: in how many periods the same rule was broken, up to this one.
        periods_by_rule: dict[tuple[str, str], set[str]] = defaultdict(set)
        for b in breaches:
            periods_by_rule[(b["contract"], b["rule"])].add(b["period"])
        out = []
        for b in breaches:
            events = history.get(b["breach_id"], [])
            entry = {
                **b,
                "status": events[-1]["status"] if events else "open",
                "history": events,
                "recurrence": sum(
                    1 for p in periods_by_rule[(b["contract"], b["rule"])] if p <= b["period"]
                ),
                "delivery_status": deliveries.get(b["delivery_id"], {}).get("event", "unknown"),
                "source_path": deliveries.get(b["delivery_id"], {}).get("source_path"),
            }
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
        return sorted(out, key=lambda e: (e["contract"], e["period"], order[e["severity"]]))

    def get(self, breach_id: str) -> dict:
        matches = [e for e in self.entries() if e["breach_id"].startswith(breach_id)]
        if not matches:
            raise BreachChangeError(f"No breach {breach_id!r} in the register.")
        if len({m["breach_id"] for m in matches}) > 1:
            raise BreachChangeError(f"{breach_id!r} matches several breaches; give more of the id.")
        return matches[0]

    def change(self, breach_id: str, action: str, actor: str, note: str) -> dict:
        """Move a breach one step through its lifecycle; returns the updated entry."""
        if action not in TRANSITIONS:
            raise BreachChangeError(f"Unknown action {action!r}.")
        allowed_from, target = TRANSITIONS[action]
        entry = self.get(breach_id)
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
        self.lake.write_table(key, pa.Table.from_pylist([asdict(event)], BREACH_EVENT_SCHEMA))
        return self.get(entry["breach_id"])
