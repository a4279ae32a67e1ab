"""The delivery sensor, and the jobs and schedule that take and watch deliveries.

`new_deliveries` lists the drop zone (a folder or an S3 bucket) every 30 seconds (or
`DATASHARE_SENSOR_INTERVAL_SECONDS`, which the deployment test shortens) and asks
for one run of `<contract>_delivery` for the periods with new files (a partition range,
which the job runs at once: `assets.months`; one run per stretch of consecutive periods),
or of `unfiled_deliveries` for files outside the agreed layout.

Its cursor is not a timestamp but the set of file identities (path and version, see
`DropFile.identity`) it has asked for and that are still waiting to be taken, so:
- a file that arrives with an older modification time is still new;
- a file re-sent under the same name with new bytes has a new version, so it is new;
- a restart (the cursor is kept by Dagster) asks for nothing twice;
- the cursor stays small: identities leave it once the register has the file, or once
  the file has gone.
Each run request's run key names the contract, its periods and the identities of the files
it was asked for; Dagster launches one run per run key, so two ticks racing over the same
new files launch one run, and intake is idempotent besides (a second intake of the same
bytes is a duplicate). Runs of a contract carry the `datashare/contract` tag, which the
instance (dagster.yaml, written by `datashare`) limits to one at a time, and the
`datashare/partition` tag names their months (`contract.2024-01`, or
`contract.2024-01...2024-08` for a range).

`delivery_timeliness` runs daily at 07:00 London time and raises late-delivery breaches.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dagster as dg

from assets.intake import UNFILED_KEY, build_unfiled_asset
from assets.partitions import delivery_partitions
from assets.resources import DropZoneResource, LakeResource
from assets.timeliness import build_timeliness_asset, timeliness_key
from pipelines.home.instance_config import CONTRACT_TAG, PARTITION_TAG
from pipelines.intake.delivery_intake import UNFILED, plan_intake
from pipelines.intake.dropzone import DropFile
from pipelines.orchestration.job_names import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TIMELINESS_JOB,
    UNFILED_JOB,
)
from pipelines.orchestration.month_runs import MonthRun, month_runs
from schemas.contract import Contract

SENSOR_NAME = "new_deliveries"
SENSOR_INTERVAL_SECONDS = 30
SENSOR_INTERVAL_ENV = "DATASHARE_SENSOR_INTERVAL_SECONDS"


def sensor_interval_seconds() -> int:
    """How often the sensor lists the drop zone: the variable if it is a whole number of
    seconds (at least 1), else the default."""
    raw = os.environ.get(SENSOR_INTERVAL_ENV, "").strip()
    return max(int(raw), 1) if raw.isdigit() else SENSOR_INTERVAL_SECONDS


def delivery_job(contract_name: str) -> str:
    return f"{contract_name}_delivery"


def load_cursor(text: str | None) -> set[str]:
    if not text:
        return set()
    try:
        doc = json.loads(text)
    except ValueError:
        return set()  # an unreadable cursor: run keys still stop a second run per file
    return set(doc.get("requested", [])) if isinstance(doc, dict) else set()


def dump_cursor(identities: Iterable[str]) -> str:
    return json.dumps({"v": 1, "requested": sorted(identities)}, separators=(",", ":"))


@dataclass
class SensorPlan:
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    cursor: set[str] = field(default_factory=set)
    waiting: list[str] = field(default_factory=list)


def plan_run_requests(
    files: list[DropFile],
    seen: set[tuple[str, str]],
    requested: set[str],
    periods: Mapping[str, Iterable[str]],
) -> SensorPlan:
    """Run requests for files neither taken (`seen`) nor already asked for (`requested`)."""
    plan = SensorPlan()
    intake = plan_intake(files, seen, periods)
    present = {f.identity for f in files if (f.relative, f.version) not in seen}
    plan.cursor = requested & present  # still waiting to be taken: keep
    order = {name: list(ps) for name, ps in periods.items()}
    for contract in sorted({c for c, _ in intake.pending}):
        new = {
            period: [f.identity for f in drops if f.identity not in requested]
            for (c, period), drops in intake.pending.items()
            if c == contract
        }
        new = {period: ids for period, ids in new.items() if ids}
        for run in month_runs(contract, new, order.get(contract, sorted(new))):
            identities = sorted(i for period in run.periods for i in new[period])
            plan.run_requests.append(_month_request(run, identities))
            plan.cursor.update(identities)
    unfiled = sorted(f.identity for f, _ in intake.unfiled if f.identity not in requested)
    if unfiled:
        plan.run_requests.append(
            dg.RunRequest(
                job_name=UNFILED_JOB,
                run_key=f"{UNFILED}:{_identities_key(unfiled)}",
                tags={CONTRACT_TAG: UNFILED, PARTITION_TAG: UNFILED},
            )
        )
        plan.cursor.update(unfiled)
    plan.waiting = [f"{f.relative} {reason}" for f, reason in intake.waiting]
    return plan


def _identities_key(identities: list[str]) -> str:
    """The files a run was asked for, in its run key: the identity of one file, or a digest
    of several (sorted) so that the key stays short."""
    if len(identities) == 1:
        return identities[0]
    return "sha256:" + hashlib.sha256("\n".join(identities).encode()).hexdigest()[:24]


def _month_request(run: MonthRun, identities: list[str]) -> dg.RunRequest:
    """One run of the contract's delivery job over `run`'s consecutive periods."""
    months = run.first if len(run.periods) == 1 else f"{run.first}...{run.last}"
    tags = {CONTRACT_TAG: run.contract, PARTITION_TAG: f"{run.contract}.{months}"}
    if len(run.periods) == 1:
        return dg.RunRequest(
            job_name=delivery_job(run.contract),
            partition_key=run.first,
            run_key=f"{run.contract}:{months}:{_identities_key(identities)}",
            tags=tags,
        )
    return dg.RunRequest(
        job_name=delivery_job(run.contract),
        run_key=f"{run.contract}:{months}:{_identities_key(identities)}",
        # A partition range, run at once by the assets' single-run backfill policy.
        tags={**tags, RANGE_START_TAG: run.first, RANGE_END_TAG: run.last},
    )


def build_delivery_sensor(contracts: Mapping[str, Contract], jobs: list) -> dg.SensorDefinition:
    """The drop-zone sensor of this code location."""

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=sensor_interval_seconds(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Notices new files in the drop zone (folder or S3) and runs the right "
        "contract's delivery job once for their periods, or `unfiled_deliveries` for files "
        "outside the agreed layout. The cursor holds the identities (path, size and "
        "mtime or ETag) asked for, not a timestamp.",
    )
    def new_deliveries(
        context: dg.SensorEvaluationContext, dropzone: DropZoneResource, lake: LakeResource
    ) -> dg.SensorResult:
        periods = {c.name: delivery_partitions(c).get_partition_keys() for c in contracts.values()}
        files = dropzone.zone().files(set(periods))
        seen = lake.register().seen_versions()
        plan = plan_run_requests(files, seen, load_cursor(context.cursor), periods)
        for note in plan.waiting:
            context.log.info(note)
        cursor = dump_cursor(plan.cursor)
        if not plan.run_requests:
            return dg.SensorResult(
                skip_reason=f"Nothing new among {len(files)} file(s) in the drop zone.",
                cursor=cursor,
            )
        return dg.SensorResult(run_requests=plan.run_requests, cursor=cursor)

    return new_deliveries


@dataclass
class IntakeAutomation:
    assets: list
    jobs: list
    sensors: list
    schedules: list


def build_intake_automation(
    contracts: Mapping[str, Contract], delivery_jobs: list
) -> IntakeAutomation:
    """The unfiled-files asset and job, the timeliness assets, job and daily schedule,
    and the delivery sensor, for the code location."""
    unfiled_asset = build_unfiled_asset(dict(contracts))
    timeliness_assets = [build_timeliness_asset(c) for c in contracts.values()]
    unfiled_job = dg.define_asset_job(
        UNFILED_JOB,
        selection=dg.AssetSelection.assets(UNFILED_KEY),
        description="Keep and record files found outside the agreed layout.",
    )
    timeliness_job = dg.define_asset_job(
        TIMELINESS_JOB,
        selection=dg.AssetSelection.assets(*(timeliness_key(c) for c in contracts.values())),
        description="Raise a late-delivery breach for each period past due with no delivery.",
    )
    schedule = dg.ScheduleDefinition(
        name="daily_delivery_timeliness",
        job=timeliness_job,
        cron_schedule="0 7 * * *",
        execution_timezone="Europe/London",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every morning: which periods are late?",
    )
    sensor = build_delivery_sensor(contracts, [*delivery_jobs, unfiled_job])
    return IntakeAutomation(
        assets=[unfiled_asset, *timeliness_assets],
        jobs=[unfiled_job, timeliness_job],
        sensors=[sensor],
        schedules=[schedule],
    )
