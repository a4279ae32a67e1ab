"""The analysts' warehouse when steps run on workers.

A delivery run's curated step makes the catalog show the month it published
(`WarehouseResource.show`), but on a worker that is the worker's own `warehouse.duckdb`, in
its working folder, which no analyst reads. So with DATASHARE_EXECUTOR=celery the code
location gains `warehouse_after_workers`, a sensor the daemon runs on its own machine (the
home analysts read): after each successful delivery run it makes that home's catalog show
what the lake holds for the run's contract, rebuilding it from the lake only when its views
cannot already (a new contract's first month, a new column or contract version).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.home.settings import Settings
from pipelines.lake.store import open_lake
from pipelines.orchestration.delivery_sensor import sensor_interval_seconds
from pipelines.orchestration.job_names import delivery_job_name
from pipelines.warehouse.catalog import build_warehouse, catalog_shows
from schemas.contract import Contract, load_contracts

SENSOR_NAME = "warehouse_after_workers"


def build_warehouse_sensor(
    settings: Settings, contracts: dict[str, Contract], jobs: list[dg.JobDefinition]
) -> dg.SensorDefinition:
    """The sensor that keeps this home's warehouse up with runs done on workers."""
    by_job = {delivery_job_name(c.name): c for c in contracts.values()}

    @dg.run_status_sensor(
        name=SENSOR_NAME,
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[j for j in jobs if j.name in by_job],
        minimum_interval_seconds=sensor_interval_seconds(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After a delivery run on the workers, make this home's warehouse "
        "(where analysts read) show what the lake holds for its contract.",
    )
    def warehouse_after_workers(context: dg.RunStatusSensorContext) -> dg.SkipReason:
        contract = by_job[context.dagster_run.job_name]
        lake, path = open_lake(settings.lake), Path(settings.warehouse)
        if catalog_shows(path, lake, contract):
            return dg.SkipReason(f"{path} already shows {contract.name}")
        build_warehouse(lake, load_contracts(contract.path.parent), path)
        context.log.info(f"rebuilt {path} from the lake for {contract.name}")
        return dg.SkipReason(f"rebuilt {path} from the lake for {contract.name}")

    return warehouse_after_workers
