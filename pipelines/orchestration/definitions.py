"""The Dagster code location: one intake, validation and curated asset per contract."""

from __future__ import annotations

import warnings

import dagster as dg

from assets.curated import build_curated_asset, curated_key
from assets.intake import build_intake_asset, landing_key
from assets.oversight import build_oversight_assets, oversight_selection
from assets.partitions import delivery_partitions
from assets.resources import (
    DropZoneResource,
    LakeResource,
    PseudonymKeyResource,
    WarehouseResource,
)
from assets.validation import build_validation_asset, validated_key
from pipelines.desk.alert_sensor import build_alert_sensor
from pipelines.home.executor import CELERY
from pipelines.home.settings import Settings, load_settings
from pipelines.orchestration.delivery_sensor import build_intake_automation
from pipelines.orchestration.job_names import OVERSIGHT_JOB
from pipelines.orchestration.job_names import delivery_job_name as job_name_for
from pipelines.orchestration.retention_job import retention_job, retention_schedule
from schemas.contract import Contract, load_contracts


def delivery_job_name(contract: Contract) -> str:
    return job_name_for(contract.name)


# Owners on sensors and per-partition checks are labelled beta/preview in Dagster 1.13; we
# rely on them knowingly, so the warnings would only be noise in every command's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


# A launched run's steps (the daemon's runs; `datashare run` executes its own in process),
# each in a process of its own as with Dagster's default, forked from a server that imported
# the code location once for the run (`forkserver`, preloading the job's module) instead of
# each step spawned to import Dagster and the definitions again: two imports fewer a run,
# 1.5 to 2 s of CPU each. The server only imports (no polars or Arrow pool runs in it), so a
# step forked from it starts clean. This module is named as the one to preload: with no
# `preload_modules` Dagster 1.13 preloads only its own executor module (the setting reads as
# an empty list, not as "the job's module"), and each step imported the code location again.
# (`datashare run`'s workers fork from the same server: worker_forkserver.PRELOAD starts with
# this list, since a process has one forkserver.)
LOCAL_STEPS_PRELOAD = [__name__]
LOCAL_STEPS = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": LOCAL_STEPS_PRELOAD}}}, name="multiprocess"
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Assets, jobs and resources for every contract in `data_contracts/`."""
    settings = settings or load_settings()
    contracts = load_contracts()
    assets, jobs = [], []
    # On workers (DATASHARE_EXECUTOR=celery) each step of a delivery job goes to the broker;
    # otherwise a run's steps on this machine (LOCAL_STEPS).
    executor = LOCAL_STEPS
    if settings.executor == CELERY:
        # Imported here: it imports Celery, which a run on this machine never needs.
        from pipelines.orchestration.worker_celery import celery_executor_def

        executor = celery_executor_def()
    for contract in contracts.values():
        assets += [
            build_intake_asset(contract),
            build_validation_asset(contract),
            build_curated_asset(contract),
        ]
        jobs.append(
            dg.define_asset_job(
                delivery_job_name(contract),
                selection=dg.AssetSelection.assets(
                    landing_key(contract), validated_key(contract), curated_key(contract)
                ),
                partitions_def=delivery_partitions(contract),
                description=f"Take, validate and publish one month of {contract.name}.",
                executor_def=executor,
            )
        )
    assets += build_oversight_assets(contracts)
    jobs.append(
        dg.define_asset_job(
            OVERSIGHT_JOB,
            selection=oversight_selection(),
            description="Recompute every oversight mart.",
        )
    )
    jobs.append(retention_job)
    # The drop-zone sensor, unfiled files and the daily late-delivery check.
    automation = build_intake_automation(contracts, jobs)
    if settings.executor == CELERY:  # steps on workers: this home's warehouse kept up here
        from pipelines.orchestration.worker_warehouse import build_warehouse_sensor

        automation.sensors.append(build_warehouse_sensor(settings, contracts, jobs))
    return dg.Definitions(
        assets=assets + automation.assets,
        jobs=jobs + automation.jobs,
        sensors=[*automation.sensors, build_alert_sensor(settings)],  # the leads' alerts
        schedules=[*automation.schedules, retention_schedule],
        resources={
            "dropzone": DropZoneResource(
                root=str(settings.dropzone), settle_seconds=settings.settle_seconds
            ),
            "lake": LakeResource(root=str(settings.lake)),
            "warehouse": WarehouseResource(path=str(settings.warehouse)),
            "pseudonym_key": PseudonymKeyResource(home=str(settings.home)),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, built when Dagster loads it (not when this module is imported:
    `datashare run` imports it to build its own, with its settings)."""
    return build_definitions()
