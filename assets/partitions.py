"""Monthly partitions, one per delivery period, starting from the contract's first period."""

from __future__ import annotations

import dagster as dg

from schemas.contract import Contract


def monthly_partitions(contract: Contract) -> dg.MonthlyPartitionsDefinition:
    return dg.MonthlyPartitionsDefinition(start_date=contract.schedule.first_period, fmt="%Y-%m")
