"""Timeliness assets: one per contract, watching its delivery schedule for late periods."""

import dagster as dg

from assets.previews import markdown_table
from assets.resources import DropZoneResource, LakeResource
from pipelines.governance.delivery_schedule import check_schedule
from schemas.contract import Contract

ON_TIME_CHECK = "deliveries_on_time"


def timeliness_key(contract: Contract) -> dg.AssetKey:
    return dg.AssetKey(["timeliness", contract.name])


def build_timeliness_asset(contract: Contract) -> dg.AssetsDefinition:
    """The timeliness asset for one contract, with its `deliveries_on_time` check."""
    key = timeliness_key(contract)
    schedule = contract.schedule

    @dg.asset(
        key=key,
        group_name="governance",
        kinds={"file"},
        owners=list(contract.owners),
        check_specs=[
            dg.AssetCheckSpec(
                ON_TIME_CHECK,
                asset=key,
                description=f"Every watched {contract.name} period has a delivery by day "
                f"{schedule.due_day_of_following_month} of the following month plus "
                f"{schedule.late_after_days} day(s).",
            )
        ],
        description=(
            f"The {schedule.period} delivery schedule of {contract.name}: each period past its "
            "late date with no delivery raises a `delivery.late` breach, once, in "
            "`governance.breaches`. Periods are watched from the contract's `lateChecksFrom`, "
            "else from the first period delivered."
        ),
    )
    def timeliness(
        context: dg.AssetExecutionContext, dropzone: DropZoneResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        register = lake.register()
        taken = register.seen_versions()
        # Files not yet taken: a period with one is not late. A file already taken (and
        # perhaps rejected) is in the register, which decides for itself.
        waiting = {
            f.period
            for f in dropzone.zone().files({contract.name})
            if f.contract == contract.name
            and f.period
            and not f.problem
            and (f.relative, f.version) not in taken
        }
        report = check_schedule(contract, lake.lake(), register, waiting=waiting)
        for breach in report.raised:
            context.log.info(breach.detail)
        if report.raised:
            context.log.warning(f"{len(report.raised)} late delivery(ies) flagged: {report.note}")
        rows = [
            {"period": p.period, "due": p.due.isoformat(), "late after": p.late_after.isoformat()}
            for p in report.late
        ]
        return dg.MaterializeResult(
            metadata={
                "watched_from": report.watched_from or "nothing delivered yet",
                "late_periods": len(report.late),
                "raised_now": len(report.raised),
                "late": dg.MetadataValue.md(markdown_table(rows)),
                "summary": report.note,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=ON_TIME_CHECK,
                    passed=not report.late,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "late_periods": dg.MetadataValue.md(markdown_table(rows)),
                        "summary": report.note,
                    },
                )
            ],
        )

    return timeliness
