"""Retention in Dagster: a daily job that erases what is past its retention period."""

import dagster as dg

from assets.resources import LakeResource, WarehouseResource
from pipelines.lake.retention import describe, enforce_retention
from schemas.contract import load_contracts


@dg.op(description="Erase landing copies, quarantine and curated months past retention.")
def enforce_retention_op(
    context: dg.OpExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> None:
    contracts = load_contracts()
    erased = enforce_retention(lake.lake(), contracts, apply=True, by=f"run {context.run_id}")
    context.log.info(describe(erased, applied=True))
    if erased:
        warehouse.rebuild(lake.lake(), contracts)


@dg.job(description="Enforce every contract's retention period; each erasure is recorded.")
def retention_job() -> None:
    enforce_retention_op()


# On by default: erasure past retention is an obligation of the agreement, not an option,
# so wherever the Dagster daemon runs (`datashare ui`, a deployment) it happens daily.
retention_schedule = dg.ScheduleDefinition(
    job=retention_job,
    cron_schedule="0 2 * * *",
    execution_timezone="Europe/London",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at 02:00 London: erase what is past each contract's retention period "
    "(the same as `datashare retention --apply`); each erasure is recorded.",
)
