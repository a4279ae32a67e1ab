"""Retention: data past each contract's retention period is erased, and the erasure recorded.

A period expires when its end plus the contract's `retention` (ISO 8601, e.g. `P6Y`) has
passed. Its landing copies, staged and quarantined rows, curated partition and the curated
files publishing replaced (curated_history) are deleted;
the governance records (what was delivered, what broke) carry no row data and are kept as
evidence, with one erasure record per deleted file in `governance.erasures`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa

from pipelines.lake.store import Lake
from schemas.contract import Contract

ERASURE_SCHEMA = pa.schema(
    [
        ("contract", pa.string()),
        ("period", pa.string()),
        ("area", pa.string()),
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("clause", pa.string()),
        ("erased_by", pa.string()),
        ("erased_at", pa.timestamp("us", tz="UTC")),
    ]
)
# curated_history: the months publishing replaced, kept for `datashare report --as-of`.
AREAS = ("landing", "staging", "quarantine", "quarantine_masked", "curated", "curated_history")
DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?$")


@dataclass
class Erasure:
    contract: str
    period: str
    area: str
    path: str
    bytes: int
    clause: str
    erased_by: str
    erased_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def expiry(period: str, retention: str, months_in_period: int = 1) -> date:
    """The first day on which a period's data is past its retention."""
    match = DURATION.match(retention or "")
    if not match or not any(match.groups()):
        raise ValueError(f"retention {retention!r} is not an ISO 8601 duration such as P6Y")
    years, months, days = (int(g or 0) for g in match.groups())
    year, month = (int(x) for x in period.split("-"))
    total = year * 12 + (month - 1) + months_in_period + years * 12 + months
    end = date(total // 12, total % 12 + 1, 1)
    return date.fromordinal(end.toordinal() + days)


def expired(contract: Contract, lake: Lake, today: date) -> list[Erasure]:
    """What retention would erase today for one contract, without erasing it."""
    retention = contract.agreement.get("retention")
    if not retention:
        return []
    months = {"monthly": 1, "quarterly": 3, "annual": 12}.get(contract.schedule.period, 1)
    clause = contract.agreement.get("retentionClause") or f"retention {retention}"
    found = []
    for area in AREAS:
        for key in lake.glob_below(f"{area}/contract={contract.name}/period=*"):
            period = key.split("/")[2].removeprefix("period=")
            if expiry(period, retention, months) > today:
                continue
            found.append(
                Erasure(
                    contract=contract.name,
                    period=period,
                    area=area,
                    path=key,
                    bytes=lake.size(key),
                    clause=f"{retention}: {clause}",
                    erased_by="",
                )
            )
    return found


def erase(lake: Lake, erasures: list[Erasure], by: str) -> None:
    """Delete the files, then record each erasure (the record survives the data)."""
    for erasure in erasures:
        erasure.erased_by = by
        erasure.erased_at = datetime.now(UTC)
        lake.delete(erasure.path)
        record = (
            f"governance/erasures/contract={erasure.contract}/"
            f"{erasure.erased_at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        )
        lake.write_table(record, pa.Table.from_pylist([asdict(erasure)], ERASURE_SCHEMA))


def enforce_retention(
    lake: Lake, contracts: dict[str, Contract], apply: bool, by: str, today: date | None = None
) -> list[Erasure]:
    """Everything past retention across all contracts; erased (and recorded) if `apply`."""
    today = today or datetime.now(UTC).date()
    found = [e for c in contracts.values() for e in expired(c, lake, today)]
    if apply and found:
        erase(lake, found, by)
    return found


def describe(erasures: list[Erasure], applied: bool) -> str:
    if not erasures:
        return "Nothing is past its retention period."
    verb = "Erased" if applied else "Would erase"
    total = sum(e.bytes for e in erasures)
    lines = [f"{verb} {len(erasures)} file(s), {total:,} bytes:"]
    lines += [
        f"  {e.contract} {e.period} {e.area}: {Path(e.path).name} ({e.clause})" for e in erasures
    ]
    if not applied:
        lines.append("Run with --apply to erase them; each erasure is recorded.")
    return "\n".join(lines)
