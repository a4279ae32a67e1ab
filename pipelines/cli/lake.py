"""`datashare lake ddl --engine spark|trino|athena [--lake URI]`: the statements that
declare every curated table and oversight mart over the lake in another engine.

Kept apart from pipelines/cli/main.py so the main CLI only needs `add_lake_command` and
`run_lake_command`; the engine is pipelines/oversight/lake_ddl.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipelines.home.settings import Settings
from pipelines.oversight.lake_ddl import ENGINES


def add_lake_command(sub: Any) -> None:
    """Add `lake` (with `ddl`) to the `datashare` sub-commands."""
    lake = sub.add_parser(
        "lake",
        help="the lake as other engines read it (Spark, Trino, Athena)",
        description="The lake (a folder or s3://bucket/prefix) as other engines read it.",
    )
    commands = lake.add_subparsers(dest="lake_command", required=True)
    ddl = commands.add_parser(
        "ddl",
        help="print the statements declaring every curated table and mart over the lake",
        description="Print, for Spark SQL, Trino (Hive connector) or Athena, the statements "
        "that declare every curated table (Hive-partitioned by period) and every oversight "
        "mart over the lake, with their types and the contracts' column comments. Run them "
        "in the engine; run the partition statements again after a month is published "
        "(Athena needs none: its tables project the months).",
    )
    ddl.add_argument("--engine", required=True, choices=ENGINES, help="the engine to declare in")
    ddl.add_argument(
        "--lake",
        help="the lake's root as the engine reaches it: a folder or s3://bucket/prefix "
        "(default: this home's lake, $DATASHARE_LAKE)",
    )


def run_lake_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the statements asked for (they need the contracts and marts, not the lake)."""
    from pipelines.lake.store import open_lake
    from pipelines.oversight.lake_ddl import ddl_script, empty_tables, lake_tables, unmoved_marts
    from pipelines.oversight.mart_runner import MARTS
    from schemas.contract import load_contracts

    lake_url = args.lake or str(settings.lake)
    tables = lake_tables(load_contracts(), MARTS.values())
    try:
        # Which tables have no month yet, if this machine reaches the lake (the statements
        # that find partitions fail on those); if not, every table is taken to have some.
        # And the marts an earlier version left one file each, outside their folders.
        lake = open_lake(lake_url)
        empty, unmoved = empty_tables(lake, tables), unmoved_marts(lake, tables)
    except Exception:  # noqa: BLE001 - the lake as the engine sees it may be out of reach
        empty, unmoved = frozenset(), []
    try:
        script = ddl_script(args.engine, lake_url, tables, empty, unmoved)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(script)
    return 0
