"""Curated assets: the month's validated rows published as Parquet and catalogued in DuckDB."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from assets.partitions import delivery_partitions
from assets.previews import frame_preview
from assets.resources import LakeResource, WarehouseResource
from assets.validation import validated_key
from pipelines.lake.publishing import awaiting_publication, publish_delivery, published
from pipelines.lake.store import Lake
from pipelines.validation.row_validation import LINEAGE_TYPES
from pipelines.warehouse.catalog import LINEAGE_COMMENTS
from schemas.contract import Contract, load_contracts

# Column types as analysts see them in DuckDB.
WAREHOUSE_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "time": "TIME",
}


def curated_key(contract: Contract) -> dg.AssetKey:
    return dg.AssetKey(["curated", contract.name])


def column_schema(contract: Contract) -> dg.TableSchema:
    """The curated table's columns, with the contract's descriptions."""
    columns = [
        dg.TableColumn(c.name, WAREHOUSE_TYPES[c.logical_type], description=c.description)
        for c in contract.columns
    ]
    if contract.layout:
        layout = contract.layout
        columns += [
            dg.TableColumn(layout.period_name, "DATE", description=layout.period_description),
            dg.TableColumn(layout.value_name, "BIGINT", description=layout.value_description),
        ]
    columns += [
        dg.TableColumn(name, "BIGINT" if kind == "Int64" else "VARCHAR", description=text)
        for (name, kind), text in zip(LINEAGE_TYPES.items(), LINEAGE_COMMENTS.values(), strict=True)
    ]
    return dg.TableSchema(columns=columns)


def build_curated_asset(contract: Contract) -> dg.AssetsDefinition:
    """The curated asset for one contract: `curated.<name>` in the warehouse."""

    @dg.asset(
        key=curated_key(contract),
        deps=[validated_key(contract)],
        group_name="curated",
        kinds={"parquet", "duckdb"},
        owners=list(contract.owners),
        partitions_def=delivery_partitions(contract),
        description=(
            f"{contract.title} The agreed columns only, typed, one Parquet file per month "
            f"swapped in as a whole; queried as `curated.{contract.name}` in warehouse.duckdb. "
            "Every row carries `_delivery_id`, `_source_row` and `_period`."
        ),
        metadata={"dagster/column_schema": column_schema(contract)},
        # Each published month is materialized on its own (a month with nothing published,
        # held back or rejected, is not), so the step's output is never yielded.
        output_required=False,
        # Every pending month in one run: `assets.months`.
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def curated(
        context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetMaterialization]:
        register, the_lake = lake.register(), lake.lake()
        published_now: dict[str, bool] = {}
        failure: Exception | None = None
        for period in context.partition_keys:
            try:
                with lake.month_lease(contract.name, period, context.run_id):
                    candidate = awaiting_publication(register, contract.name, period)
                    if candidate:
                        # Said by the month's materialization (`published_now`), not by a
                        # log line: each is an event Dagster writes, for every month.
                        publish_delivery(the_lake, register, candidate, context.run_id)
            except Exception as exc:  # the machine's fault: record the months done, then fail
                failure = exc
                context.log.error(
                    f"curated {contract.name} {period} failed: {exc}. The months before it "
                    "are recorded; the rest are left for the next run."
                )
                break
            published_now[period] = candidate is not None
        # The catalog once for the run, after every month it published.
        try:
            rebuilt = warehouse.show(the_lake, load_contracts(contract.path.parent), contract)
        except Exception:
            if failure is None:
                raise
            rebuilt = False  # the same fault, most likely: the next run rebuilds it
        for period, now in published_now.items():
            current = published(register, contract.name, period)
            if current is None:
                # A month with nothing published is not materialized: its partition stays
                # missing in the UI rather than showing an empty month as done (the
                # validated month's outcome and checks say why).
                continue
            yield dg.AssetMaterialization(
                asset_key=curated_key(contract),
                partition=period,
                metadata=_month_metadata(the_lake, contract, period, current, now, rebuilt),
            )
        if failure is not None:
            raise failure

    return curated


def _month_metadata(
    the_lake: Lake, contract: Contract, period: str, current: dict, now: bool, rebuilt: bool
) -> dict:
    """What the UI shows for a published month: its rows, schema, file and a preview."""
    key = the_lake.curated_path(contract.name, period)
    rows, preview = 0, None
    if the_lake.exists(key):
        file = the_lake.parquet_file(key)
        rows = file.metadata.num_rows
        first = next(file.iter_batches(batch_size=10), None)
        preview = pl.from_arrow(first) if first is not None else None
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": column_schema(contract),
        "published_now": now,
        "catalog_rebuilt": rebuilt,
        "delivery_id": current["delivery_id"],
        "path": dg.MetadataValue.path(the_lake.url_of(key)),
        "table": f"curated.{contract.name}",
        "preview": dg.MetadataValue.md(frame_preview(preview)),
    }
