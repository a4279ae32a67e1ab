"""Intake assets: one per contract, taking new drop-zone files into the lake's landing area."""

import dagster as dg

from assets.partitions import delivery_partitions
from pipelines.delivery_intake import take_deliveries
from pipelines.previews import markdown_table
from pipelines.resources import DropZoneResource, LakeResource
from schemas.contract import Contract


def landing_key(contract: Contract) -> dg.AssetKey:
    return dg.AssetKey(["landing", contract.name])


def build_intake_asset(contract: Contract) -> dg.AssetsDefinition:
    """The landing asset for one contract."""

    @dg.asset(
        key=landing_key(contract),
        group_name="intake",
        kinds={"csv", "file"},
        owners=list(contract.owners),
        partitions_def=delivery_partitions(contract),
        description=(
            f"Every new file in `dropzone/{contract.name}/<YYYY-MM>/`, identified by the SHA-256 "
            "of its bytes and copied, unchanged and verified, into the lake's landing area. "
            "The same bytes again are recorded as a duplicate and not processed twice."
        ),
    )
    def landing(
        context: dg.AssetExecutionContext, dropzone: DropZoneResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        period = context.partition_key
        result = take_deliveries(
            contract.name, period, dropzone.zone(), lake.lake(), lake.register(), context.run_id
        )
        taken = [
            {
                "file": e.source_path,
                "delivery_id": e.delivery_id[:12],
                "bytes": e.source_size,
                "taken as": e.event,
                "note": e.reason or "",
            }
            for e in result.received + result.duplicates
        ]
        for e in result.duplicates:
            context.log.warning(f"{e.source_path}: {e.reason}")
        return dg.MaterializeResult(
            metadata={
                "deliveries_received": len(result.received),
                "duplicates": len(result.duplicates),
                "delivery_ids": [e.delivery_id for e in result.received],
                "files": dg.MetadataValue.md(markdown_table(taken)),
            }
        )

    return landing
