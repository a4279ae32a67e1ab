"""Oversight assets: one per mart (`pipelines/oversight/mart_runner.py`), `oversight.<mart>`.

Each asset computes its mart from the warehouse's curated views, writes
`lake/oversight/<mart>/data.parquet` (definition and column comments as Parquet metadata) and
reports its latest figures in the asset's metadata; one step computes every selected mart
over one connection; the views `oversight.<mart>` read those files, and the warehouse is
rebuilt (once) only when its catalog does not already show them.
"""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa

from assets.previews import markdown_table
from assets.resources import LakeResource, WarehouseResource
from pipelines.lake.mart_files import mart_keys
from pipelines.lake.store import Lake
from pipelines.oversight.mart_runner import (
    MARTS,
    Mart,
    WrittenMart,
    current_contracts,
    headline_figures,
    latest_figures,
    mart_notes,
    warehouse_connection,
    write_mart,
)
from pipelines.warehouse.catalog import catalog_current
from schemas.contract import Contract, contracts_dir, load_contracts

PREVIEW_ROWS = 20


def oversight_key(mart: Mart | str) -> dg.AssetKey:
    return dg.AssetKey(["oversight", mart if isinstance(mart, str) else mart.name])


def oversight_column_schema(mart: Mart) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.type, description=mart.column_comment(c))
            for c in mart.output_columns
        ]
    )


def describe(mart: Mart) -> str:
    """The asset description: the measure's definition, in Markdown."""
    caveats = "\n".join(f"- {c}" for c in mart.caveats)
    return (
        f"**{mart.title}.** {mart.definition}\n\n"
        f"- Grain: {mart.grain}.\n"
        f"- Numerator: {mart.numerator}\n"
        f"- Denominator: {mart.denominator}\n"
        f"- Source fields: {', '.join(mart.source_fields)}.\n"
        f"- Disclosure: {mart.disclosure_text}\n\n"
        f"Caveats:\n{caveats}\n\n"
        f"Queried as `oversight.{mart.name}` in warehouse.duckdb."
    )


def _metadata_value(value: object) -> dg.MetadataValue | object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()[:10]
    return str(value)


def _preview(mart: Mart, table: pa.Table, con: duckdb.DuckDBPyConnection) -> str:
    if table.num_rows == 0:
        return "_(no rows: the curated tables it reads have no data yet)_"
    rows = latest_figures(mart, table, PREVIEW_ROWS, con)
    shown = [c.name for c in mart.output_columns if c.name not in ("window_start",)]
    formatted = [
        {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows
    ]
    return markdown_table(formatted, shown)


def _oversight_views(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'oversight'"
        ).fetchall()
    return {name for (name,) in rows}


def _rebuild_with_views(
    warehouse: WarehouseResource,
    lake: Lake,
    contracts: dict[str, Contract],
    written: list[WrittenMart],
    first: bool = False,
) -> None:
    """Make the warehouse show each mart just `written`, as `oversight.<name>`.

    A catalog that already has their views (as it has, but for a mart computed for the
    first time or a definition that changed, since the views read the marts' files) and
    was built from what it would be built from now is left as it is (`catalog_current`);
    otherwise it is made to show them (`show_marts`: rebuilt, or copied with its
    oversight views made again when only they can differ). `first`: a mart had no file
    before this step, so no catalog made before it has its view, and the catalog is not
    asked (its views bound, each mart's file read: 0.03 s of CPU on a new home's first
    run). A delivery run rebuilding at the same time from an older look at the lake can
    replace the file after ours; rebuilding again then (a few times at most) puts the
    views back.
    """
    marts = {w.mart.name: (w.path, w.table.schema) for w in written}
    if not first and catalog_current(Path(warehouse.path), lake, contracts, marts):
        return
    names = set(marts)
    for _ in range(3):
        warehouse.show_marts(lake, contracts)
        if names <= _oversight_views(Path(warehouse.path)):
            return
    raise RuntimeError(f"oversight views are missing from {warehouse.path} after 3 rebuilds")


def _mart_result(
    mart: Mart, written: WrittenMart, notes: dict[str, object], con: duckdb.DuckDBPyConnection
) -> dg.MaterializeResult:
    """The asset's materialization: the mart's rows, where it is, its latest and headline
    figures (read in `con`, the connection the mart was computed in)."""
    table = written.table
    suppressed = {
        c.name: sum(1 for v in table.column(c.name).to_pylist() if v)
        for c in mart.output_columns
        if c.name.endswith("_suppressed")
    }
    metadata: dict[str, object] = {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": oversight_column_schema(mart),
        "table": f"oversight.{mart.name}",
        "path": dg.MetadataValue.path(written.path),
        "latest_figures": dg.MetadataValue.md(_preview(mart, table, con)),
        "cells_suppressed": sum(suppressed.values()),
    }
    for key, value in {**headline_figures(mart, table, con), **notes}.items():
        if value is not None:
            metadata[key] = _metadata_value(value)
    return dg.MaterializeResult(asset_key=oversight_key(mart), metadata=metadata)


def mart_spec(mart: Mart, contracts: dict[str, Contract]) -> dg.AssetSpec:
    """The asset for one mart, as the UI shows it: its definition, columns and sources."""
    sources = [c for c in mart.source_contracts(contracts) if c in contracts]
    return dg.AssetSpec(
        key=oversight_key(mart),
        deps=[dg.AssetKey(["curated", c]) for c in sources],
        group_name="oversight",
        kinds={"duckdb", "parquet"},
        owners=sorted({o for c in sources for o in contracts[c].owners}),
        description=describe(mart),
        metadata={
            "dagster/column_schema": oversight_column_schema(mart),
            "publication": mart.publication,
            "suppression_threshold": mart.threshold or 0,
            "table": f"oversight.{mart.name}",
        },
    )


def build_oversight_assets(contracts: dict[str, Contract]) -> list[dg.AssetsDefinition]:
    """Every oversight mart, one asset each in the `oversight` group, computed by one step.

    One step and one DuckDB connection for whichever marts are selected (a run selects
    those whose curated tables changed), then one catalog rebuild so that the new views
    appear: eleven steps each opening and rebuilding the warehouse cost seconds a run.
    """
    # Contracts are read again at run time, from where these came from.
    directory = next(iter(contracts.values())).path.parent if contracts else None
    specs = [mart_spec(mart, contracts) for mart in MARTS.values()]

    @dg.multi_asset(name="oversight_marts", specs=specs, can_subset=True)
    def oversight_marts(
        context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        the_lake = lake.lake()
        current = (
            current_contracts()
            if directory in (None, contracts_dir())
            else load_contracts(directory)
        )
        path = Path(warehouse.path)
        if not path.exists():
            warehouse.rebuild(the_lake, current)
        chosen = [m for m in MARTS.values() if oversight_key(m) in context.selected_asset_keys]
        # (A listing of the marts' folder: those with no file yet are computed for the
        # first time, and no catalog shows them.)
        first = not {m.name for m in chosen} <= set(mart_keys(the_lake))
        results, all_written = [], []
        with warehouse_connection(path, current, records_once=True, lake=the_lake) as con:
            for mart in chosen:
                written = write_mart(mart.name, con, the_lake, current)
                if written.table.num_rows == 0:
                    context.log.info(f"{mart.name}: no rows (its curated tables have no data yet)")
                notes = mart_notes(mart, con, current)
                results.append(_mart_result(mart, written, notes, con))
                all_written.append(written)
        # The views over the marts: once, after they are all written.
        _rebuild_with_views(warehouse, the_lake, current, all_written, first)
        yield from results

    return [oversight_marts]


def oversight_selection() -> dg.AssetSelection:
    """Every oversight asset (for a job that refreshes the marts)."""
    return dg.AssetSelection.groups("oversight")
