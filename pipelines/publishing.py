"""Publishing: swap a validated delivery's rows in as the curated month, as a whole.

The staged Parquet file replaces the month's `data.parquet` whole (a rename in a folder, a
server-side copy in S3), so a reader sees the old month or the new one, never a mix. The
delivery it replaces stays in the register, marked superseded, and so does every other
delivery of the month that can no longer be published: a validated one (only the newest
is published) and a held one received before it. Every delivery thus ends in a final
status: published, superseded, held, rejected or duplicate.
"""

from __future__ import annotations

from pipelines.lake import Lake
from pipelines.register import DeliveryEvent, Register


def awaiting_publication(register: Register, contract: str, period: str) -> dict | None:
    """The newest validated delivery for the period not yet published, if any."""
    candidates = [
        d
        for d in register.deliveries(contract).values()
        if d["period"] == period and d["event"] == "validated"
    ]
    return max(candidates, key=lambda d: d["event_at"]) if candidates else None


def published(register: Register, contract: str, period: str) -> dict | None:
    """The delivery currently published for the period, if any."""
    for d in register.deliveries(contract).values():
        if d["period"] == period and d["event"] == "published":
            return d
    return None


def publish_delivery(
    lake: Lake, register: Register, delivery: dict, run_id: str | None = None
) -> int:
    """Make `delivery` the published month; returns the number of curated rows."""
    contract, period, delivery_id = (
        delivery["contract"],
        delivery["period"],
        delivery["delivery_id"],
    )
    staged = lake.staging_path(contract, period, delivery_id)
    target = lake.curated_path(contract, period)
    previous = published(register, contract, period)
    if lake.exists(staged):
        rows = lake.parquet_file(staged).metadata.num_rows
        lake.promote(staged, target)
    elif _delivery_in(lake, target) == delivery_id:
        # An earlier run swapped the file in and died before recording it: finish the job.
        rows = lake.parquet_file(target).metadata.num_rows
    else:
        raise FileNotFoundError(f"staged rows for delivery {delivery_id[:12]} are missing")
    register.record(
        DeliveryEvent(
            contract=contract,
            period=period,
            delivery_id=delivery_id,
            event="published",
            run_id=run_id,
        )
    )
    replaced = []
    if previous and previous["delivery_id"] != delivery_id:
        replaced.append((previous, f"Replaced as a whole by delivery {delivery_id[:12]}."))
    replaced += [
        (
            other,
            f"Not published: a later delivery of the month, {delivery_id[:12]} "
            f"({delivery.get('source_path')}), was published instead.",
        )
        for other in _left_behind(register, delivery)
    ]
    for other, reason in replaced:
        register.record(
            DeliveryEvent(
                contract=contract,
                period=period,
                delivery_id=other["delivery_id"],
                event="superseded",
                reason=reason,
                run_id=run_id,
            )
        )
    return rows


def _left_behind(register: Register, delivery: dict) -> list[dict]:
    """Other deliveries of the month that publishing `delivery` leaves unpublishable."""
    contract, period = delivery["contract"], delivery["period"]
    received = {
        e["delivery_id"]: e["event_at"]
        for e in register.events(contract)
        if e["event"] == "received" and e["period"] == period
    }
    mine = received.get(delivery["delivery_id"])
    return [
        d
        for d in register.deliveries(contract).values()
        if d["period"] == period
        and d["delivery_id"] != delivery["delivery_id"]
        and (
            d["event"] == "validated"
            or (
                d["event"] == "held"
                and mine is not None
                and received.get(d["delivery_id"], mine) < mine
            )
        )
    ]


def _delivery_in(lake: Lake, key: str) -> str | None:
    if not lake.exists(key):
        return None
    pf = lake.parquet_file(key)
    if pf.metadata.num_rows == 0:
        return None
    return pf.read_row_group(0, columns=["_delivery_id"]).column(0)[0].as_py()
