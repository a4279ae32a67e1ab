"""`datashare report [--output FILE] [--refresh]`: the HTML oversight pack."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.settings import Settings

DEFAULT_NAME = "oversight-pack.html"


def add_report_command(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="write the HTML oversight pack (a chart and definition per measure)",
        description="Write the oversight pack from the marts in warehouse.duckdb: one "
        "self-contained HTML page (charts drawn inline, nothing fetched from the internet).",
    )
    report.add_argument(
        "--output", type=Path, help=f"the HTML file (default: <home>/reports/{DEFAULT_NAME})"
    )
    report.add_argument(
        "--refresh",
        action="store_true",
        help="recompute every mart from the curated tables first, outside Dagster "
        "(normally the oversight assets do it in `datashare run`)",
    )


def run_report_command(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.lake import open_lake
    from pipelines.oversight_marts import write_marts
    from pipelines.oversight_report import read_marts, write_report
    from pipelines.warehouse import build_warehouse
    from schemas.contract import load_contracts

    output = args.output or settings.home / "reports" / DEFAULT_NAME
    if getattr(args, "refresh", False) or not settings.warehouse.exists():
        lake, contracts = open_lake(settings.lake), load_contracts()
        build_warehouse(lake, contracts, settings.warehouse)
        if getattr(args, "refresh", False):
            written = write_marts(settings.warehouse, lake, contracts=contracts)
            print(f"Computed {len(written)} oversight mart(s) into {lake.url_of('oversight')}")
            build_warehouse(lake, contracts, settings.warehouse)
    tables = read_marts(settings.warehouse)
    # The demo run again with nothing new: the pack written since the warehouse last changed
    # (the marts' step rebuilds it after writing them) already shows these figures.
    current = output.exists() and output.stat().st_mtime_ns > settings.warehouse.stat().st_mtime_ns
    if getattr(args, "if_changed", False) and current:
        path = output
    else:
        path = write_report(settings.warehouse, output)
    missing = [name for name, table in tables.items() if table is None]
    empty = [name for name, table in tables.items() if table is not None and table.num_rows == 0]
    print(f"Oversight pack: {path}")
    print(f"  {len(tables) - len(missing) - len(empty)} measure(s) with figures", end="")
    print(f", {len(empty)} with no data yet" if empty else "", end="")
    print(f", {len(missing)} not computed yet" if missing else "")
    if missing:
        print(
            "  Not computed: " + ", ".join(missing) + " (run `datashare run`, or "
            "`datashare report --refresh` to compute them here)"
        )
    return 0
