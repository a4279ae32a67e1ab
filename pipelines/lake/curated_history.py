"""The curated months as they were: what publishing replaced, kept so a pack can be redone.

Publishing swaps a month's `curated/.../data.parquet` whole. Before it does, the file it
replaces is copied, unchanged, to
`curated_history/contract=<c>/period=<p>/<replaced at>-<id>.parquet` (through the Lake
interface, so a lake on S3 keeps it the same way), named from the moment it stopped being
the month. Retention erases these with the rest of the period (`retention.AREAS`).

`months_as_of(lake, events, when)` then says which file was each month's at any moment: of
the month's replaced files, the first replaced after `when`; if none was, the month's file
now. A month first published after `when` did not exist then.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pipelines.lake.store import Lake

AREA = "curated_history"
STAMP = "%Y%m%dT%H%M%S%f"


def history_dir(contract: str, period: str) -> str:
    return f"{AREA}/contract={contract}/period={period}"


def keep_replaced(
    lake: Lake, contract: str, period: str, when: datetime | None = None
) -> str | None:
    """Copy the month's curated file, about to be replaced, into the history; its key
    (None when the month has no file yet)."""
    current = lake.curated_path(contract, period)
    if not lake.exists(current):
        return None
    when = when or datetime.now(UTC)
    key = f"{history_dir(contract, period)}/{when:{STAMP}}-{uuid.uuid4().hex[:8]}.parquet"
    lake.write_bytes(key, lake.read_bytes(current))
    return key


def replaced_at(key: str) -> datetime:
    """When a history file stopped being its month (from its name)."""
    stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
    return datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)


@dataclass(frozen=True)
class MonthAsOf:
    contract: str
    period: str
    key: str | None  # the file that was the month then (None: not kept, see `why`)
    why: str = ""  # why the month cannot be reproduced, when it cannot


def months_as_of(lake: Lake, events: list[dict], when: datetime) -> list[MonthAsOf]:
    """Each curated month as it stood at `when`, from the register's events (`Register.events`)
    and the kept history; a month that cannot be reproduced says why."""
    published: dict[tuple[str, str], list[datetime]] = {}
    for e in events:
        if e["event"] == "published":
            published.setdefault((e["contract"], e["period"]), []).append(e["event_at"])
    months = set(published)
    for key in lake.glob("curated/contract=*/period=*/data.parquet"):
        parts = key.split("/")
        months.add((parts[1].removeprefix("contract="), parts[2].removeprefix("period=")))
    found = []
    for contract, period in sorted(months):
        times = published.get((contract, period))
        if times and min(times) > when:
            continue  # not published yet at `when`
        kept = sorted(
            (k for k in lake.glob(f"{history_dir(contract, period)}/*.parquet")),
            key=replaced_at,
        )
        later = [k for k in kept if replaced_at(k) > when]
        if later:
            found.append(MonthAsOf(contract, period, later[0]))
            continue
        current = lake.curated_path(contract, period)
        if times and any(t > when for t in times):
            # Published again since, but the file it replaced was not kept (replaced by a
            # version before the history was kept, or erased under retention).
            found.append(
                MonthAsOf(
                    contract, period, None, "replaced since, and the earlier file is not kept"
                )
            )
        elif lake.exists(current):
            found.append(MonthAsOf(contract, period, current))
        else:
            found.append(MonthAsOf(contract, period, None, "erased under retention"))
    return found
