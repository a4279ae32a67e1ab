"""Intake assets: one per contract, taking new drop-zone files into the lake's landing area."""

from collections.abc import Iterator

import dagster as dg

from assets.months import MonthRecord, run_months
from assets.partitions import delivery_partitions
from assets.previews import markdown_table
from assets.resources import DropZoneResource, LakeResource
from pipelines.intake.delivery_intake import UNFILED, take_deliveries, take_unfiled
from schemas.contract import Contract


def landing_key(contract: Contract) -> dg.AssetKey:
    return dg.AssetKey(["landing", contract.name])


def build_intake_asset(contract: Contract) -> dg.AssetsDefinition:
    """The landing asset for one contract."""

    @dg.asset(
        key=landing_key(contract),
        group_name="intake",
        kinds={"csv", "parquet", "file"},
        owners=list(contract.owners),
        partitions_def=delivery_partitions(contract),
        # Every pending month in one run: `assets.months`.
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            f"Every new file in `dropzone/{contract.name}/<YYYY-MM>/` (a folder or "
            "`s3://bucket/prefix`), identified by the SHA-256 of its bytes and copied, "
            "unchanged and verified, into the lake's landing area as a read-only file. "
            "The same bytes again are recorded as a duplicate and not processed twice; a "
            "`<file>.manifest.json` beside it is kept for validation."
        ),
    )
    def landing(
        context: dg.AssetExecutionContext, dropzone: DropZoneResource, lake: LakeResource
    ) -> Iterator:
        zone, the_lake, register = dropzone.zone(), lake.lake(), lake.register()

        def take(period: str) -> MonthRecord:
            with lake.month_lease(contract.name, period, context.run_id):
                result = take_deliveries(
                    contract.name, period, zone, the_lake, register, context.run_id
                )
            taken = [
                {
                    "file": e.source_path,
                    "delivery_id": e.delivery_id[:12],
                    "bytes": e.source_size,
                    "taken as": e.event,
                    "note": e.reason or "",
                }
                for e in result.received + result.duplicates + result.rejected
            ]
            for e in result.duplicates:
                context.log.warning(f"{period} {e.source_path}: {e.reason}")
            for e in result.rejected:
                context.log.error(f"{period}: {e.reason}")
            for note in result.waiting:
                context.log.info(f"{period}: {note}")
            return MonthRecord(
                period,
                {
                    "deliveries_received": len(result.received),
                    "duplicates": len(result.duplicates),
                    "rejected_unread": len(result.rejected),
                    "waiting": len(result.waiting),
                    "delivery_ids": [e.delivery_id for e in result.received],
                    "files": dg.MetadataValue.md(markdown_table(taken)),
                },
            )

        yield from run_months(context, landing_key(contract), take)

    return landing


UNFILED_KEY = dg.AssetKey(["landing", UNFILED])


def build_unfiled_asset(contracts: dict[str, Contract]) -> dg.AssetsDefinition:
    """Files in the drop zone outside the agreed layout, kept and recorded once."""

    @dg.asset(
        key=UNFILED_KEY,
        group_name="intake",
        kinds={"file"},
        description=(
            "Every new file in the drop zone that is not `<contract>/<YYYY-MM>/<file>` for an "
            "agreed contract and period: its bytes kept in `landing/unfiled/`, recorded once "
            "in `governance.deliveries` as rejected with the reason, and a critical breach "
            "raised. The other deliveries go on."
        ),
    )
    def unfiled(
        context: dg.AssetExecutionContext, dropzone: DropZoneResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        periods = {c.name: delivery_partitions(c).get_partition_keys() for c in contracts.values()}
        with lake.month_lease(UNFILED, None, context.run_id):
            result = take_unfiled(
                dropzone.zone(), lake.lake(), lake.register(), periods, context.run_id
            )
        for e in result.rejected:
            context.log.error(e.reason)
        for note in result.waiting:
            context.log.info(note)
        rows = [
            {"file": e.source_path, "delivery_id": e.delivery_id[:12], "taken as": e.event,
             "reason": e.reason}
            for e in result.rejected + result.duplicates
        ]  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                "files_rejected": len(result.rejected),
                "duplicates": len(result.duplicates),
                "files": dg.MetadataValue.md(markdown_table(rows)),
            }
        )

    return unfiled
