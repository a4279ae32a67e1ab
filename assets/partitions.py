"""One partition per delivery period, named by its first month (`YYYY-MM`), from the
contract's first period on; the drop zone uses the same names."""

from __future__ import annotations

import dagster as dg

from schemas.contract import Contract


def delivery_partitions(contract: Contract) -> dg.PartitionsDefinition:
    """The partitions of a contract's delivery schedule (monthly, quarterly, annual, once)."""
    schedule = contract.schedule
    start = schedule.first_period
    match schedule.period:
        case "monthly":
            return dg.MonthlyPartitionsDefinition(start_date=start, fmt="%Y-%m")
        case "quarterly":
            months = sorted((int(start[5:7]) - 1 + 3 * i) % 12 + 1 for i in range(4))
            cron = f"0 0 1 {','.join(str(m) for m in months)} *"
            return dg.TimeWindowPartitionsDefinition(cron_schedule=cron, start=start, fmt="%Y-%m")
        case "annual":
            cron = f"0 0 1 {int(start[5:7])} *"
            return dg.TimeWindowPartitionsDefinition(cron_schedule=cron, start=start, fmt="%Y-%m")
        case _:
            return dg.StaticPartitionsDefinition([start])
