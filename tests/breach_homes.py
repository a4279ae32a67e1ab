"""Homes with a breach register, written straight into the lake: a second, not a run.

For the tests of what leads read (the listing, notices, the review page), which need
breaches of every kind, statuses and sendings, and text the force controls (file names,
headers), without running the pipeline. The records are the ones the pipeline writes
(`Register`, `BreachRegister`, `late_breach`), so the warehouse views read them as theirs.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from pipelines.governance.audit_log import record_export
from pipelines.governance.breach_register import BREACH_EVENT_SCHEMA, BreachEvent
from pipelines.governance.delivery_schedule import LatePeriod, deadlines, late_breach
from pipelines.home.settings import Settings
from pipelines.lake.register import BREACH_SCHEMA, Breach, DeliveryEvent, Register
from pipelines.lake.store import Lake, open_lake
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts

# Markup in what the force controls: a file name and an unagreed header.
MARKUP_FILE = "2025-11-<b>bold</b>.csv"
MARKUP_HEADER = "<script>window.pwned=1</script>"


def deliver(
    lake: Lake,
    contract: str,
    period: str,
    name: str,
    rows: int,
    outcome: str = "published",
    at: datetime | None = None,
) -> str:
    """Record a delivery as received and then `outcome`; returns its id."""
    at = at or datetime(int(period[:4]), int(period[5:]), 1, 9, tzinfo=UTC) + timedelta(days=40)
    delivery_id = hashlib.sha256(f"{contract}/{period}/{name}".encode()).hexdigest()
    register = Register(lake)
    common = dict(contract=contract, period=period, delivery_id=delivery_id)
    register.record(
        DeliveryEvent(**common, event="received", source_path=f"{contract}/{period}/{name}",
                      file_format="csv", event_at=at)
    )  # fmt: skip
    register.record(
        DeliveryEvent(**common, event=outcome, rows_delivered=rows,
                      rows_curated=rows if outcome == "published" else 0,
                      event_at=at + timedelta(minutes=2))
    )  # fmt: skip
    return delivery_id


def breach(
    lake: Lake,
    contract: str,
    period: str,
    delivery_id: str,
    rule: str,
    severity: str,
    detail: str,
    failing_rows: int = 0,
    rows_checked: int = 0,
    action: str = "rows quarantined",
    sample_rows: list[int] | None = None,
    raised_at: datetime | None = None,
) -> str:
    """Add one breach to the delivery's breach file; returns its id."""
    made = Breach(
        contract=contract, contract_version="1.0.0", period=period, delivery_id=delivery_id,
        rule=rule, clause=f"{contract}.yaml: (as the pipeline wrote it)", severity=severity,
        action=action, failing_rows=failing_rows, rows_checked=rows_checked, detail=detail,
        sample_rows=sample_rows or [], raised_at=raised_at or datetime.now(UTC),
    )  # fmt: skip
    key = lake.breaches_path(contract, period, delivery_id)
    rows = lake.read_table(key).to_pylist() if lake.exists(key) else []
    rows.append({**asdict(made), "breach_id": made.breach_id, "failing_share": made.failing_share})
    lake.write_table(key, pa.Table.from_pylist(rows, BREACH_SCHEMA))
    return made.breach_id


def late(lake: Lake, contract_name: str, period: str) -> str:
    """The delivery.late breach the schedule check raises for `period`."""
    contract = load_contracts()[contract_name]
    due, late_after = deadlines(contract, period)
    made = late_breach(contract, LatePeriod(period, due, late_after))
    row = {**asdict(made), "breach_id": made.breach_id, "failing_share": None}
    key = lake.breaches_path(contract_name, period, "delivery-late")
    lake.write_table(key, pa.Table.from_pylist([row], BREACH_SCHEMA))
    return made.breach_id


def step(lake: Lake, breach_id: str, contract: str, status: str, at: datetime, note: str = ""):
    """A lifecycle event (notified, acknowledged, ...) at a given time."""
    event = BreachEvent(breach_id, contract, status, "lead", note, event_at=at)
    key = f"governance/breach_events/contract={contract}/{at:%Y%m%dT%H%M%S%f}-{breach_id}.parquet"
    lake.write_table(key, pa.Table.from_pylist([asdict(event)], BREACH_EVENT_SCHEMA))


def seeded_home(settings: Settings) -> dict[str, str]:
    """A register across two contracts and five months: every kind of breach a lead sees.

    Stop and search: 2025-09 and 2025-10 break the same rule (recurrence), 2025-10 is also
    late, 2025-11's file carries markup in its name and an unagreed header, 2025-12 was
    never delivered (only its delivery.late breach), one breach was notified and then
    resolved, and a notice was sent for 2025-09. Use of force: one rejected month.
    Returns the breach ids by a short name.
    """
    lake = open_lake(settings.lake)
    ids: dict[str, str] = {}
    s = "stop_and_search"
    sep = deliver(lake, s, "2025-09", "2025-09-stop-and-search.csv", 4_000)
    ids["sep_type"] = breach(
        lake, s, "2025-09", sep, "type_known", "major",
        "12 of 4,000 rows (0.3%): Type is not one of the 3 agreed values. These rows were "
        "quarantined and not published.", 12, 4_000, sample_rows=[4, 18, 77],
        raised_at=datetime(2025, 10, 21, 9, tzinfo=UTC),
    )  # fmt: skip
    ids["sep_ethnicity"] = breach(
        lake, s, "2025-09", sep, "self_defined_ethnicity_completeness", "minor",
        "1,200 of 4,000 rows (30.0%) have no Self-defined ethnicity; the agreement allows at "
        "most 25%.", 1_200, 4_000, action="delivery published",
        raised_at=datetime(2025, 10, 21, 9, tzinfo=UTC),
    )  # fmt: skip
    oct_ = deliver(
        lake, s, "2025-10", "2025-10-stop-and-search.csv", 3_900,
        at=datetime(2025, 11, 28, 10, tzinfo=UTC),
    )  # fmt: skip
    ids["oct_type"] = breach(
        lake, s, "2025-10", oct_, "type_known", "major",
        "7 of 3,900 rows (0.2%): Type is not one of the 3 agreed values. These rows were "
        "quarantined and not published.", 7, 3_900, sample_rows=[9],
        raised_at=datetime(2025, 11, 28, 10, 5, tzinfo=UTC),
    )  # fmt: skip
    ids["oct_late"] = late(lake, s, "2025-10")
    nov = deliver(lake, s, "2025-11", MARKUP_FILE, 4_100)
    ids["nov_extra"] = breach(
        lake, s, "2025-11", nov, "file.unagreed_columns", "major",
        f"The file includes 1 column(s) the agreement does not list ('{MARKUP_HEADER}'). "
        "Over-sharing: these columns were not published.", 4_100, 4_100,
        action="columns withheld",
    )  # fmt: skip
    ids["dec_late"] = late(lake, s, "2025-12")
    u = "use_of_force"
    rejected = deliver(lake, u, "2025-11", "2025-11-use-of-force.xlsx.csv", 0, "rejected")
    ids["uof_format"] = breach(
        lake, u, "2025-11", rejected, "file.format", "critical",
        f"{u}/2025-11/2025-11-use-of-force.xlsx.csv: The file is a zip archive (an Excel "
        "workbook saved as .xlsx is one), not CSV text; the agreement asks for a CSV export.",
        action="delivery rejected",
    )  # fmt: skip
    step(lake, ids["sep_ethnicity"], s, "notified", datetime(2025, 10, 22, 9, tzinfo=UTC))
    step(lake, ids["sep_ethnicity"], s, "resolved", datetime(2025, 11, 3, 9, tzinfo=UTC))
    step(lake, ids["sep_type"], s, "notified", datetime(2025, 10, 22, 9, tzinfo=UTC), "letter")
    record_export(lake, s, "2025-09", "notice notice-stop_and_search-2025-09.md (2 breach(es))",
                  "lead", "notice to the force under the data-sharing agreement")  # fmt: skip
    build_warehouse(lake, load_contracts(), settings.warehouse)
    return ids


def today() -> date:
    """A fixed 'today' for notices of the seeded home (reply-by dates are from it)."""
    return date(2026, 1, 12)
